"""kiln-sglang's hooks through a whole scheduler start, SAVE then LOAD, against stand-ins
for SGLang and a CPU runtime with kiln's real lifecycle driver: what runs, what is recorded,
what LOAD skips, and what the policy does with kiln's own failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kiln_sglang", reason="kiln-sglang is not installed (.ci/run installs it)")
pytest.importorskip("kiln_test_adapter", reason="the test adapter is not installed")

from kiln import lifecycle
from kiln.lifecycle import StageFailed
from kiln_sglang import blocks, hooks
from kiln_sglang.graphs import graph_key

from tests.adapters.sglang.stand_ins import (
    Engine,
    MemoryPoolConfig,
    OutputRuntime,
    Restored,
    ShapeKey,
    Tensor,
    capture_api,
    server_args,
)
from tests.lifecycle.helpers import kiln_environ

SIZES = [1, 2, 4]


class Process:
    """One SGLang scheduler process under `kiln run` (a fresh kiln state each time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.live: list[blocks.Block] = [blocks.Block(0x1000, 512)]
        self.emptied = 0

    def run(
        self, mode: str, engine: Engine, policy: str = "strict", runtime: Any = None, **args: Any
    ) -> tuple[Engine, Any]:
        lifecycle.reset()
        state = hooks.reset()
        for key, value in kiln_environ(self.tmp_path, mode, policy).items():
            self.monkeypatch.setenv(key, value)
        runtime = runtime or OutputRuntime()
        state.driver_options = {"runtime": runtime}
        state.capture_api = lambda: capture_api(engine.log)
        state.live_blocks = lambda device: list(self.live)
        state.empty_cache = self._empty
        state.pool_config_class = MemoryPoolConfig
        engine.start(server_args(**args))
        return engine, runtime

    def _empty(self) -> None:
        self.emptied += 1


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Process]:
    monkeypatch.chdir(tmp_path)
    yield Process(monkeypatch, tmp_path)
    lifecycle.reset()
    hooks.reset()


def key(size: int) -> str:
    return graph_key(ShapeKey(size), None, ("next_token_logits",))


def test_save_warms_the_largest_shape_before_the_window_and_records_every_graph(
    process: Process,
) -> None:
    engine, runtime = process.run("save", Engine(SIZES))
    log = engine.log
    # The first (largest) shape's two warm-ups run before capture_begin: outside the window.
    first_capture = log.index("graph-capture")
    assert log[:first_capture].count("forward bs=4") == 2
    assert log[first_capture + 1] == "forward bs=4"  # the captured forward
    assert runtime.recorded == [key(4), key(2), key(1)]
    backend = engine.scheduler.decode.backend
    assert set(backend._graphs) == {ShapeKey(s) for s in SIZES}
    assert all(o.next_token_logits.data_ptr() == 0xA000 for o in backend._outputs.values())
    assert "sample free memory" in log
    assert blocks.read(blocks.snapshot_file(process.tmp_path / "archive", 0)) == process.live


def test_load_restores_every_graph_and_runs_no_forward_after_the_first_shape(
    process: Process,
) -> None:
    process.run("save", Engine(SIZES))
    engine, runtime = process.run("load", Engine(SIZES))
    log = engine.log
    # The first shape's warm-ups run (same trajectory as SAVE); no other forward runs.
    assert [e for e in log if e.startswith("forward")] == ["forward bs=4", "forward bs=4"]
    assert "graph-capture" not in log
    assert "sample free memory" not in log and process.emptied == 1
    assert runtime.restored == [key(4), key(2), key(1)]
    backend = engine.scheduler.decode.backend
    for size in SIZES:
        assert isinstance(backend._graphs[ShapeKey(size)], Restored)
        assert backend._outputs[ShapeKey(size)].next_token_logits.data_ptr() == 0xA000
    assert engine.scheduler.config == MemoryPoolConfig(
        max_total_num_tokens=123456, max_running_requests=2048, mem_fraction_static=0.8
    )
    # Per-shape preparation still runs for every shape (SGLang's loop is unchanged).
    assert [e for e in log if e.startswith("prepare")] == [
        "prepare bs=4",
        "prepare bs=2",
        "prepare bs=1",
    ]


def test_persistent_tensor_allocated_at_load_after_the_window_is_named(process: Process) -> None:
    # The hazard: per-shape preparation kept a tensor at LOAD that SAVE allocated elsewhere.
    process.run("save", Engine(SIZES))
    process.live = process.live + [blocks.Block(0x7F00, 2048)]
    with pytest.raises(StageFailed, match="0x7f00"):
        process.run("load", Engine(SIZES))


def test_live_block_difference_under_fallback_recaptures_natively(process: Process) -> None:
    process.run("save", Engine(SIZES))
    process.live = []
    engine, _ = process.run("load", Engine(SIZES), policy="fallback")
    backend = engine.scheduler.decode.backend
    # Nothing restored stays in use once the policy said native.
    assert not any(isinstance(g, Restored) for g in backend._graphs.values())
    assert [e for e in engine.log if e.startswith("native capture_one")] == [
        "native capture_one bs=4",
        "native capture_one bs=2",
        "native capture_one bs=1",
    ]


def test_a_graph_missing_from_the_archive_is_captured_natively_under_fallback(
    process: Process,
) -> None:
    process.run("save", Engine([2, 4]))
    engine, _ = process.run("load", Engine([1, 2, 4]), policy="fallback")
    # capture_begin names the missing key: the whole set goes native.
    backend = engine.scheduler.decode.backend
    assert set(backend._graphs) == {ShapeKey(1), ShapeKey(2), ShapeKey(4)}
    assert not any(isinstance(g, Restored) for g in backend._graphs.values())


def test_an_output_kiln_cannot_rebuild_stops_a_strict_save(process: Process) -> None:
    from tests.adapters.sglang.stand_ins import Out

    engine = Engine(SIZES, output=lambda bs: Out(Tensor(0xA000), customized_info={"x": 1}))
    with pytest.raises(StageFailed, match="customized_info"):
        process.run("save", engine)


def test_an_output_kiln_cannot_rebuild_falls_back_natively(process: Process) -> None:
    from tests.adapters.sglang.stand_ins import Out

    engine = Engine(SIZES, output=lambda bs: Out(Tensor(0xA000), customized_info={"x": 1}))
    engine, runtime = process.run("save", engine, policy="fallback")
    assert runtime.recorded == []
    assert len(engine.scheduler.decode.backend._graphs) == len(SIZES)


def test_refused_settings_under_fallback_make_the_scheduler_start_natively(
    process: Process,
) -> None:
    engine, runtime = process.run(
        "save", Engine(SIZES), policy="fallback", _kiln_refused="LoRA is not supported"
    )
    assert runtime.recorded == [] and "bind" not in runtime.calls
    assert len(engine.scheduler.decode.backend._graphs) == len(SIZES)


def test_outside_kiln_run_every_hook_calls_sglang(
    process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle.reset()
    hooks.reset()
    monkeypatch.delenv("KILN_ENABLE", raising=False)
    engine = Engine(SIZES)
    engine.start(server_args())
    assert [e for e in engine.log if e.startswith("native capture_one")] == [
        "native capture_one bs=4",
        "native capture_one bs=2",
        "native capture_one bs=1",
    ]
    assert "sample free memory" in engine.log
