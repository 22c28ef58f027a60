"""`kiln demo`: capture a small program's graphs in one process, restore them in a fresh one,
and compare outputs bit for bit. The program is kiln.demo_program, run twice under
`kiln run` (SAVE, then LOAD). Without a GPU it says so and exits successfully."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kiln._gpu import gpu_unavailable_reason

TIMEOUT_S = 900


def _run(mode: str, archive: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "kiln.cli", "run", "--mode", mode, "--policy", "strict",
        "--archive", str(archive), "--",
        sys.executable, "-m", "kiln.demo_program", "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _report(archive: Path) -> dict[str, Any]:
    try:
        report = json.loads((archive / "startup-report.json").read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def main(argv: list[str] | None = None) -> int:
    if argv:
        print(f"kiln demo: takes no arguments (got {' '.join(argv)})")
        return 2
    reason = gpu_unavailable_reason()
    if reason:
        print(
            f"kiln demo: no GPU here ({reason}); nothing to save or restore. "
            "Run it on a machine with an NVIDIA GPU."
        )
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive, out = Path(tmp) / "archive", Path(tmp) / "result.json"
        reports = {}
        for mode, outcome in (("save", "saved"), ("load", "restored")):
            proc = _run(mode, archive, out)
            reports[mode] = _report(archive)
            if proc.returncode != 0 or reports[mode].get("outcome") != outcome:
                tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
                print(f"kiln demo: {mode} failed (exit status {proc.returncode}):\n{tail}")
                return 1
        result = json.loads(out.read_text())
    checks = result.get("checks", {})
    exact = bool(checks) and all(c["vs_save_native"]["bit_exact"] for c in checks.values())
    print(
        f"captured {reports['save'].get('graphs_captured')} graphs (SAVE process); "
        f"restored {reports['load'].get('graphs_restored')} in a fresh LOAD process; "
        f"bit-exact vs SAVE's native graphs: {exact}"
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
