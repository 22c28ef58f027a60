"""What the vLLM benchmarks share: how they start `kiln run`, and the device they ran on."""

from __future__ import annotations

import subprocess
import sys

# `kiln run` through the installed package (the console script may not be on PATH).
KILN = [sys.executable, "-m", "kiln.cli"]


def kiln_run(mode: str, archive: str, command: list[str]) -> list[str]:
    """`command` under kiln in `mode`, stopping on any deviation (policy strict)."""
    return [
        *KILN,
        "run",
        "--mode",
        mode,
        "--archive",
        archive,
        "--policy",
        "strict",
        "--",
        *command,
    ]


def device_facts() -> dict[str, str]:
    q = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        name, driver = subprocess.check_output(q, text=True).splitlines()[0].split(", ")
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return {"device_name": "unknown", "driver": "unknown"}
    return {"device_name": name, "driver": driver}
