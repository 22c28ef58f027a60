"""TensorRT-LLM's decode graphs through kiln, at `CUDAGraphRunner.capture`.

`PyTorchModelEngine._run_cuda_graph_warmup` walks the graph shapes (largest batch first); for
each it builds a dummy batch and runs `forward`, which asks the runner's
`capture(key, forward_fn, initial_inputs, enable_spec_decode, postprocess_fn)` for the graph:
`WARMUP_STEPS` eager forwards, one `torch.cuda.CUDAGraph` captured into the runner's pool,
then `graphs[key]`, `graph_outputs[key]` (weak references to the output) and the pool chained
through `graph.pool()`. kiln keeps TensorRT-LLM's loop and its `capture` in both modes and
wraps each call:

- First shape, both modes: TensorRT-LLM's own capture runs with `is_warmup_only` set (its
  warm-ups only, no graph), before the capture window, so what they initialise (workspaces,
  JIT modules, the attention workspace's size) is allocated identically at SAVE and LOAD.
  Its output is the template whose tensor leaves every graph's output must match; then
  `capture_begin`.
- SAVE: each shape is `driver.capture_graph(key, capture)`, where `capture` is TensorRT-LLM's
  `capture` (warm-ups, the one stream capture, the stored graph) returning its output and the
  output's tensors, which kiln records as the graph's outputs.
- LOAD: `capture_graph` returns the restored graph, installed as `graphs[key]`;
  `graph_outputs[key]` is the template rebuilt from the restored outputs, and
  `graph_metadata[key]` is what TensorRT-LLM's capture would have recorded (replay asserts
  it). No forward runs inside the window.
- After a fallback the driver calls `capture`, which is TensorRT-LLM's own.

Keys: `trtllm/decode/<field>=<value>/.../o=<output leaves>`, the fields of TensorRT-LLM's
graph key in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.errors import KilnError, NonPersistableGraph

SESSION_ATTR = "_kiln_session"  # on a CUDAGraphRunner while kiln drives its capture loop
TENSOR = "tensor"


def key_fields(key: Any) -> list[tuple[str, Any]]:
    """The graph key's fields: a NamedTuple's names, else positions (older tuples)."""
    asdict = getattr(key, "_asdict", None)
    if callable(asdict):
        return list(asdict().items())
    return [(f"k{i}", v) for i, v in enumerate(tuple(key))]


def _label(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return str(value).replace("/", "_").replace(" ", "")


def graph_key(key: Any, leaves: Sequence[str]) -> str:
    parts = "/".join(f"{name}={_label(value)}" for name, value in key_fields(key))
    return f"trtllm/decode/{parts}/o={'+'.join(leaves) or 'none'}"


def leaves(out: Any, is_tensor: Callable[[Any], bool], path: str = "") -> list[tuple[str, Any]]:
    """The output's tensors with their paths, in order; refuses what kiln cannot rebuild."""
    if is_tensor(out):
        return [(path or TENSOR, out)]
    if out is None:
        return []
    if isinstance(out, dict):
        found = []
        for name, value in out.items():
            found += leaves(value, is_tensor, f"{path}.{name}" if path else str(name))
        return found
    if isinstance(out, (list, tuple)):
        found = []
        for i, value in enumerate(out):
            found += leaves(value, is_tensor, f"{path}[{i}]")
        return found
    raise NonPersistableGraph(
        f"TensorRT-LLM's decode graph output holds {type(out).__name__} at "
        f"{path or 'the top'}; kiln rebuilds tensors in dicts, lists and tuples"
    )


def rebuilt(template: Any, tensors: Sequence[Any], is_tensor: Callable[[Any], bool]) -> Any:
    """`template` with its tensors replaced, in order, by `tensors`."""
    pending = list(tensors)

    def walk(value: Any) -> Any:
        if is_tensor(value):
            if not pending:
                raise KilnError("the restored graph has fewer outputs than its key names")
            return pending.pop(0)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(walk(v) for v in value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = walk(template)
    if pending:
        raise KilnError(f"the restored graph has {len(pending)} output(s) more than its key")
    return out


def normalised_key(runner: Any, key: Any) -> Any:
    """The key as TensorRT-LLM's capture stores it (`KeyType(*key)` of the runner's module,
    where it defines one)."""
    import sys

    key_type = getattr(sys.modules.get(type(runner).__module__), "KeyType", None)
    return key_type(*key) if isinstance(key_type, type) else key


@dataclass(frozen=True)
class CaptureApi:
    """The torch names kiln uses (a namespace, so tests can stand in)."""

    is_tensor: Callable[[Any], bool]


def torch_capture_api() -> CaptureApi:
    import torch

    return CaptureApi(is_tensor=lambda v: isinstance(v, torch.Tensor))


@dataclass
class CaptureSession:
    """One `_run_cuda_graph_warmup` of the final executor under kiln."""

    driver: Any
    api: CaptureApi
    began: bool = False
    template: Any = None
    names: tuple[str, ...] = ()
    restored: list[Any] = field(default_factory=list)

    def end(self) -> None:
        if self.began:
            self.driver.capture_end()
        self.template = None  # a warm-up's output: not kept past the capture


def kiln_capture(
    session: CaptureSession,
    runner: Any,
    original: Callable[..., Any],
    key: Any,
    forward_fn: Callable[..., Any],
    initial_inputs: dict[str, Any],
    enable_spec_decode: bool,
    postprocess_fn: Callable[..., Any] | None,
) -> Any:
    """`CUDAGraphRunner.capture` with kiln around it (see the module docstring)."""
    api = session.api

    def engine_capture() -> Any:
        return original(runner, key, forward_fn, initial_inputs, enable_spec_decode, postprocess_fn)

    if not session.began:
        runner.is_warmup_only = True
        try:
            template = engine_capture()
        finally:
            runner.is_warmup_only = False
        session.template = template
        session.names = tuple(name for name, _ in leaves(template, api.is_tensor))
        session.driver.capture_begin(None)
        session.began = True
    name = graph_key(key, session.names)
    captured: list[Any] = []

    def capture() -> Any:
        out = engine_capture()
        captured.append(out)
        if session.driver.mode.value not in ("save", "load"):
            return out  # native after a fallback: TensorRT-LLM's own capture
        found = leaves(out, api.is_tensor)
        if tuple(n for n, _ in found) != session.names:
            raise NonPersistableGraph(
                f"{name}: the graph's output has the leaves {[n for n, _ in found]}, the "
                f"first warm-up's had {list(session.names)}"
            )
        return tuple(t for _, t in found)  # kiln records these as the graph's outputs

    got = session.driver.capture_graph(name, capture)
    if captured:  # SAVE, or TensorRT-LLM's capture after a fallback
        return captured[-1]
    if not hasattr(got, "replay") or not hasattr(got, "outputs"):
        raise KilnError(f"{name}: the driver returned {type(got).__name__}, not a restored graph")
    output = rebuilt(session.template, list(got.outputs), api.is_tensor)
    graph_key_obj = normalised_key(runner, key)
    runner.graph_metadata[graph_key_obj] = {
        "attn_metadata": initial_inputs["attn_metadata"],
        "spec_metadata": initial_inputs.get("spec_metadata", None),
    }
    runner.graphs[graph_key_obj] = got
    runner.graph_outputs[graph_key_obj] = output
    session.restored.append(graph_key_obj)
    return output
