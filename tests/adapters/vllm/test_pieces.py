"""PIECEWISE graphs through kiln (kiln_vllm.pieces, on unless KILN_VLLM_PIECEWISE=0), against stand-ins
for vLLM's CUDAGraphWrapper, forward context and graph manager, torch and the lifecycle
driver: SAVE routes each piece's capture through the driver, LOAD installs the entries from
a SAVE's archive without running a piece, and what does not match fails naming the piece."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.graphs import VllmCaptureApi, capture_all
from kiln_vllm.pieces import (
    VllmPieceApi,
    piece_key,
    piece_of_key,
    piecewise_fingerprint,
    piecewise_restore_requested,
)
from kiln_vllm.seams import SEAMS, check_source

from tests.adapters.vllm.stand_ins import Desc, FakeTensor, capture_api, graph_manager

# --- stand-ins for vLLM -------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchDescriptor:  # vllm.forward_context.BatchDescriptor
    num_tokens: int
    num_reqs: int | None = None
    uniform: bool = False
    has_lora: bool = False
    num_active_loras: int = 0


@dataclass
class Entry:  # vllm.compilation.cuda_graph.CUDAGraphEntry
    batch_descriptor: BatchDescriptor
    cudagraph: Any = None
    output: Any = None
    input_addresses: list[int] | None = None


class FakeGraph:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def replay(self) -> None:
        self.log.append(f"replay {self.name}")


class World:
    """vLLM's process state the wrappers read: the forward context, the capture monitor."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.ctx: Any = None
        self.capturing_enabled = True
        self.wrappers: list[Wrapper] = []
        self.next_ptr = 0x10000

    def tensor(self) -> FakeTensor:
        self.next_ptr += 0x100
        return FakeTensor(self.next_ptr)


class Piece:  # PiecewiseBackend: returns `shape` (tensor, tuple or list of tensors)
    def __init__(self, world: World, index: int, shape: str, submod_name: str) -> None:
        self.world, self.shape = world, shape
        self.piecewise_compile_index = index
        self.submod_name = submod_name
        self.vllm_backend = SimpleNamespace(prefix="backbone")

    def __call__(self, *args: Any) -> Any:
        self.world.log.append(f"run {self.submod_name}")
        t = self.world.tensor
        return {
            "tensor": lambda: t(),
            "tuple": lambda: (t(), t()),
            "list": lambda: [t(), t(), t()],
            "dict": lambda: {"x": t()},
            "none-in-tuple": lambda: (t(), None),
        }[self.shape]()


class Wrapper:  # CUDAGraphWrapper.__call__, its three branches
    def __init__(self, world: World, runnable: Piece) -> None:
        self.world, self.runnable = world, runnable
        self.runtime_mode = "PIECEWISE"
        self.concrete_cudagraph_entries: dict[BatchDescriptor, Entry] = {}
        world.wrappers.append(self)

    def __call__(self, *args: Any) -> Any:
        ctx = self.world.ctx
        if (
            ctx is None
            or ctx.cudagraph_runtime_mode in ("NONE",)
            or (ctx.cudagraph_runtime_mode != self.runtime_mode)
        ):
            return self.runnable(*args)
        bd = ctx.batch_descriptor
        entry = self.concrete_cudagraph_entries.setdefault(bd, Entry(bd))
        if entry.cudagraph is None:
            if not self.world.capturing_enabled:
                raise RuntimeError("CUDA graph capturing detected at an inappropriate time")
            name = f"{self.runnable.submod_name}/t{bd.num_tokens}"
            self.world.log.append(f"capture {name}")
            output = self.runnable(*args)
            entry.output, entry.cudagraph = output, FakeGraph(self.world.log, name)
            return output
        entry.cudagraph.replay()
        return entry.output


SHAPES = ("tuple", "tensor", "list")


def make_model(
    world: World, shapes: tuple[str, ...] = SHAPES, *, mega: bool = False
) -> list[Wrapper]:
    """Backends as vLLM's compile path builds them (`submod_name` and index); with `mega`, as
    it rebuilds them from the mega AOT artifact (no `submod_name`, index only)."""
    return [
        Wrapper(world, Piece(world, i, s, "" if mega else f"submod_{2 * i}"))
        for i, s in enumerate(shapes)
    ]


def make_manager(world: World, model: list[Wrapper]) -> tuple[Any, Any]:
    descs = {
        "PIECEWISE": [Desc("PIECEWISE", n) for n in (4, 2, 1)],
        "FULL": [Desc("FULL", n, n, 1) for n in (4, 2, 1)],
    }
    manager = graph_manager(descs, vllm_config=SimpleNamespace(lora_config=None))

    def create_forward_fn(desc: Desc, warmup: bool) -> tuple[Callable[[Any], None], str]:
        world.log.append(f"prepare {desc.cg_mode}{desc.num_tokens} warmup={warmup}")

        def forward(mode: Any) -> None:
            bd = BatchDescriptor(num_tokens=desc.num_tokens) if mode == "PIECEWISE" else None
            world.ctx = SimpleNamespace(cudagraph_runtime_mode=mode, batch_descriptor=bd)
            world.log.append(f"forward {desc.cg_mode}{desc.num_tokens} {mode}")
            try:
                for wrapper in model:
                    wrapper()
            finally:
                world.ctx = None
            if mode == "NONE" and manager.hidden_states is None:
                manager.hidden_states = FakeTensor(0x1000)

        return forward, f"state{desc.num_tokens}"

    return manager, create_forward_fn


# --- stand-ins for the driver and its archive -------------------------------------------------


@dataclass
class Restored:
    key: str
    outputs: list[Any]
    log: list[str]

    def replay(self) -> None:
        self.log.append(f"replay restored {self.key}")


@dataclass
class Driver:
    mode_name: str
    log: list[str]
    archive: dict[str, list[Any]] = field(default_factory=dict)  # key -> output tensors
    planned: list[str] = field(default_factory=list)

    @property
    def mode(self) -> Any:
        return SimpleNamespace(value=self.mode_name)

    @property
    def ctx(self) -> Any:
        return SimpleNamespace(recorded={"graphs": list(self.archive)})

    def capture_begin(self, keys: list[str]) -> None:
        self.planned = list(keys)
        self.log.append("begin")

    def capture_graph(self, key: str, capture: Callable[[], Any]) -> Any:
        if self.mode_name == "load":
            self.log.append(f"restore {key}")
            if key not in self.archive:
                raise KilnError(f"the archive holds no graph {key!r}")
            return Restored(key, self.archive[key], self.log)
        self.log.append(f"record {key}")
        result = capture()
        items = result[1] if isinstance(result, tuple) and key.startswith("full/") else result
        items = list(items) if isinstance(items, (tuple, list)) else [items]
        self.archive[key] = [t for t in items if isinstance(t, FakeTensor)]
        return result

    def capture_end(self) -> None:
        self.log.append("end")


def make_api(world: World, *, pieces: bool = True) -> VllmCaptureApi:
    @contextlib.contextmanager
    def graph_context(graph: Any, pool: Any) -> Iterator[None]:
        world.log.append("full-capture")
        yield

    def set_capturing_enabled(enabled: bool) -> None:
        world.capturing_enabled = enabled

    piece_api = VllmPieceApi(
        wrapper_class=Wrapper,
        wrappers=lambda: list(world.wrappers),
        forward_context=lambda: world.ctx,
        batch_descriptor=BatchDescriptor,
        entry=Entry,
        is_cuda_tensor=lambda t: isinstance(t, FakeTensor),
        set_capturing_enabled=set_capturing_enabled,
        has_lora=lambda manager: manager.vllm_config.lora_config is not None,
    )
    pieces_api = piece_api if pieces else None
    return capture_api(lambda: FakeGraph(world.log, "full"), graph_context, pieces_api)


def save(shapes: tuple[str, ...] = SHAPES) -> tuple[World, Driver]:
    world = World()
    manager, create = make_manager(world, make_model(world, shapes))
    driver = Driver("save", world.log)
    capture_all(manager, create, driver, make_api(world))
    return world, driver


def load(
    archive: dict[str, list[Any]], shapes: tuple[str, ...] = SHAPES, *, mega: bool = False
) -> tuple[World, Any, list[Wrapper]]:
    world = World()
    model = make_model(world, shapes, mega=mega)
    manager, create = make_manager(world, model)
    capture_all(manager, create, Driver("load", world.log, dict(archive)), make_api(world))
    return world, manager, model


def pw_keys(piece: str, shape: str) -> list[str]:
    return [piece_key(piece, BatchDescriptor(num_tokens=n), shape) for n in (4, 2, 1)]


# --- SAVE ------------------------------------------------------------------------------------


def test_save_routes_exactly_each_piece_capture_through_the_driver() -> None:
    world, driver = save()
    log = world.log
    recorded = [e.removeprefix("record ") for e in log if e.startswith("record pw/")]
    expected = [
        piece_key(f"backbone/#{i}", BatchDescriptor(num_tokens=n), s)
        for n in (4, 2, 1)
        for i, s in enumerate(("tuple2", "tensor", "list3"))
    ]
    assert recorded == expected
    assert expected[0] == "pw/backbone/#0/t4/rNone/u0/h0/l0/otuple2"
    # Each record is the piece's capture, and nothing else goes through the driver.
    for key in recorded:
        i = log.index(f"record {key}")
        assert log[i + 1].startswith("capture submod_")
    assert sum(e.startswith("capture submod_") for e in log) == len(expected)
    # The capture set opens after the first warmup, before the first piece's capture.
    assert log.index("begin") > log.index("forward PIECEWISE4 NONE")
    assert log.index("begin") < log.index(f"record {expected[0]}")
    assert driver.planned == expected + ["full/t4/r4/u1/l0", "full/t2/r2/u1/l0", "full/t1/r1/u1/l0"]
    # vLLM's own class again afterwards; captures left vLLM's entries as vLLM makes them.
    assert all(type(w) is Wrapper for w in world.wrappers)
    assert all(len(w.concrete_cudagraph_entries) == 3 for w in world.wrappers)
    assert world.capturing_enabled


def test_save_archives_each_piece_output() -> None:
    _world, driver = save()
    outputs = driver.archive["pw/backbone/#0/t4/rNone/u0/h0/l0/otuple2"]
    assert len(outputs) == 2 and all(isinstance(t, FakeTensor) for t in outputs)


@pytest.mark.parametrize("shape", ["dict", "none-in-tuple"])
def test_an_output_kiln_cannot_rebuild_fails_naming_the_piece(shape: str) -> None:
    with pytest.raises(KilnError, match="piece backbone/#1 returns"):
        save(("tensor", shape))


def test_save_without_the_opt_in_captures_pieces_natively() -> None:
    world = World()
    manager, create = make_manager(world, make_model(world))
    driver = Driver("save", world.log)
    capture_all(manager, create, driver, make_api(world, pieces=False))
    assert not any(e.startswith("record pw/") for e in world.log)
    assert sum(e.startswith("capture submod_") for e in world.log) == 9
    assert driver.planned == ["full/t4/r4/u1/l0", "full/t2/r2/u1/l0", "full/t1/r1/u1/l0"]


def test_kiln_off_ignores_the_opt_in() -> None:
    world = World()
    manager, create = make_manager(world, make_model(world))
    capture_all(manager, create, Driver("off", world.log), make_api(world))
    assert not any(e.startswith("record pw/") for e in world.log)
    assert sum(e.startswith("capture submod_") for e in world.log) == 9


# --- LOAD ------------------------------------------------------------------------------------


def test_load_installs_every_entry_without_running_a_piece() -> None:
    _saved, driver = save()
    world, manager, model = load(driver.archive)
    log = world.log
    # Only the first PIECEWISE descriptor is prepared and warmed up; nothing else runs.
    assert [e for e in log if e.startswith("prepare")] == ["prepare PIECEWISE4 warmup=True"]
    assert [e for e in log if e.startswith("forward")] == ["forward PIECEWISE4 NONE"]
    assert sum(e.startswith("run ") for e in log) == len(model)  # that warmup
    assert not any(e.startswith(("capture", "full-capture")) for e in log)
    # Entries exactly as vLLM's capture leaves them, outputs at SAVE's addresses.
    for place, (wrapper, shape) in enumerate(
        zip(model, ("tuple2", "tensor", "list3"), strict=True)
    ):
        entries = wrapper.concrete_cudagraph_entries
        assert list(entries) == [BatchDescriptor(num_tokens=n) for n in (4, 2, 1)]
        for bd, entry in entries.items():
            key = piece_key(f"backbone/#{place}", bd, shape)
            saved = driver.archive[key]
            assert entry.batch_descriptor == bd and entry.input_addresses is None
            assert isinstance(entry.cudagraph, Restored) and entry.cudagraph.key == key
            if shape == "tensor":
                assert entry.output is saved[0]
            else:
                assert type(entry.output) is (tuple if shape == "tuple2" else list)
                assert list(entry.output) == saved
        assert type(wrapper) is Wrapper
    assert [g.key for g in manager.graphs.values()] == [
        "full/t4/r4/u1/l0",
        "full/t2/r2/u1/l0",
        "full/t1/r1/u1/l0",
    ]
    assert manager._graphs_captured and not world.capturing_enabled


def test_after_load_a_piecewise_forward_replays_and_never_captures() -> None:
    _saved, driver = save()
    world, _manager, model = load(driver.archive)
    world.ctx = SimpleNamespace(
        cudagraph_runtime_mode="PIECEWISE", batch_descriptor=BatchDescriptor(num_tokens=2)
    )
    outputs = [w() for w in model]
    assert outputs[1] is model[1].concrete_cudagraph_entries[BatchDescriptor(2)].output
    assert sum(e.startswith("replay restored pw/") for e in world.log) == 3
    world.ctx = SimpleNamespace(
        cudagraph_runtime_mode="PIECEWISE", batch_descriptor=BatchDescriptor(num_tokens=8)
    )
    with pytest.raises(RuntimeError, match="inappropriate"):
        model[0]()


def test_pieces_saved_from_a_compiled_model_load_into_the_mega_artifact_backends() -> None:
    # Regression: pieces were named by `submod_name`, which the backends vLLM rebuilds from
    # its mega AOT artifact lack, so a SAVE that compiled the model and a LOAD that loaded it
    # named the same pieces differently. Names now follow the pieces' order in the forward.
    _saved, driver = save()
    world, _manager, model = load(driver.archive, mega=True)
    assert all(w.runnable.submod_name == "" for w in model)
    assert not any(e.startswith("capture") for e in world.log)
    for place, wrapper in enumerate(model):
        for entry in wrapper.concrete_cudagraph_entries.values():
            assert entry.cudagraph.key.startswith(f"pw/backbone/#{place}/")


def test_load_names_a_piece_with_no_archived_graph() -> None:
    _saved, driver = save()
    archive = {k: v for k, v in driver.archive.items() if piece_of_key(k) != "backbone/#1"}
    with pytest.raises(KilnError, match="piece backbone/#1 has no archived graph"):
        load(archive)


def test_load_names_an_archived_piece_no_wrapper_runs() -> None:
    _saved, driver = save()
    with pytest.raises(KilnError, match=r"piece\(s\) backbone/#2, which no graph wrapper"):
        load(driver.archive, SHAPES[:2])


def test_load_fails_when_a_piece_returns_another_structure() -> None:
    _saved, driver = save()
    with pytest.raises(KilnError, match="piece backbone/#1 has no archived graph"):
        load(driver.archive, ("tuple", "list", "list"))


def test_load_fails_when_the_archive_lost_an_output() -> None:
    _saved, driver = save()
    archive = dict(driver.archive)
    key = pw_keys("backbone/#0", "tuple2")[1]
    archive[key] = archive[key][:1]
    with pytest.raises(KilnError, match=f"{key}: the archive holds 1 output tensors"):
        load(archive)


# --- keys and the switch ----------------------------------------------------------------------------


def test_piece_keys_name_the_piece_and_every_descriptor_field() -> None:
    bd = BatchDescriptor(num_tokens=8, num_reqs=None, uniform=False, has_lora=True)
    key = piece_key("model.layers/submod_4", bd, "tuple3")
    assert key == "pw/model.layers/submod_4/t8/rNone/u0/h1/l0/otuple3"
    assert piece_of_key(key) == "model.layers/submod_4"
    assert piece_of_key("full/t8/r8/u1/l0") is None


def test_piecewise_restore_is_on_unless_turned_off() -> None:
    assert piecewise_restore_requested({})
    assert piecewise_restore_requested({"KILN_VLLM_PIECEWISE": "1"})
    assert not piecewise_restore_requested({"KILN_VLLM_PIECEWISE": "0"})
    with pytest.raises(KilnError, match="KILN_VLLM_PIECEWISE='yes'"):
        piecewise_restore_requested({"KILN_VLLM_PIECEWISE": "yes"})
    # Both ways are in the fingerprint: an archive made one way is refused the other way.
    assert piecewise_fingerprint({}) == {"vllm.piecewise_restore": True}
    assert piecewise_fingerprint({"KILN_VLLM_PIECEWISE": "0"}) == {"vllm.piecewise_restore": False}


def test_load_checks_hidden_states_against_every_full_graph() -> None:
    _saved, driver = save()
    archive = dict(driver.archive)
    archive["full/t1/r1/u1/l0"] = [FakeTensor(0x2000)]
    with pytest.raises(KilnError, match="full/t1/r1/u1/l0: SAVE's graph wrote hidden states"):
        load(archive)


def test_a_wrapper_of_another_class_is_refused_and_nothing_stays_switched() -> None:
    class OtherWrapper(Wrapper):
        pass

    world = World()
    model = make_model(world)
    model.append(OtherWrapper(world, Piece(world, 3, "tensor", "submod_6")))
    manager, create = make_manager(world, model)
    with pytest.raises(KilnError, match="wrapper is a .*OtherWrapper"):
        capture_all(manager, create, Driver("save", world.log), make_api(world))
    assert [type(w) for w in world.wrappers] == [Wrapper] * 3 + [OtherWrapper]


def test_a_change_to_the_wrapper_call_kiln_routes_names_kilns_copy(tmp_path: Path) -> None:
    root = os.environ.get("KILN_VLLM_SOURCE")
    if not root:
        pytest.skip("KILN_VLLM_SOURCE (a vLLM 0.24.0 source tree or unpacked wheel) is not set")
    rel = Path("vllm", "compilation", "cuda_graph.py")
    text = (Path(root) / rel).read_text(encoding="utf-8")
    line = "        if entry.cudagraph is None:\n"
    assert text.count(line) == 1
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(text.replace(line, line.replace("None", "False")))
    seams = tuple(s for s in SEAMS if s.module == "vllm.compilation.cuda_graph")
    (problem,) = check_source(tmp_path, seams)
    assert "CUDAGraphWrapper.__call__: its source changed" in problem
    assert "kiln_vllm.pieces.PieceRouter.call" in problem
