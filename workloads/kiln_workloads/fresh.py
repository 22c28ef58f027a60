"""Run kiln_workloads.run in a fresh process under the interposer: how the demo, the GPU
tests and the benchmark get SAVE and LOAD into separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def interposer_env(base: Mapping[str, str] | None = None, *, enable: bool = True) -> dict[str, str]:
    """`base` (default: this process's environment) with kiln's interposer preloaded and,
    with `enable`, switched on."""
    from kiln._paths import preload_library

    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = str(preload_library())
    if enable:
        env["KILN_ENABLE"] = "1"
    else:
        env.pop("KILN_ENABLE", None)
    return env


def run_workload(
    workload: str,
    mode: str,
    archive: Path,
    *extra: str,
    inject: str = "none",
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> tuple[dict[str, Any] | None, subprocess.CompletedProcess[str]]:
    """The runner's JSON result (None when it wrote none) and the finished process."""
    out = archive / f"{mode}-{inject}.json"
    out.unlink(missing_ok=True)  # a process that writes nothing must not hand back an older run's
    command = [sys.executable, "-m", "kiln_workloads.run", "--workload", workload, "--mode", mode,
               "--archive", str(archive), "--inject", inject, "--out", str(out), *extra]  # fmt: skip
    proc = subprocess.run(
        command,
        env=dict(env) if env is not None else interposer_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = json.loads(out.read_text()) if out.exists() else None
    return result, proc
