"""Kernels launched by libraries that link libcuda directly (Triton's launcher, CUDA
extensions), module globals the application writes, and events shared with eager code:
each restores bit-exact in a fresh process or is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu.conftest import kiln_env

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


def run(mode: str, archive: Path, kind: str, *extra: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.gpu.programs.driver_linked",
            mode,
            str(archive),
            kind,
            *extra,
        ],
        env=kiln_env(),
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("KILN-RESULT "):
            return json.loads(line[len("KILN-RESULT ") :])
    raise AssertionError(f"{mode} wrote no result (rc {proc.returncode}):\n{proc.stderr[-4000:]}")


def test_a_triton_kernel_launched_by_tritons_own_launcher_restores_bit_exact(tmp_path):
    # Regression: Triton's launcher calls cuModuleLoadData / cuModuleGetFunction straight
    # from libcuda, so kiln never saw the module and refused the graph as an unknown kernel.
    saved = run("save", tmp_path, "triton")
    assert saved["ok"], saved
    loaded = run("load", tmp_path, "triton")
    assert loaded["ok"], loaded
    assert loaded["bit_exact_vs_eager"]


def test_an_extension_kernel_reading_a_device_global_restores_against_the_apps_module(tmp_path):
    saved = run("save", tmp_path, "global")
    assert saved["ok"], saved
    loaded = run("load", tmp_path, "global")
    assert loaded["ok"], loaded
    assert loaded["bit_exact_vs_eager"]


def test_load_refuses_a_stateful_binary_the_application_did_not_load(tmp_path):
    saved = run("save", tmp_path, "global")
    assert saved["ok"], saved
    loaded = run("load", tmp_path, "global", "--skip-global")
    assert not loaded["ok"]
    assert loaded["error"] == "RestoreError", loaded
    assert "kiln_scale" in loaded["message"]


def test_an_event_the_graph_shares_with_eager_code_is_refused_at_save(tmp_path):
    saved = run("save", tmp_path, "external-event")
    assert not saved["ok"]
    assert saved["error"] == "NonPersistableGraph", saved
    assert "event" in saved["message"]


def test_a_tensor_map_kernel_restores_bit_exact_or_is_refused_naming_the_map(tmp_path):
    # The driver's CUtensorMap encoding is undocumented: kiln keeps a map whose address it
    # can check at LOAD (a plain word of the map) and refuses any other. Either way, never a
    # wrong output.
    saved = run("save", tmp_path, "tma")
    if not saved["ok"]:
        assert saved["error"] == "NonPersistableGraph", saved
        assert "tensor map" in saved["message"], saved
        return
    loaded = run("load", tmp_path, "tma")
    assert loaded["ok"], loaded
    assert loaded["bit_exact_vs_eager"]
