"""SAVE side: capture callables into CUDA graphs through PyTorch's public API and describe
them for an archive.

A CaptureSession is the *window*: allocations made inside it (graph memory pools, outputs)
are re-created by kiln at LOAD at the same addresses. Allocations made before it (weights,
static inputs) must be made the same way by the LOAD process, which kiln verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from kiln.errors import KilnError, NonPersistableGraph
from kiln.graphs import library_memory
from kiln.graphs.rng_check import check_graph_rng
from kiln.graphs.tensors import TensorSpec
from kiln.native import native
from kiln.region import Region


def _flatten(out: Any, what: str) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in out):
        return list(out)
    raise NonPersistableGraph(f"{what} must return a tensor or a tuple/list of tensors")


def warm_up(fn: Callable[..., Any], inputs: Sequence[Any], times: int, device: int) -> None:
    """Call `fn` `times` on a side stream, as engines do before capture: lazy initialisation
    (module loads, handles, autotuning) happens here, not in the graph. Then release what
    it allocated: kernels' unused parameter slots can hold stale host-stack copies of such
    pointers, which the pointer audit would (rightly, it cannot tell) refuse. cuBLAS
    workspaces are cached per stream by PyTorch, outside empty_cache's reach."""
    import torch

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(times):
            fn(*inputs)
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
    torch.cuda.empty_cache()


@dataclass
class CapturedGraph:
    """A graph captured in this process: replayable natively, describable for an archive."""

    name: str
    graph: Any  # torch.cuda.CUDAGraph
    desc: Any  # kiln._native.GraphDesc
    inputs: list[Any]
    outputs: list[Any]
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    trajectory_span: tuple[int, int]  # allocation indices made while capturing

    def replay(self) -> None:
        self.graph.replay()


@dataclass
class CaptureSession:
    """Captures graphs into one shared memory pool, as engines do for their batch sizes."""

    region: Region
    graphs: list[CapturedGraph] = field(default_factory=list)
    window: tuple[int, int] | None = None
    _begin: int | None = None
    _pool: Any = None

    def __enter__(self) -> Self:
        import torch

        torch.cuda.synchronize(self.region.device)
        self._begin = self.region.trajectory_length()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        import torch

        torch.cuda.synchronize(self.region.device)
        assert self._begin is not None
        self.window = (self._begin, self.region.trajectory_length())

    def capture(
        self,
        name: str,
        fn: Callable[..., Any],
        inputs: Sequence[Any],
        *,
        warmup: int = 2,
    ) -> CapturedGraph:
        """Warm `fn` up (region suspended), capture one call, audit and describe the graph.

        Raises NonPersistableGraph (or a subclass) naming the cause when the graph cannot be
        restored faithfully; callers then fall back to capturing natively.
        """
        import torch

        if self._begin is None:
            raise KilnError("CaptureSession.capture must be called inside `with session:`")
        if any(g.name == name for g in self.graphs):
            raise KilnError(f"a graph named {name!r} was already captured in this session")
        dev = self.region.device
        specs_in = [TensorSpec.of(t, f"input {i} of {name!r}") for i, t in enumerate(inputs)]
        for i, s in enumerate(specs_in):
            if not self.region.contains(s.address):
                raise NonPersistableGraph(
                    f"input {i} of {name!r} lies outside the kiln region: allocate it while the "
                    "region is open"
                )

        # Warmup allocations bypass the region: LOAD skips warmup, and anything the graph
        # would read from them is caught by the pointer audit.
        if warmup:
            with self.region.suspended():
                warm_up(fn, inputs, warmup, dev)

        before = self.region.trajectory_length()
        g = torch.cuda.CUDAGraph(keep_graph=True)
        library_memory.capture_window(True)
        try:
            with torch.cuda.graph(g, pool=self._pool):
                out = fn(*inputs)
        finally:
            library_memory.capture_window(False)
        self._pool = g.pool()
        after = self.region.trajectory_length()
        outputs = _flatten(out, name)
        specs_out = [TensorSpec.of(t, f"output {i} of {name!r}") for i, t in enumerate(outputs)]

        desc = native().walk_graph(g.raw_cuda_graph(), dev)
        check_graph_rng(g, name, dev)
        captured = CapturedGraph(
            name, g, desc, list(inputs), outputs, specs_in, specs_out, (before, after)
        )
        self.graphs.append(captured)
        return captured
