"""Helpers shared by the native fuzz tests: run a loop in a child interpreter so that a
crash (segfault, abort) fails the test instead of killing pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap


def run_child(code: str, timeout: float = 60) -> str:
    """Run `code` in a fresh interpreter; return its stdout, failing on any abnormal exit."""
    proc = subprocess.run(  # noqa: PLW1510 (the fuzzer reads returncode)
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    )
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise AssertionError(
            f"fuzz child died of {sig}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    assert proc.returncode == 0, (
        f"fuzz child failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout
