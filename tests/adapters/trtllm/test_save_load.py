"""kiln-trtllm through a whole worker start, SAVE then LOAD, against kiln's stand-in tree
for TensorRT-LLM's executor modules (patched by the real import hook as they are imported)
and a CPU runtime with kiln's real lifecycle driver: what runs, what runs with the region
suspended, what is recorded, what LOAD skips (the KV-estimation executor, every capture),
and what the policy does."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_trtllm", reason="kiln-trtllm is not installed (.ci/run installs it)")
pytest.importorskip("kiln_test_adapter", reason="the test adapter is not installed")

from kiln import lifecycle
from kiln.lifecycle import StageFailed
from kiln_test_adapter.fake_runtime import FakeRuntime
from kiln_trtllm import autoload, hooks
from kiln_trtllm.graphs import CaptureApi, graph_key

from tests.adapters.trtllm import stand_in_tree
from tests.lifecycle.helpers import kiln_environ

SIZES = [1, 2, 4]
SUSPENDED = " [suspended]"
FINAL_KV = f"build kv estimating=False max_tokens=123456 bytes={7 << 30}"


def _log() -> ModuleType:
    return sys.modules["tensorrt_llm._log"]


@dataclass
class Restored:
    name: str
    outputs: list[Any]
    inputs: list[Any] = field(default_factory=list)

    def replay(self, stream: Any = None) -> None:
        _log().log(f"replay restored {self.name.split('/')[2]}")


class OutputRuntime(FakeRuntime):
    """FakeRuntime whose restored graphs hold an output tensor; `fail_on` names a restore
    (1-based) that fails."""

    def __init__(self, fail_on: int | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on

    def restore(self, key: str) -> Any:  # type: ignore[override]
        if self.fail_on is not None and len(self.restored) + 1 == self.fail_on:
            self.fail_at = "restore"
        super().restore(key)
        return Restored(key, [_log().Tensor(0xA000)])


def llm_args(sizes: list[int] = SIZES, skip_est: bool = False, **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "model": "/models/tiny",
        "backend": "pytorch",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "max_batch_size": max(sizes),
        "cuda_graph_config": SimpleNamespace(batch_sizes=list(sizes), enable_padding=False),
        "kv_cache_config": SimpleNamespace(
            free_gpu_memory_fraction=0.9, max_tokens=None, max_gpu_total_bytes=None
        ),
        "speculative_config": None,
        "torch_compile_config": None,
        "enable_sleep": False,
        "skip_est": skip_est,
    }
    return SimpleNamespace(**{**fields, **extra})


class Process:
    """One TensorRT-LLM worker process under `kiln run`: a fresh import of the stand-in
    tree through kiln's import hook, and a fresh kiln state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.src = stand_in_tree.write(tmp_path / "src")
        monkeypatch.syspath_prepend(str(self.src))
        # No TensorRT-LLM distribution is installed here: the version check is the
        # subject of its own test.
        monkeypatch.setattr(autoload, "_version_checked", True)

    def run(
        self, mode: str, args: Any, policy: str = "strict", runtime: Any = None
    ) -> tuple[Any, Any, list[str]]:
        lifecycle.reset()
        state = hooks.reset()
        for key, value in kiln_environ(self.tmp_path, mode, policy).items():
            self.monkeypatch.setenv(key, value)
        runtime = runtime or OutputRuntime()
        state.driver_options = {"runtime": runtime}
        state.capture_api = lambda: CaptureApi(is_tensor=lambda v: isinstance(v, _log().Tensor))
        state.device = lambda: 0
        purge()
        autoload.install()
        log = importlib.import_module("tensorrt_llm._log")
        log.PROBE = lambda e: e + SUSPENDED if runtime.suspended_depth else e
        creator = importlib.import_module("tensorrt_llm._torch.pyexecutor.py_executor_creator")
        executor = creator.create_py_executor(args)
        return executor, runtime, list(log.EVENTS)

    def report(self) -> dict[str, Any]:
        return json.loads((self.tmp_path / "archive" / "startup-report.json").read_text())


def purge() -> None:
    for name in [n for n in sys.modules if n == "tensorrt_llm" or n.startswith("tensorrt_llm.")]:
        del sys.modules[name]


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Process]:
    monkeypatch.chdir(tmp_path)
    yield Process(monkeypatch, tmp_path)
    autoload.uninstall()
    purge()
    lifecycle.reset()
    hooks.reset()


def key(size: int) -> str:
    fields = SimpleNamespace(_asdict=lambda: {
        "batch_size": size, "draft_len": 0, "is_first_draft": False, "short_seq_len_mode": False
    })  # fmt: skip
    return graph_key(fields, ("logits",))


def test_the_import_hook_patches_each_target_as_it_is_imported(process: Process) -> None:
    process.run("save", llm_args())
    engine = sys.modules["tensorrt_llm._torch.pyexecutor.model_engine"].PyTorchModelEngine
    runner = sys.modules["tensorrt_llm._torch.pyexecutor.cuda_graph_runner"].CUDAGraphRunner
    creator = sys.modules["tensorrt_llm._torch.pyexecutor.py_executor_creator"]
    for patched in (engine.__init__, engine.warmup, runner.capture, creator.create_py_executor):
        assert getattr(patched, autoload.PATCHED_ATTR, None) is not None


def test_save_suspends_the_whole_estimation_executor_and_records_the_final_graphs(
    process: Process,
) -> None:
    _, runtime, events = process.run("save", llm_args())
    final_kv = events.index(FINAL_KV)
    # Everything from the estimation cache to its teardown is TensorRT-LLM's own, outside
    # the region: its warm-ups, its native graphs, the measurement (which starts a worker).
    estimation = events[events.index("try_prepare_estimation") + 1 : final_kv]
    assert estimation and all(e.endswith(SUSPENDED) for e in estimation)
    assert f"graph-capture bs=4 pool=None{SUSPENDED}" in estimation
    assert f"measure peak memory{SUSPENDED}" in estimation
    final = events[final_kv:]
    assert not any(e.endswith(SUSPENDED) for e in final)
    # The final executor's first (largest) shape warms up alone before the window, then
    # every shape is captured by TensorRT-LLM's own capture, largest first.
    assert final[final.index("prepare bs=4") + 1 : final.index("graph-capture bs=4 pool=None")] == [
        "forward bs=4",  # is_warmup_only: kiln's, before capture_begin
        "forward bs=4",  # TensorRT-LLM's WARMUP_STEPS, inside the capture
    ]
    assert "graph-capture bs=2 pool=pool-4" in final  # the pool chains as TensorRT-LLM's does
    assert runtime.recorded == [key(4), key(2), key(1)]
    assert final[-1] == "start worker" and final.count("start worker") == 1
    report = process.report()
    assert report["graphs_captured"] == 3
    assert "close_region" in runtime.calls


def test_load_skips_the_estimation_executor_and_restores_every_graph(process: Process) -> None:
    process.run("save", llm_args())
    executor, runtime, events = process.run("load", llm_args())
    # No estimation executor: the final cache is built once, from SAVE's measurement.
    assert "try_prepare_estimation" not in events
    assert "measure peak memory" not in events
    assert [e for e in events if e.startswith("build kv")] == [FINAL_KV]
    assert events.count("start worker") == 1
    # The warm-ups before the window run (the policy: not skippable); only the first
    # shape's warm-up forward runs, and no capture.
    assert ["attention warmup", "general warmup [(1, 0)]", "autotuner warmup"] == [
        e for e in events if "warmup" in e
    ][:3]
    assert "general warmup [(8, 0)]" in events
    assert [e for e in events if e.startswith("forward")] == ["forward bs=4"]
    assert not any(e.startswith("graph-capture") for e in events)
    assert runtime.restored == [key(4), key(2), key(1)]
    # TensorRT-LLM's replay reads what kiln installed: the graph, its metadata and outputs.
    assert [e for e in events if e.startswith("replay")] == [
        "replay restored batch_size=4",
        "replay restored batch_size=2",
        "replay restored batch_size=1",
    ]
    graph_runner = executor.model_engine.cuda_graph_runner
    for bs in SIZES:
        out = graph_runner.graph_outputs[(bs, 0, False, False)]
        assert out["logits"].data_ptr() == 0xA000 and out["aux"] is None
    assert process.report()["graphs_restored"] == 3


def test_load_writes_save_s_kv_sizing_back_when_save_did_not_estimate(process: Process) -> None:
    process.run("save", llm_args(skip_est=True))
    _, _, events = process.run("load", llm_args(skip_est=True))
    assert [e for e in events if e.startswith("build kv")] == [
        "build kv estimating=False max_tokens=None bytes=None"
    ]


def test_a_configuration_kiln_cannot_restore_is_refused_under_strict(process: Process) -> None:
    with pytest.raises(StageFailed, match="speculative decoding"):
        process.run("save", llm_args(speculative_config=SimpleNamespace(max_draft_len=3)))


def test_a_refused_configuration_starts_natively_with_the_estimation_pass_under_fallback(
    process: Process,
) -> None:
    _, runtime, events = process.run(
        "save", llm_args(speculative_config=SimpleNamespace()), policy="fallback"
    )
    assert "measure peak memory" in events  # TensorRT-LLM's own sizing, in the region
    assert not any(e.endswith(SUSPENDED) for e in events)
    assert runtime.recorded == []
    assert events.count("graph-capture bs=4 pool=None") == 2  # both executors, natively


def test_a_restore_failing_midway_recaptures_every_graph_natively_under_fallback(
    process: Process,
) -> None:
    process.run("save", llm_args())
    executor, runtime, events = process.run(
        "load", llm_args(), policy="fallback", runtime=OutputRuntime(fail_on=2)
    )
    assert runtime.restored == [key(4)]
    graph_runner = executor.model_engine.cuda_graph_runner
    kinds = {type(g).__name__ for g in graph_runner.graphs.values()}
    assert kinds == {"NativeGraph"} and len(graph_runner.graphs) == 3
    assert "release graphs" in events
    assert events[-1] == "start worker"


def test_an_unsupported_trtllm_version_stops_the_process_under_strict(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autoload, "_version_checked", False)
    with pytest.raises(SystemExit, match=r"supports TensorRT-LLM ==1.3.0rc24; this is None"):
        process.run("save", llm_args())


def test_an_unsupported_trtllm_version_leaves_it_native_under_fallback(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autoload, "_version_checked", False)
    _, runtime, events = process.run("save", llm_args(), policy="fallback")
    assert runtime.calls == [] and "measure peak memory" in events
