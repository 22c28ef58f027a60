"""The CUDA-RNG check every persisted graph passes: a graph that draws from PyTorch's CUDA
generator advances the generator's offset on each replay (torch's CUDAGraph.replay does
it before launching); a restored raw graph would not, and would repeat its random
numbers. One replay at SAVE tells: the offset moved, or it did not."""

from __future__ import annotations

from typing import Any

from kiln.errors import RngStateError


def check_graph_rng(graph: Any, name: str, device: int) -> None:
    """Replay `graph` (a torch.cuda.CUDAGraph) once and refuse it if PyTorch's CUDA
    generator on `device` advanced. The replay computes what a first replay would: the
    graph's own buffers are rewritten from its current inputs."""
    import torch

    gen = torch.cuda.default_generators[device]
    before = gen.get_offset()
    graph.replay()
    torch.cuda.synchronize(device)
    advanced = gen.get_offset() - before
    if advanced:
        raise RngStateError(
            f"graph {name!r} uses PyTorch's CUDA random number generator (its philox offset "
            f"advanced by {advanced} on replay); a restored graph would repeat the same random "
            "numbers, so kiln refuses to persist it"
        )


class TorchGraphWatch:
    """The torch.cuda.CUDAGraph objects whose capture ends while armed: engines capture
    through PyTorch themselves, and the lifecycle runtime checks each such graph for RNG use
    (check_graph_rng) without the engine handing it over. Installed once per process by
    wrapping the public CUDAGraph.capture_end; inert while disarmed."""

    def __init__(self) -> None:
        self._armed = False
        self._graphs: list[Any] = []

    def arm(self) -> None:
        _install(self)
        self._graphs = []
        self._armed = True

    def take(self) -> list[Any]:
        self._armed = False
        graphs, self._graphs = self._graphs, []
        return graphs

    def _ended(self, graph: Any) -> None:
        if self._armed:
            self._graphs.append(graph)


_watches: list[TorchGraphWatch] = []


def _install(watch: TorchGraphWatch) -> None:
    import torch

    if watch not in _watches:
        _watches.append(watch)
    cls = torch.cuda.CUDAGraph
    if getattr(cls.capture_end, "_kiln_watched", False):
        return
    original = cls.capture_end

    def capture_end(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        for w in _watches:
            w._ended(self)
        return result

    capture_end._kiln_watched = True  # type: ignore[attr-defined]
    cls.capture_end = capture_end  # type: ignore[method-assign]
