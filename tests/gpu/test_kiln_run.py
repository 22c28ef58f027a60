"""Integration: `kiln run --mode save` then `--mode load` around a small non-engine program
that goes through the lifecycle like an engine adapter (kiln_workloads.lifecycle_demo), each
a fresh process; then `kiln verify --gpu` re-runs the archive's recorded command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def kiln(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def demo(mode: str, archive: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return kiln(
        "run", "--mode", mode, "--policy", "strict", "--archive", str(archive), "--",
        sys.executable, "-m", "kiln_workloads.lifecycle_demo", "--workload", "matmul", "--out", str(out),
    )  # fmt: skip


def test_kiln_run_saves_and_loads_the_lifecycle_demo_and_verify_gpu_passes(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    out = tmp_path / "result.json"  # one command for both runs: it is part of the fingerprint
    saved = demo("save", archive, out)
    assert saved.returncode == 0, saved.stderr[-4000:]
    report = json.loads((archive / "startup-report.json").read_text())
    assert report["outcome"] == "saved", report
    assert report["graphs_captured"] == 3

    loaded = demo("load", archive, out)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=1)[:6000])
    assert result["mode"] == "load" and result["ok"]
    for name, check in result["checks"].items():
        assert check["vs_save_native"]["bit_exact"], name
        assert check["vs_eager"]["bit_exact"], name
    report = json.loads((archive / "startup-report.json").read_text())
    assert report["outcome"] == "restored", report
    assert report["graphs_restored"] == 3

    described = kiln("inspect", "--json", str(archive))
    assert described.returncode == 0, described.stderr[-2000:]
    assert len(json.loads(described.stdout)["graphs"]) == 3

    verified = kiln("verify", "--gpu", "--json", str(archive))
    outcome = json.loads(verified.stdout) if verified.stdout.strip() else {}
    assert verified.returncode == 0, (verified.stderr[-3000:], outcome)
    assert outcome["ok"] and outcome["gpu"]["outcome"] == "restored", outcome
