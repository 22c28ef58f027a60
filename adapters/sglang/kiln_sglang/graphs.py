"""SGLang's decode graphs through kiln, at `FullCudaGraphBackend.capture_one`.

SGLang 0.5.16 captures each decode batch size in `DecodeCudaGraphRunner.capture`, whose loop
prepares the shape (static buffer slices, attention metadata, the DeepEP latch) and then
calls its backend's `capture_one(shape_key, forward_fn, dummies, post_warmup_hook)`: two
warm-up forwards, one `torch.cuda.CUDAGraph` captured into the backend's pool, and the graph
and its output stored in `backend._graphs` / `backend._outputs`. kiln keeps SGLang's loop in
both modes (so SGLang's own code rebuilds every piece of Python state replay reads) and
replaces only `capture_one` (`kiln_capture_one`, which mirrors SGLang's; the seam contract
pins its source):

- First (largest) shape, both modes: the two warm-ups run before the capture window, so
  what they initialise (cuBLAS workspaces, JIT and Triton modules, torch.compile'd helpers,
  the first collective) is allocated identically at SAVE and LOAD. The warm-up's output
  names the output's tensor fields, which complete every key; then `capture_begin(keys)`.
- SAVE: each shape is `driver.capture_graph(key, capture)`, where `capture` is the graph
  capture (preceded, from the second shape on, by that shape's warm-ups).
- LOAD: `driver.capture_graph(key, ...)` returns the restored graph, installed as the
  backend's graph; its outputs, put back into the first warm-up's output structure, are the
  backend's output. No forward runs after the first shape's warm-ups.
- After a fallback the driver calls `capture`, which is SGLang's sequence for the shape.

Keys: `sglang/decode/full/bs=<size>/s=<stream>/v=<variant>/h=<hidden mode>/o=<fields>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from kiln.errors import KilnError, NonPersistableGraph

SESSION_ATTR = "_kiln_session"  # on a FullCudaGraphBackend while kiln drives its capture
TENSOR = "tensor"  # the fields part of a key whose output is a bare tensor


@dataclass(frozen=True)
class CaptureApi:
    """The torch names the capture uses (a namespace, so tests can stand in)."""

    new_graph: Callable[[], Any]  # torch.cuda.CUDAGraph
    # SGLang's capture context for one graph: the backend's device module's `graph`, into
    # the backend's pool, on its capture stream.
    graph_context: Callable[[Any, Any], AbstractContextManager[Any]]
    is_tensor: Callable[[Any], bool]


def torch_capture_api() -> CaptureApi:
    import torch

    def graph_context(backend: Any, graph: Any) -> AbstractContextManager[Any]:
        return backend._device_module.graph(
            cuda_graph=graph, pool=backend._pool, stream=backend._capture_stream
        )

    return CaptureApi(
        new_graph=torch.cuda.CUDAGraph,
        graph_context=graph_context,
        is_tensor=lambda value: isinstance(value, torch.Tensor),
    )


def _label(value: Any) -> str:
    if value is None:
        return "-"
    name = getattr(value, "name", None)  # enums (CaptureHiddenMode)
    return str(name if isinstance(name, str) else value)


def graph_key(shape_key: Any, hidden_mode: Any, fields: Sequence[str]) -> str:
    return (
        f"sglang/decode/full/bs={shape_key.size}/s={_label(shape_key.stream_idx)}"
        f"/v={_label(shape_key.variant_label)}/h={_label(hidden_mode)}"
        f"/o={'+'.join(fields) or 'none'}"
    )


def output_fields(out: Any, api: CaptureApi) -> tuple[str, ...]:
    """The output's tensor fields, in declaration order; refuses what kiln cannot rebuild
    (a field that is neither a tensor nor at its default)."""
    if api.is_tensor(out):
        return (TENSOR,)
    if not dataclasses.is_dataclass(out) or isinstance(out, type):
        raise NonPersistableGraph(
            f"SGLang's decode graph returned {type(out).__name__}; kiln rebuilds tensors and "
            "dataclasses of tensors"
        )
    names = []
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if api.is_tensor(value):
            names.append(f.name)
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if value is not None and value != default:
            raise NonPersistableGraph(
                f"SGLang's decode graph output {type(out).__name__}.{f.name} holds "
                f"{type(value).__name__}, which a restored graph cannot rebuild"
            )
    return tuple(names)


def output_tensors(out: Any, fields: Sequence[str]) -> tuple[Any, ...]:
    if tuple(fields) == (TENSOR,):
        return (out,)
    return tuple(getattr(out, name) for name in fields)


def rebuilt_output(template: Any, fields: Sequence[str], tensors: Sequence[Any]) -> Any:
    """The output structure of `template` with the restored graph's tensors in it."""
    if len(tensors) != len(fields):
        raise KilnError(
            f"the restored graph has {len(tensors)} output(s); its key names {list(fields)}"
        )
    if tuple(fields) == (TENSOR,):
        return tensors[0]
    return dataclasses.replace(template, **dict(zip(fields, tensors, strict=True)))


@dataclass
class CaptureSession:
    """One `DecodeCudaGraphRunner.capture` under kiln."""

    driver: Any
    runner: Any
    api: CaptureApi
    # Applies the policy to a failure found before capture_begin (kiln_sglang.hooks):
    # raises under strict, returns after a fallback (the driver is then native).
    on_error: Callable[[KilnError], None] | None = None
    began: bool = False
    template: Any = None
    fields: tuple[str, ...] = ()
    restored: list[Any] = field(default_factory=list)  # shape keys restored at LOAD

    def planned_shapes(self) -> list[Any]:
        """The shape keys SGLang's loop will capture, in its order (largest first)."""
        runner = self.runner
        make = runner._make_graph_key
        return [make(bs) for bs in reversed(list(runner.capture_bs))]

    def key(self, shape_key: Any) -> str:
        return graph_key(shape_key, getattr(self.runner, "capture_hidden_mode", None), self.fields)

    def begin(self, first_output: Any) -> None:
        self.template = first_output
        try:
            self.fields = output_fields(first_output, self.api)
        except KilnError as err:
            if self.on_error is None:
                raise
            self.on_error(err)  # fallback: capture_begin ran (and failed); go on natively
            self.began = True
            return
        self.driver.capture_begin([self.key(s) for s in self.planned_shapes()])
        self.began = True

    def end(self) -> None:
        if self.began:
            self.driver.capture_end()
        self.template = None  # a warm-up's output: not kept past the capture, in both modes


def _warmups(backend: Any, forward_fn: Callable[[], Any], hook: Callable[[], None] | None) -> Any:
    out = None
    for _ in range(2):  # as SGLang's capture_one: synchronize, barrier, forward, hook
        backend._device_module.synchronize()
        backend._tp_group.barrier()
        out = forward_fn()
        if hook is not None:
            hook()
    return out


def kiln_capture_one(
    session: CaptureSession,
    backend: Any,
    shape_key: Any,
    forward_fn: Callable[[], Any],
    post_warmup_hook: Callable[[], None] | None,
) -> None:
    """`FullCudaGraphBackend.capture_one` with kiln in it (see the module docstring)."""
    saver = getattr(backend, "_memory_saver_adapter", None)
    if saver is not None and getattr(saver, "enabled", False):
        raise KilnError("SGLang's memory saver owns the graphs' memory (kiln pins it off)")
    api = session.api
    first = not session.began
    if first:
        session.begin(_warmups(backend, forward_fn, post_warmup_hook))
    key = session.key(shape_key)
    captured: list[Any] = []

    def capture() -> tuple[Any, ...]:
        if not first:
            _warmups(backend, forward_fn, post_warmup_hook)
        graph = api.new_graph()
        with api.graph_context(backend, graph):
            out = forward_fn()
        captured.append(out)
        if session.driver.mode.value not in ("save", "load"):
            return (graph,)  # native after a fallback: SGLang's own capture, nothing recorded
        fields = output_fields(out, api)
        if fields != session.fields:
            raise NonPersistableGraph(
                f"{key}: the graph's output has the fields {list(fields)}, the first "
                f"warm-up's had {list(session.fields)}"
            )
        # kiln records the tensors as the graph's outputs.
        return (graph, *output_tensors(out, fields))

    got = session.driver.capture_graph(key, capture)
    if captured:  # SAVE, or a native capture after a fallback
        backend._graphs[shape_key] = got[0]
        backend._outputs[shape_key] = captured[-1]
        return
    if not hasattr(got, "replay") or not hasattr(got, "outputs"):
        raise KilnError(f"{key}: the driver returned {type(got).__name__}, not a restored graph")
    backend._graphs[shape_key] = got
    backend._outputs[shape_key] = rebuilt_output(session.template, session.fields, got.outputs)
    session.restored.append(shape_key)
