"""kiln-vllm's launcher side: which commands start vLLM, the environment pinned for them,
and discovery through the `kiln.adapters` entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

kiln_vllm = pytest.importorskip(
    "kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)"
)

from kiln_vllm.adapter import ENV_PINS, VllmAdapter, runs_vllm


@pytest.mark.parametrize(
    "command",
    [
        ["vllm", "serve", "Qwen/Qwen3-8B"],
        ["/usr/bin/vllm", "serve", "m"],
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "m"],
    ],
)
def test_vllm_commands_are_recognised(command: list[str]) -> None:
    assert runs_vllm(command)


def test_a_script_that_imports_vllm_is_recognised(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text("from vllm import LLM\nLLM('m')\n")
    assert runs_vllm([sys.executable, str(script)])


@pytest.mark.parametrize(
    "command", [[], ["python", "-m", "kiln_workloads.lifecycle_demo"], ["sglang"]]
)
def test_other_commands_are_not_vllm(command: list[str], tmp_path: Path) -> None:
    assert not runs_vllm(command)
    script = tmp_path / "other.py"
    script.write_text("import torch\n")
    assert not runs_vllm(["python", str(script)])


def test_the_adapter_is_discovered_through_its_entry_point() -> None:
    from kiln.plugins import discover_adapters

    found = {a.name: a for a in discover_adapters()}
    assert "vllm" in found
    assert found["vllm"].spec is not None and found["vllm"].spec.engine_versions == ">=0.24,<0.25"


def test_kiln_run_pins_the_v2_runner_for_vllm_commands(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kiln.cli", "run", "--mode", "save", "--archive", str(tmp_path / "a"),
         "--dry-run", "--", "vllm", "serve", "m"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for pin in ENV_PINS:
        assert f"{pin.key}={pin.value}" in proc.stdout


def test_other_commands_get_no_vllm_pins() -> None:
    class Launch:
        command = ("python", "-m", "kiln_workloads.lifecycle_demo")

    adapter = VllmAdapter()
    assert adapter.kiln_child_env(Launch()) is None  # type: ignore[arg-type]
    assert adapter.kiln_launch_fingerprint(Launch()) is None  # type: ignore[arg-type]


def test_vllm_caches_are_pinned_below_kiln_s_cache_directory(tmp_path: Path) -> None:
    class Launch:
        command = ("vllm", "serve", "m")
        cache_dir = tmp_path / "caches" / "save"

    pins = {pin.key: pin.value for pin in VllmAdapter().kiln_child_env(Launch())}  # type: ignore[arg-type, union-attr]
    assert pins["VLLM_CACHE_ROOT"] == str(tmp_path / "caches" / "save" / "vllm")
    assert pins["FLASHINFER_WORKSPACE_BASE"] == str(tmp_path / "caches" / "save" / "flashinfer")
