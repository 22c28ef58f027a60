"""SGLang 0.5.16 under `kiln run` on a GPU: SAVE, then LOAD in a fresh process, greedy
tokens equal. Skips without a GPU, SGLang or a model (KILN_SGLANG_MODEL, a local model
directory; the recipe's dummy-weight Qwen3-0.6B config is enough)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[3]


def _need_gpu_and_sglang() -> str:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no GPU (nvidia-smi not found)")
    pytest.importorskip("sglang", reason="SGLang is not installed (the GPU bundle has it)")
    pytest.importorskip("kiln_sglang", reason="kiln-sglang is not installed")
    model = os.environ.get("KILN_SGLANG_MODEL")
    if not model:
        pytest.skip("KILN_SGLANG_MODEL (a local model directory) is not set")
    return model


def _run(mode: str, model: str, archive: Path, out: Path) -> dict:
    cmd = [
        sys.executable, "-m", "kiln", "run", "--mode", mode, "--archive", str(archive), "--",
        sys.executable, str(ROOT / "bench" / "sglang_cold_start.py"), "--worker",
        "--model", model, "--load-format", "dummy", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


def test_save_then_load_restores_every_decode_graph_and_generates_the_same_tokens(
    tmp_path: Path,
) -> None:
    model = _need_gpu_and_sglang()
    archive = tmp_path / "archive"
    saved = _run("save", model, archive, tmp_path / "save.json")
    loaded = _run("load", model, archive, tmp_path / "load.json")
    report = json.loads((archive / "startup-report.json").read_text())
    assert report["outcome"] == "restored", report
    assert report["graphs_captured"] == 0 and report["graphs_restored"] > 0, report
    assert loaded["tokens"] == saved["tokens"]
