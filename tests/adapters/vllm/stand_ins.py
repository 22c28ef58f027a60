"""Stand-ins for vLLM objects shared by the capture-loop and PIECEWISE tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln_vllm.graphs import VllmCaptureApi


@dataclass(frozen=True)
class Desc:  # vLLM's BatchExecutionDescriptor
    cg_mode: str
    num_tokens: int
    num_reqs: int | None = None
    uniform_token_count: int | None = None
    num_active_loras: int = 0


class FakeTensor:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def data_ptr(self) -> int:
        return self.ptr


def graph_manager(descs: dict[str, list[Desc]], **extra: Any) -> SimpleNamespace:
    """vLLM's ModelCudaGraphManager as kiln's capture loop reads it: the descriptors to
    capture, and the state a capture leaves (`graphs`, `hidden_states`, `_graphs_captured`)."""
    return SimpleNamespace(
        _capture_descs=descs,
        graphs={},
        device="cuda:0",
        pool="pool",
        hidden_states=None,
        _graphs_captured=False,
        **extra,
    )


def capture_api(
    new_graph: Callable[[], Any],
    graph_context: Callable[[Any, Any], contextlib.AbstractContextManager[None]],
    pieces: Any = None,
) -> VllmCaptureApi:
    """A `kiln_vllm.graphs.VllmCaptureApi` whose graphs come from `new_graph` and whose
    FULL captures run inside `graph_context`; everything else is inert."""
    from kiln_vllm.graphs import VllmCaptureApi  # callers skip when kiln-vllm is absent

    @contextlib.contextmanager
    def graph_capture(device: Any) -> Iterator[None]:
        yield

    offloader = SimpleNamespace(sync_prev_onload=lambda: None, join_after_forward=lambda: None)
    return VllmCaptureApi(
        piecewise="PIECEWISE",
        full="FULL",
        none="NONE",
        attention_state_pair=lambda a, b: (a, b),
        graph_capture=graph_capture,
        offloader=lambda: offloader,
        new_graph=new_graph,
        graph_context=graph_context,
        pieces=pieces,
    )
