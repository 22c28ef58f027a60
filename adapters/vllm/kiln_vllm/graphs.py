"""vLLM's graph capture loop with kiln in it (V2 runner, `CudaGraphManager.capture`).

vLLM 0.24's `ModelCudaGraphManager.capture` builds a `create_forward_fn` closure (inputs,
attention metadata, the forward) and hands it to the base `CudaGraphManager.capture`, which
warms up and captures each descriptor: PIECEWISE first, then FULL. kiln slots a class
between the two (`KilnCaptureLoop`) so that the closure reaches kiln's loop, which differs
from vLLM's in one place: each FULL capture goes through the lifecycle driver. At SAVE the
driver records the graph where its stream capture ends; at LOAD it hands back the restored
graph and vLLM's capture is not run.

By default the PIECEWISE part goes through kiln too (`kiln_vllm.pieces`): SAVE's capture
window starts at the first piece's capture, and LOAD runs only the first PIECEWISE
descriptor's inputs and warmup (they allocate memory the restored graphs read at SAVE's
addresses, so they must allocate in the same order), then restores every piece and every
FULL graph without running a forward.

With KILN_VLLM_PIECEWISE=0 the PIECEWISE graphs are captured natively, and LOAD also runs
everything before the first FULL capture (PIECEWISE warmups and captures, the first FULL
descriptor's warmup and inputs). Every allocation from the first FULL capture on lies in
SAVE's capture window, which kiln re-creates in one piece, so later FULL descriptors are
neither warmed up nor prepared.

The loop mirrors `CudaGraphManager.capture` in vLLM 0.24.0; the seam contract checks its
signature and pins its source hash (`kiln_vllm.seams`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiln.errors import KilnError

from kiln_vllm.pieces import capture_pieces, piecewise_restore_requested, vllm_piece_api


def full_graph_key(desc: Any) -> str:
    """The archive key of a FULL graph: every field of vLLM's BatchExecutionDescriptor."""
    return (
        f"full/t{desc.num_tokens}/r{desc.num_reqs}/u{desc.uniform_token_count}"
        f"/l{desc.num_active_loras}"
    )


@dataclass(frozen=True)
class VllmCaptureApi:
    """The vLLM and torch names the loop uses (a namespace, so tests can stand in)."""

    piecewise: Any  # CUDAGraphMode.PIECEWISE
    full: Any  # CUDAGraphMode.FULL
    none: Any  # CUDAGraphMode.NONE
    attention_state_pair: Callable[[Any, Any], Any]
    graph_capture: Callable[..., Any]  # vllm.distributed.parallel_state.graph_capture
    offloader: Callable[[], Any]  # vllm.model_executor.offloader.base.get_offloader
    new_graph: Callable[[], Any]  # torch.cuda.CUDAGraph
    graph_context: Callable[[Any, Any], Any]  # torch.cuda.graph(graph, pool)
    pieces: Any = None  # kiln_vllm.pieces.VllmPieceApi unless KILN_VLLM_PIECEWISE=0


def vllm_capture_api() -> VllmCaptureApi:
    import torch
    from vllm.config.compilation import CUDAGraphMode
    from vllm.distributed.parallel_state import graph_capture
    from vllm.model_executor.offloader.base import get_offloader
    from vllm.v1.worker.gpu.cudagraph_utils import AttentionStatePair

    return VllmCaptureApi(
        piecewise=CUDAGraphMode.PIECEWISE,
        full=CUDAGraphMode.FULL,
        none=CUDAGraphMode.NONE,
        attention_state_pair=AttentionStatePair,
        graph_capture=graph_capture,
        offloader=get_offloader,
        new_graph=torch.cuda.CUDAGraph,
        graph_context=lambda graph, pool: torch.cuda.graph(graph, pool),
        pieces=vllm_piece_api() if piecewise_restore_requested() else None,
    )


def capture_all(
    manager: Any,
    create_forward_fn: Callable[[Any, bool], tuple[Callable[[Any], None], Any]],
    driver: Any,
    api: VllmCaptureApi,
) -> dict[Any, Any]:
    """Capture (SAVE, native) or restore (LOAD) `manager`'s graphs; returns vLLM's
    attention states per descriptor (only speculators read them)."""
    loading = driver.mode.value == "load"
    attn_states: dict[Any, Any] = {}
    descs = manager._capture_descs
    # PIECEWISE graphs go through kiln only when kiln saves or loads (and unless turned off).
    pieces = (
        api.pieces is not None
        and bool(descs.get(api.piecewise))
        and driver.mode.value in ("save", "load")
    )
    with api.graph_capture(device=manager.device):
        full = descs.get(api.full, [])
        if pieces:
            full_keys = [full_graph_key(d) for d in full]
            capture_pieces(manager, create_forward_fn, driver, api, full_keys, attn_states)
        else:
            for desc in descs.get(api.piecewise, []):
                forward_fn, state = create_forward_fn(desc, True)
                forward_fn(api.none)  # warmup
                attn_states[desc] = api.attention_state_pair(state, state)
                forward_fn(api.piecewise)  # the compiled model's wrappers capture each piece
            driver.capture_begin([full_graph_key(d) for d in full])
        for i, desc in enumerate(full):
            key = full_graph_key(desc)
            if desc in manager.graphs:
                raise KilnError(f"vLLM graph {key} was captured twice")
            if loading and (pieces or i > 0):
                # Inside SAVE's capture window (from the first piece, or else from the first
                # FULL capture): nothing to prepare, kiln maps it whole. The capture function
                # runs only if the policy falls back to a native start.
                fallback = _prepared_capture(manager, create_forward_fn, desc, api, attn_states)
                got = driver.capture_graph(key, fallback)
                manager.graphs[desc] = _captured_or_restored(manager, key, got)
                continue
            forward_fn, warm_state = create_forward_fn(desc, True)
            forward_fn(api.none)  # warmup (allocates hidden_states unless a PIECEWISE one did)
            forward_fn, state = create_forward_fn(desc, False)  # fresh attention state
            attn_states[desc] = api.attention_state_pair(warm_state, state)
            got = driver.capture_graph(key, _full_capture(manager, forward_fn, api))
            manager.graphs[desc] = _captured_or_restored(manager, key, got)
        driver.capture_end()
    manager._graphs_captured = True
    return attn_states


def _full_capture(manager: Any, forward_fn: Callable[[Any], None], api: VllmCaptureApi) -> Any:
    def capture() -> tuple[Any, Any]:
        graph = api.new_graph()
        offloader = api.offloader()
        offloader.sync_prev_onload()
        with api.graph_context(graph, manager.pool):
            forward_fn(api.none)
            offloader.join_after_forward()
        # The graph writes the model's output into hidden_states: kiln records it as the
        # graph's output so that LOAD can prove it lies at the same address.
        return graph, manager.hidden_states

    return capture


def _prepared_capture(
    manager: Any,
    create_forward_fn: Callable[[Any, bool], tuple[Callable[[Any], None], Any]],
    desc: Any,
    api: VllmCaptureApi,
    attn_states: dict[Any, Any],
) -> Callable[[], Any]:
    """vLLM's whole sequence for one FULL descriptor (inputs, warmup, capture): what a
    native start does when LOAD falls back after skipping the preparation."""

    def capture() -> Any:
        forward_fn, warm_state = create_forward_fn(desc, True)
        forward_fn(api.none)
        forward_fn, state = create_forward_fn(desc, False)
        attn_states[desc] = api.attention_state_pair(warm_state, state)
        return _full_capture(manager, forward_fn, api)()

    return capture


def _captured_or_restored(manager: Any, key: str, got: Any) -> Any:
    if isinstance(got, tuple):  # SAVE or native: (CUDAGraph, hidden_states)
        return got[0]
    restored = _restored(got)
    outputs = getattr(restored, "outputs", [])
    hidden = manager.hidden_states
    if hidden is not None and outputs and outputs[0].data_ptr() != hidden.data_ptr():
        raise KilnError(
            f"vLLM graph {key}: SAVE's graph wrote hidden states at "
            f"0x{outputs[0].data_ptr():x}, this process allocated them at "
            f"0x{hidden.data_ptr():x} (the allocations before capture differ)"
        )
    return restored


def _restored(got: Any) -> Any:
    if not hasattr(got, "replay"):
        raise KilnError(f"the driver returned {type(got).__name__}, not a replayable graph")
    return got


def kiln_manager_class(manager_class: type) -> type:
    """`manager_class` (ModelCudaGraphManager) with kiln's loop between it and its base,
    so that its `capture` hands `create_forward_fn` to kiln (instances switch to it with
    `__class__`, keeping their state)."""
    base = manager_class.__mro__[1]

    class KilnCaptureLoop(base):  # type: ignore[misc, valid-type]
        _kiln_driver: Any = None

        def capture(self, create_forward_fn: Any, progress_bar_desc: str = "") -> Any:
            if self._kiln_driver is None:
                raise KilnError("kiln's graph manager was installed without a driver")
            return capture_all(self, create_forward_fn, self._kiln_driver, vllm_capture_api())

    return type(f"Kiln{manager_class.__name__}", (manager_class, KilnCaptureLoop), {})
