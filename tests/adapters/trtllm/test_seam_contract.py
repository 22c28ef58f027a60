"""The seam contract: the TensorRT-LLM symbols kiln-trtllm patches must be where, and as, it
expects. Against a TensorRT-LLM source tree named by KILN_TRTLLM_SOURCE (no TensorRT-LLM can
be installed or read in CI), and against kiln's stand-in tree, whose drifted copies must each
be named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kiln_trtllm", reason="kiln-trtllm is not installed (.ci/run installs it)")

from kiln_trtllm.autoload import PATCHES
from kiln_trtllm.seams import SEAMS, check_installed, check_source, source_files

from tests.adapters.trtllm import stand_in_tree

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "adapters" / "trtllm" / "check_contract.py"
ASSEMBLE = ROOT / "adapters" / "trtllm" / "tools" / "assemble_contract_tree.py"
RUNNER = "tensorrt_llm/_torch/pyexecutor/cuda_graph_runner.py"
CREATOR = "tensorrt_llm/_torch/pyexecutor/py_executor_creator.py"
ENGINE = "tensorrt_llm/_torch/pyexecutor/model_engine.py"
UTIL = "tensorrt_llm/_torch/pyexecutor/_util.py"


@pytest.fixture
def trtllm_source() -> Path:
    root = os.environ.get("KILN_TRTLLM_SOURCE")
    if not root:
        pytest.skip(
            "KILN_TRTLLM_SOURCE (a TensorRT-LLM 1.3.0rc24 checkout or the unpacked wheel's "
            "Python files) is not set: no TensorRT-LLM source is reachable from CI"
        )
    return Path(root)


def test_trtllm_source_tree_matches_the_contract(trtllm_source: Path) -> None:
    assert check_source(trtllm_source) == []


def test_installed_trtllm_matches_the_contract() -> None:
    pytest.importorskip("tensorrt_llm", reason="TensorRT-LLM cannot be installed here")
    assert check_installed() == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return stand_in_tree.write(tmp_path / "src")


def test_every_patch_target_is_a_seam() -> None:
    seams = {s.name for s in SEAMS}
    assert {f"{module}.{qualname}" for module, qualname, _ in PATCHES} <= seams


def test_the_stand_in_tree_keeps_the_contract(tree: Path) -> None:
    assert check_source(tree) == []


def test_a_capture_that_drops_the_warmup_only_return_is_named(tree: Path) -> None:
    # kiln runs the first shape's warm-ups alone through it, before the capture window.
    stand_in_tree.edit(
        tree, RUNNER, "        if self.is_warmup_only:\n            return output\n", ""
    )
    (problem,) = check_source(tree)
    assert problem.startswith(
        "tensorrt_llm._torch.pyexecutor.cuda_graph_runner.CUDAGraphRunner.capture: no longer "
        "contains `if self.is_warmup_only:"
    )


def test_a_renamed_capture_parameter_is_named(tree: Path) -> None:
    stand_in_tree.edit(tree, RUNNER, "forward_fn, initial_inputs,", "forward_fn, inputs,")
    problems = check_source(tree)
    assert any("CUDAGraphRunner.capture: parameters are" in p and "inputs" in p for p in problems)


def test_a_capture_that_no_longer_chains_the_pool_is_named(tree: Path) -> None:
    stand_in_tree.edit(tree, RUNNER, "self.memory_pool = graph.pool()", "pass")
    (problem,) = check_source(tree)
    assert "no longer contains `self.memory_pool = graph.pool()`" in problem


def test_an_executor_creation_without_the_estimation_pass_is_named(tree: Path) -> None:
    stand_in_tree.edit(
        tree,
        CREATOR,
        "        kv_cache_creator.teardown_managers(resources)\n",
        "",
    )
    (problem,) = check_source(tree)
    assert "create_py_executor: no longer contains `kv_cache_creator.teardown_managers" in problem


def test_a_moved_warmup_phase_is_named(tree: Path) -> None:
    # The era-C split of PyTorchModelEngine moves the warm-ups into DecoderRunner.
    stand_in_tree.edit(
        tree, ENGINE, "    def _run_autotuner_warmup(self, resource_manager):", "    def _x(self):"
    )
    problems = check_source(tree)
    assert any(p.endswith("_run_autotuner_warmup: not found (warmup phase trtllm/autotuner)")
               for p in problems)  # fmt: skip


def test_check_contract_script_reports_and_fails_loudly_on_a_drifted_tree(tree: Path) -> None:
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(tree)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"contract holds: {len(SEAMS)} seams" in ok.stdout
    stand_in_tree.edit(tree, RUNNER, "self.graphs[key] = graph", "self.graphs[key] = None")
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(tree)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "CUDAGraphRunner.capture: no longer contains `self.graphs[key] = graph`" in bad.stdout
    assert f"1 of {len(SEAMS)} seams moved" in bad.stderr


def test_check_contract_script_refuses_a_directory_without_tensorrt_llm(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "has no tensorrt_llm/ directory" in proc.stderr


def test_an_estimation_that_no_longer_answers_is_named(tree: Path) -> None:
    # create_py_executor branches on the answer; kiln answers False at LOAD in its place.
    stand_in_tree.edit(tree, UTIL, "return estimating_kv_cache", "return None")
    (problem,) = check_source(tree)
    assert problem.startswith(
        "tensorrt_llm._torch.pyexecutor._util.KvCacheCreator.try_prepare_estimation: no longer "
        "contains `return estimating_kv_cache`"
    )


def test_a_measurement_that_no_longer_writes_the_byte_capacity_is_named(tree: Path) -> None:
    # kiln records max_gpu_total_bytes after the measurement and replays it at LOAD.
    stand_in_tree.edit(
        tree,
        UTIL,
        "self._kv_cache_config.max_gpu_total_bytes = kv_cache_max_memory",
        "self._kv_cache_config.max_gpu_bytes = kv_cache_max_memory",
    )
    (problem,) = check_source(tree)
    assert "configure_kv_cache_capacity: no longer contains" in problem
    assert "max_gpu_total_bytes = kv_cache_max_memory" in problem


def test_the_assembly_script_lists_copies_and_checks_exactly_the_contract_s_files(
    tree: Path, tmp_path: Path
) -> None:
    listed = subprocess.run(
        [sys.executable, str(ASSEMBLE), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed == source_files() and set(listed) == {
        f"{s.module.replace('.', '/')}.py" for s in SEAMS
    }
    dest = tmp_path / "assembled"
    ok = subprocess.run(
        [sys.executable, str(ASSEMBLE), "--from", str(tree), "--to", str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == listed
    assert f"contract holds: {len(SEAMS)} seams" in ok.stdout
    stand_in_tree.edit(tree, RUNNER, "self.memory_pool = graph.pool()", "pass")
    bad = subprocess.run(
        [sys.executable, str(ASSEMBLE), "--from", str(tree), "--to", str(tmp_path / "again")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        bad.returncode == 1 and "no longer contains `self.memory_pool = graph.pool()`" in bad.stdout
    )
    (tree / UTIL).unlink()
    gone = subprocess.run(
        [sys.executable, str(ASSEMBLE), "--from", str(tree), "--to", str(tmp_path / "third")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode == 2 and "_util.py: no such file" in gone.stderr
