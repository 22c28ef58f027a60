"""kiln's copy of vLLM's capture loop (kiln_vllm.graphs), against stand-ins for vLLM, torch
and the lifecycle driver: what runs at SAVE and at LOAD, in which order, and what fails."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.graphs import VllmCaptureApi, capture_all, full_graph_key, kiln_manager_class

from tests.adapters.vllm.stand_ins import Desc, FakeTensor, capture_api, graph_manager


class FakeGraph:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def replay(self) -> None:
        self.log.append("replay")


@dataclass
class Restored:
    key: str
    outputs: list[Any]

    def replay(self) -> None:
        pass


@dataclass
class FakeDriver:
    mode_name: str
    log: list[str]
    hidden_ptr: int = 0x1000
    keys: list[str] = field(default_factory=list)
    fall_back: set[str] = field(default_factory=set)

    @property
    def mode(self) -> Any:
        return SimpleNamespace(value=self.mode_name)

    def capture_begin(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.log.append("begin")

    def capture_graph(self, key: str, capture: Callable[[], Any]) -> Any:
        if self.mode_name == "load" and key in self.fall_back:
            self.log.append(f"fallback {key}")
            return capture()  # what the driver does when the policy falls back
        if self.mode_name == "load":
            self.log.append(f"restore {key}")
            return Restored(key, [FakeTensor(self.hidden_ptr)])
        self.log.append(f"record {key}")
        return capture()

    def capture_end(self) -> None:
        self.log.append("end")


def make_api(log: list[str]) -> VllmCaptureApi:
    @contextlib.contextmanager
    def graph_context(graph: Any, pool: Any) -> Iterator[None]:
        log.append("capture-start")
        yield
        log.append("capture-end")

    return capture_api(lambda: FakeGraph(log), graph_context)


def make_manager(log: list[str], *, piecewise: bool = True) -> Any:
    full = [Desc("FULL", n, n, 1) for n in (4, 2, 1)]
    descs: dict[str, list[Desc]] = {"FULL": full}
    if piecewise:
        descs["PIECEWISE"] = [Desc("PIECEWISE", n) for n in (4, 2, 1)]
    manager = graph_manager(descs)

    def create_forward_fn(desc: Desc, warmup: bool) -> tuple[Callable[[Any], None], str]:
        log.append(f"prepare {desc.cg_mode}{desc.num_tokens} warmup={warmup}")

        def forward(mode: Any) -> None:
            log.append(f"forward {desc.cg_mode}{desc.num_tokens} {mode}")
            if mode == "NONE" and manager.hidden_states is None:
                manager.hidden_states = FakeTensor(0x1000)

        return forward, f"state{desc.num_tokens}"

    return manager, create_forward_fn


def test_save_captures_piecewise_natively_then_records_each_full_graph() -> None:
    log: list[str] = []
    manager, create = make_manager(log)
    driver = FakeDriver("save", log)
    states = capture_all(manager, create, driver, make_api(log))
    assert driver.keys == ["full/t4/r4/u1/l0", "full/t2/r2/u1/l0", "full/t1/r1/u1/l0"]
    assert log.index("forward PIECEWISE4 PIECEWISE") < log.index("begin")
    assert log.count("capture-start") == 3 and log[-1] == "end"
    assert all(isinstance(g, FakeGraph) for g in manager.graphs.values())
    assert manager._graphs_captured and len(states) == 6


def test_load_restores_full_graphs_and_prepares_only_the_first() -> None:
    log: list[str] = []
    manager, create = make_manager(log)
    capture_all(manager, create, FakeDriver("load", log), make_api(log))
    assert "capture-start" not in log  # no FULL graph is captured at LOAD
    # PIECEWISE pieces are still captured natively (before the capture window).
    assert "forward PIECEWISE1 PIECEWISE" in log
    # The first FULL descriptor allocates before SAVE's window began: it is prepared and
    # warmed up; later ones lie inside the window and are not.
    assert "prepare FULL4 warmup=True" in log and "prepare FULL4 warmup=False" in log
    assert not any(entry.startswith("prepare FULL2") for entry in log)
    assert [g.key for g in manager.graphs.values()] == [
        "full/t4/r4/u1/l0",
        "full/t2/r2/u1/l0",
        "full/t1/r1/u1/l0",
    ]
    assert manager._graphs_captured


def test_load_falling_back_prepares_and_captures_the_graph_natively() -> None:
    # Regression: a FULL graph after the first could not fall back (its inputs were never
    # prepared at LOAD), so the fallback policy stopped the engine instead of starting it.
    log: list[str] = []
    manager, create = make_manager(log)
    driver = FakeDriver("load", log, fall_back={"full/t2/r2/u1/l0"})
    capture_all(manager, create, driver, make_api(log))
    at = log.index("fallback full/t2/r2/u1/l0")
    assert log[at + 1 : at + 3] == ["prepare FULL2 warmup=True", "forward FULL2 NONE"]
    assert log.count("capture-start") == 1
    graphs = list(manager.graphs.values())
    assert isinstance(graphs[1], FakeGraph) and isinstance(graphs[2], Restored)


def test_load_refuses_hidden_states_at_another_address() -> None:
    log: list[str] = []
    manager, create = make_manager(log)
    driver = FakeDriver("load", log, hidden_ptr=0x2000)
    with pytest.raises(KilnError, match="hidden states"):
        capture_all(manager, create, driver, make_api(log))


def test_native_mode_runs_vllms_capture() -> None:
    log: list[str] = []
    manager, create = make_manager(log, piecewise=False)
    capture_all(manager, create, FakeDriver("off", log), make_api(log))
    assert log.count("capture-start") == 3


def test_a_graph_captured_twice_is_an_error() -> None:
    log: list[str] = []
    manager, create = make_manager(log, piecewise=False)
    manager.graphs[manager._capture_descs["FULL"][0]] = object()
    with pytest.raises(KilnError, match="captured twice"):
        capture_all(manager, create, FakeDriver("save", log), make_api(log))


def test_full_graph_keys_name_every_descriptor_field() -> None:
    assert full_graph_key(Desc("FULL", 8, 8, 1, 2)) == "full/t8/r8/u1/l2"


def test_kiln_manager_class_puts_kilns_loop_between_the_manager_and_its_base() -> None:
    calls: list[str] = []

    class Base:
        def capture(self, create_forward_fn: Any, progress_bar_desc: str = "") -> str:
            calls.append("vllm loop")
            return "vllm"

    class Model(Base):
        def capture(self, *args: Any) -> Any:
            return super().capture("closure")

    kiln_class = kiln_manager_class(Model)
    mro = [c.__name__ for c in kiln_class.__mro__]
    assert mro[:4] == ["KilnModel", "Model", "KilnCaptureLoop", "Base"]
    instance = Model()
    instance.__class__ = kiln_class
    with pytest.raises(KilnError, match="without a driver"):
        instance.capture()
    assert calls == []
