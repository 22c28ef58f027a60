"""PIECEWISE graphs through kiln (the default; KILN_VLLM_PIECEWISE=0 captures them natively).

vLLM 0.24 captures a PIECEWISE graph per compiled piece and size inside
`vllm.compilation.cuda_graph.CUDAGraphWrapper.__call__`, the first time a wrapper runs in
PIECEWISE mode for a `BatchDescriptor`. For the duration of kiln's capture loop every live
PIECEWISE wrapper switches `__class__` to a subclass whose `__call__` routes that capture
branch, and only it, through the lifecycle driver (SAVE records one graph per key); replay
and eager calls go to vLLM's `__call__` unchanged, and the classes switch back afterwards.

Keys name the piece (`vllm_backend.prefix` of the wrapper's `PiecewiseBackend` and the
piece's place in the forward, `#0`, `#1`, ...), every field of the BatchDescriptor, and the
piece's output structure (a tensor, or a tuple or list of N tensors), so that LOAD can
rebuild `entry.output` from the restored graph's outputs without running the piece. Names
and structures are read from the first descriptor's eager warmup, which runs every piece in
both modes before SAVE's capture window.

LOAD runs only that warmup, then installs a `CUDAGraphEntry` per piece and size, as vLLM's
capture leaves it, and turns vLLM's capture monitor off so a missing entry raises instead of
capturing on the spot. Anything unexpected (an archived piece no wrapper runs, a wrapper with
no archived graph, an output kiln cannot rebuild) is a KilnError naming the piece.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln.env_settings import switch_setting
from kiln.errors import KilnError

ENV = "KILN_VLLM_PIECEWISE"
KEY_PREFIX = "pw/"
_KEY_TAIL = 6  # segments after the piece name: t, r, u, h, l, o


def piecewise_restore_requested(environ: Mapping[str, str] | None = None) -> bool:
    """On unless $KILN_VLLM_PIECEWISE is 0; any value but 0 and 1 is refused by name."""
    return switch_setting(ENV, "restore PIECEWISE graphs", "capture them", environ)


def piecewise_fingerprint(environ: Mapping[str, str] | None = None) -> dict[str, bool]:
    """An archive saved with PIECEWISE graphs is refused by a LOAD without them (and the
    reverse), naming this field."""
    return {"vllm.piecewise_restore": piecewise_restore_requested(environ)}


@dataclass(frozen=True)
class VllmPieceApi:
    """The vLLM and torch names PIECEWISE restore uses (a namespace, so tests can stand in)."""

    wrapper_class: type  # vllm.compilation.cuda_graph.CUDAGraphWrapper
    wrappers: Callable[[], list[Any]]  # list(CUDAGraphWrapper._all_instances)
    forward_context: Callable[[], Any]  # get_forward_context(), or None when unavailable
    batch_descriptor: Callable[..., Any]  # vllm.forward_context.BatchDescriptor
    entry: Callable[..., Any]  # vllm.compilation.cuda_graph.CUDAGraphEntry
    is_cuda_tensor: Callable[[Any], bool]
    set_capturing_enabled: Callable[[bool], None]  # vllm.compilation.monitor
    has_lora: Callable[[Any], bool]  # the graph manager -> what capture_model passes


def vllm_piece_api() -> VllmPieceApi:
    import torch
    from vllm.compilation.cuda_graph import CUDAGraphEntry, CUDAGraphWrapper
    from vllm.compilation.monitor import set_cudagraph_capturing_enabled
    from vllm.forward_context import (
        BatchDescriptor,
        get_forward_context,
        is_forward_context_available,
    )

    return VllmPieceApi(
        wrapper_class=CUDAGraphWrapper,
        wrappers=lambda: list(CUDAGraphWrapper._all_instances),
        forward_context=lambda: get_forward_context() if is_forward_context_available() else None,
        batch_descriptor=BatchDescriptor,
        entry=CUDAGraphEntry,
        is_cuda_tensor=lambda t: isinstance(t, torch.Tensor) and t.is_cuda,
        set_capturing_enabled=set_cudagraph_capturing_enabled,
        # GPUModelRunner.capture_model passes has_lora=self.lora_config is not None.
        has_lora=lambda manager: manager.vllm_config.lora_config is not None,
    )


# --- keys ------------------------------------------------------------------------------------


def piece_prefix(wrapper: Any) -> str:
    """The compiled model part (`vllm_backend.prefix`, e.g. `backbone`) a wrapper's piece
    belongs to."""
    try:
        return str(wrapper.runnable.vllm_backend.prefix)
    except AttributeError:
        raise KilnError(
            f"a PIECEWISE graph wrapper runs {type(getattr(wrapper, 'runnable', None)).__name__}, "
            "not a vLLM PiecewiseBackend: kiln cannot name its piece"
        ) from None


def wrapper_label(wrapper: Any) -> str:
    """For messages about a wrapper kiln has not named: vLLM's own name for its piece."""
    runnable = getattr(wrapper, "runnable", None)
    name = (
        getattr(runnable, "submod_name", "")
        or f"index {getattr(runnable, 'piecewise_compile_index', '?')}"
    )
    return f"{piece_prefix(wrapper)}/{name}"


def descriptor_key(bd: Any) -> str:
    """Every field of vLLM's BatchDescriptor."""
    return (
        f"t{bd.num_tokens}/r{bd.num_reqs}/u{int(bool(bd.uniform))}"
        f"/h{int(bool(bd.has_lora))}/l{bd.num_active_loras}"
    )


def piece_key(piece: str, bd: Any, structure: str) -> str:
    return f"{KEY_PREFIX}{piece}/{descriptor_key(bd)}/o{structure}"


def piece_of_key(key: str) -> str | None:
    if not key.startswith(KEY_PREFIX):
        return None
    parts = key[len(KEY_PREFIX) :].rsplit("/", _KEY_TAIL)
    return parts[0] if len(parts) == _KEY_TAIL + 1 else None


def output_structure(output: Any, piece: str, is_cuda_tensor: Callable[[Any], bool]) -> str:
    """`tensor`, `tupleN` or `listN`: what kiln can rebuild from a restored graph's outputs
    (the runtime keeps the CUDA tensors at the top level of what the capture returned)."""
    if is_cuda_tensor(output):
        return "tensor"
    if type(output) in (tuple, list) and output and all(is_cuda_tensor(t) for t in output):
        return f"{type(output).__name__}{len(output)}"
    if type(output) in (tuple, list):
        found = ", ".join(type(t).__name__ for t in output) or "nothing"
        what = f"a {type(output).__name__} of {found}"
    else:
        what = f"a {type(output).__name__}"
    raise KilnError(
        f"PIECEWISE piece {piece} returns {what}; kiln restores a piece whose output is a CUDA "
        "tensor or a tuple or list of CUDA tensors"
    )


def _count(structure: str) -> int:
    for kind in ("tuple", "list"):
        if structure.startswith(kind):
            return int(structure[len(kind) :])
    return 1  # "tensor"


def rebuild_output(structure: str, outputs: Sequence[Any], key: str) -> Any:
    count = _count(structure)
    if len(outputs) != count:
        raise KilnError(
            f"PIECEWISE graph {key}: the archive holds {len(outputs)} output tensors, the piece "
            f"returns {count} (an output outside kiln's region at SAVE is not archived)"
        )
    if structure == "tensor":
        return outputs[0]
    return tuple(outputs) if structure.startswith("tuple") else list(outputs)


def archived_keys(driver: Any) -> list[str] | None:
    """At LOAD, the graph keys SAVE recorded (the driver's context), when it exposes them."""
    recorded = getattr(getattr(driver, "ctx", None), "recorded", None)
    graphs = None if recorded is None else recorded.get("graphs")
    return None if graphs is None else [str(k) for k in graphs]


# --- the router --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    name: str
    structure: str
    wrapper: Any


@dataclass(frozen=True)
class Planned:
    piece: Piece
    bd: Any
    key: str


class PieceRouter:
    """Routes the capture branch of every live PIECEWISE wrapper through the driver while
    attached; learns each piece's name and output structure from one eager forward."""

    def __init__(self, api: VllmPieceApi, driver: Any, piecewise: Any, none: Any) -> None:
        self.api = api
        self.driver = driver
        self.piecewise = piecewise
        self.none = none
        self.loading = driver.mode.value == "load"
        self.pieces: list[Piece] = []
        self._by_wrapper: dict[int, Piece] = {}
        self._attached: list[Any] = []
        self._observing = False
        self._planned: set[str] = set()
        self._captured: set[str] = set()

    # attaching -------------------------------------------------------------------------------
    def attach(self) -> None:
        base = self.api.wrapper_class
        routing = _routing_class(base, self)
        for wrapper in self.api.wrappers():
            if wrapper.runtime_mode != self.piecewise:
                continue  # the V2 runner never runs a FULL-mode wrapper's capture branch
            if type(wrapper) is not base:
                self.detach()
                raise KilnError(
                    f"a PIECEWISE graph wrapper is a {type(wrapper).__qualname__}; kiln routes "
                    f"the captures of {base.__qualname__} only"
                )
            wrapper.__class__ = routing
            self._attached.append(wrapper)

    def detach(self) -> None:
        for wrapper in self._attached:
            wrapper.__class__ = self.api.wrapper_class
        self._attached.clear()

    @contextlib.contextmanager
    def observing(self) -> Iterator[None]:
        self._observing = True
        try:
            yield
        finally:
            self._observing = False

    # vLLM's __call__, with its capture branch through the driver ------------------------
    def call(self, wrapper: Any, args: Any, kwargs: Any, original: Callable[..., Any]) -> Any:
        ctx = self.api.forward_context()
        mode = None if ctx is None else ctx.cudagraph_runtime_mode
        if mode is None or mode == self.none or mode != wrapper.runtime_mode:
            output = original(wrapper, *args, **kwargs)  # eager
            if self._observing:
                self._observe(wrapper, output)
            return output
        bd = ctx.batch_descriptor
        entry = None if bd is None else wrapper.concrete_cudagraph_entries.get(bd)
        if bd is None or (entry is not None and entry.cudagraph is not None):
            return original(wrapper, *args, **kwargs)  # replay (or vLLM's own assertion)
        return self._capture(wrapper, bd, lambda: original(wrapper, *args, **kwargs))

    def _observe(self, wrapper: Any, output: Any) -> None:
        # A piece is named by its place in the forward, not by vLLM's names for it: a
        # compiled backend has `submod_name` and an index, one rebuilt from the mega AOT
        # artifact only an index, and SAVE may compile while LOAD loads.
        known = self._by_wrapper.get(id(wrapper))
        if known is None:
            prefix = piece_prefix(wrapper)
            place = sum(p.name.startswith(f"{prefix}/#") for p in self.pieces)
            name = f"{prefix}/#{place}"
        else:
            name = known.name
        structure = output_structure(output, name, self.api.is_cuda_tensor)
        if known is None:
            piece = Piece(name, structure, wrapper)
            self._by_wrapper[id(wrapper)] = piece
            self.pieces.append(piece)
        elif known.structure != structure:
            raise KilnError(
                f"PIECEWISE piece {name} returned {known.structure}, then {structure}, in one "
                "forward"
            )

    def _capture(self, wrapper: Any, bd: Any, capture: Callable[[], Any]) -> Any:
        piece = self._by_wrapper.get(id(wrapper))
        name = piece.name if piece else wrapper_label(wrapper)
        if self.loading:
            raise KilnError(f"PIECEWISE piece {name} would be captured at LOAD")
        if piece is None:
            raise KilnError(
                f"PIECEWISE piece {name} captures a graph but did not run in the first warmup"
            )
        key = piece_key(name, bd, piece.structure)
        if key not in self._planned:
            raise KilnError(f"PIECEWISE graph {key} is not one kiln planned (its descriptor?)")
        output = self.driver.capture_graph(key, capture)
        structure = output_structure(output, name, self.api.is_cuda_tensor)
        if structure != piece.structure:
            raise KilnError(
                f"PIECEWISE graph {key}: the captured piece returned {structure}, its warmup "
                f"{piece.structure}"
            )
        self._captured.add(key)
        return output

    # planning, checking, installing --------------------------------------------------------
    def plan(self, descs: Sequence[Any], has_lora: bool) -> list[Planned]:
        """Every (piece, size) in SAVE's capture order; the BatchDescriptor is built as
        ModelCudaGraphManager.capture's forward_fn builds it."""
        if not self.pieces:
            raise KilnError("no PIECEWISE piece ran in the first warmup")
        planned = []
        for desc in descs:
            bd = self.api.batch_descriptor(
                num_tokens=desc.num_tokens,
                has_lora=has_lora,
                num_active_loras=desc.num_active_loras,
            )
            for p in self.pieces:
                planned.append(Planned(p, bd, piece_key(p.name, bd, p.structure)))
        self._planned = {p.key for p in planned}
        return planned

    def check_all_captured(self, plan: Sequence[Planned]) -> None:
        missing = [p.key for p in plan if p.key not in self._captured]
        if missing:
            raise KilnError(
                f"{len(missing)} planned PIECEWISE graphs were not captured, e.g. {missing[0]}"
            )

    def check_archive(self, plan: Sequence[Planned]) -> None:
        """LOAD: every archived piece has a wrapper here, every wrapper its archived graphs."""
        archived = archived_keys(self.driver)
        if archived is None:
            return  # capture_begin still checks the planned keys
        here = {p.piece.name for p in plan}
        saved = {piece_of_key(k) for k in archived} - {None}
        gone = sorted(str(n) for n in saved - here)
        if gone:
            raise KilnError(
                f"the archive holds PIECEWISE graphs of piece(s) {', '.join(gone)}, which no "
                "graph wrapper of this process runs"
            )
        have = set(archived)
        for p in plan:
            if p.key not in have:
                raise KilnError(
                    f"PIECEWISE piece {p.piece.name} has no archived graph {p.key} (saved "
                    f"without {ENV}=1, or its output or sizes differ)"
                )

    def install(self, plan: Sequence[Planned]) -> None:
        """LOAD: each wrapper's entries as vLLM's capture leaves them, graphs restored."""
        for p in plan:
            wrapper = p.piece.wrapper
            if getattr(wrapper, "is_debugging_mode", False):
                raise KilnError(
                    f"PIECEWISE piece {p.piece.name}: VLLM_LOGGING_LEVEL=DEBUG checks input "
                    "addresses at replay, which kiln does not archive"
                )
            entries = wrapper.concrete_cudagraph_entries
            if p.bd in entries:
                raise KilnError(f"PIECEWISE graph {p.key} was captured twice")
            got = self.driver.capture_graph(p.key, _no_capture(p.key))
            if not hasattr(got, "replay"):
                raise KilnError(
                    f"the driver returned {type(got).__name__} for {p.key}, not a replayable graph"
                )
            output = rebuild_output(p.piece.structure, list(getattr(got, "outputs", [])), p.key)
            entries[p.bd] = self.api.entry(
                batch_descriptor=p.bd, cudagraph=got, output=output, input_addresses=None
            )


def _routing_class(base: type, router: PieceRouter) -> type:
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return router.call(self, args, kwargs, base.__call__)

    return type(f"Kiln{base.__name__}", (base,), {"__call__": __call__, "__module__": __name__})


def _no_capture(key: str) -> Callable[[], Any]:
    def capture() -> Any:
        raise KilnError(
            f"PIECEWISE graph {key} cannot be captured natively at LOAD: the forwards before it "
            "did not run (the graphs are restored as a whole)"
        )

    return capture


# --- the PIECEWISE part of kiln's capture loop ------------------------------------------------


def capture_pieces(
    manager: Any,
    create_forward_fn: Callable[[Any, bool], tuple[Callable[[Any], None], Any]],
    driver: Any,
    api: Any,  # kiln_vllm.graphs.VllmCaptureApi, with .pieces set
    full_keys: Sequence[str],
    attn_states: dict[Any, Any],
) -> None:
    """SAVE: vLLM's PIECEWISE loop with every piece capture through the driver. LOAD: the
    first descriptor's inputs and warmup only, then every piece restored. Both open the
    capture set (capture_begin) for the pieces and the FULL graphs after them."""
    descs = manager._capture_descs[api.piecewise]
    router = PieceRouter(api.pieces, driver, api.piecewise, api.none)
    router.attach()
    try:
        first = descs[0]
        forward_fn, state = create_forward_fn(first, True)
        with router.observing():
            forward_fn(api.none)  # warmup: every piece runs eagerly; allocates hidden_states
        attn_states[first] = api.attention_state_pair(state, state)
        plan = router.plan(descs, api.pieces.has_lora(manager))
        if router.loading:
            router.check_archive(plan)
        # SAVE's capture window starts at the first piece's capture, inside the next forward.
        driver.capture_begin([p.key for p in plan] + list(full_keys))
        if router.loading:
            router.install(plan)
            api.pieces.set_capturing_enabled(False)  # a missing entry raises, never captures
            return
        forward_fn(api.piecewise)
        for desc in descs[1:]:
            forward_fn, state = create_forward_fn(desc, True)
            forward_fn(api.none)  # warmup
            attn_states[desc] = api.attention_state_pair(state, state)
            forward_fn(api.piecewise)
        router.check_all_captured(plan)
    finally:
        router.detach()
