"""Integration with stock vLLM 0.24 (where vLLM 0.24 and kiln-vllm are installed on a
machine with an NVIDIA GPU): a native start, a kiln SAVE start and a kiln LOAD start of
qwen3-0.6b (dummy weights), each a fresh process, generate the same greedy tokens, and LOAD
restores every graph SAVE captured."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None or importlib.util.find_spec("kiln_vllm") is None,
        reason="needs vLLM 0.24 and kiln-vllm installed (bench/vllm_device_run.sh installs kiln-vllm)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


def test_vllm_native_save_and_load_generate_the_same_greedy_tokens(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "vllm_cold_start.py"),
            "--model",
            str(ROOT / "bench" / "models" / "qwen3-0.6b"),
            "--modes",
            "native,save,load",
            "--out-dir",
            str(tmp_path / "out"),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    print(proc.stdout[-8000:], proc.stderr[-4000:])
    (result,) = (tmp_path / "out").glob("vllm-*.json")
    record = json.loads(result.read_text())
    assert proc.returncode == 0
    assert record["tokens_identical_to_native"] == {"native": True, "save": True, "load": True}
    report = record["modes"]["load"]["kiln_report"]
    assert report["outcome"] == "restored"
    # Every graph restored, none captured: 51 FULL decode graphs plus every PIECEWISE piece
    # at every size (PIECEWISE restore is the default).
    assert report["graphs_captured"] == 0
    assert report["graphs_restored"] > 51
    assert report["graphs_restored"] == record["modes"]["save"]["kiln_report"]["graphs_captured"]
