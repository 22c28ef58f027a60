"""Graphs restored from an archive, and the resources that keep them valid."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kiln.errors import KilnError, UnmappedRangeError
from kiln.native import native
from kiln.tensors import TensorSpec


class RestoredGraph:
    """One restored graph: replay it on a stream; read and write its tensors."""

    def __init__(
        self,
        name: str,
        built: Any,
        owner: RestoredSet,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
    ) -> None:
        self.name = name
        self._built = built
        self._owner = owner
        n = native()
        for what, specs in (("input", inputs), ("output", outputs)):
            for i, s in enumerate(specs):
                if s.nbytes and not n.region_is_backed(owner.device, s.address, s.nbytes):
                    raise UnmappedRangeError(
                        f"{what} {i} of graph {name!r} ([0x{s.address:x}, +{s.nbytes})) is not "
                        "backed in this process"
                    )
        self.inputs = [s.tensor(owner.device, owner) for s in inputs]
        self.outputs = [s.tensor(owner.device, owner) for s in outputs]

    @property
    def node_count(self) -> int:
        return int(self._built.node_count)

    def replay(self, stream: Any = None) -> None:
        """Launch on `stream` (a torch.cuda.Stream or raw handle), default the current one."""
        import torch

        if self._built is None:
            raise KilnError(f"graph {self.name!r} was closed")
        if stream is None:
            stream = torch.cuda.current_stream(self._owner.device)
        handle = stream.cuda_stream if hasattr(stream, "cuda_stream") else int(stream)
        self._built.launch(handle)


class RestoredSet(Mapping[str, RestoredGraph]):
    """Every graph of one archive. Tensors handed out keep it (and its memory) alive."""

    def __init__(self, reader: Any, device: int) -> None:
        self.device = device
        self.timings: dict[str, float] = {}
        self.kernels: Any = None
        self._reader = reader
        self._graphs: dict[str, RestoredGraph] = {}
        self._allocations: list[int] = []

    def own_allocation(self, address: int) -> None:
        self._allocations.append(address)

    def add(self, graph: RestoredGraph) -> None:
        self._graphs[graph.name] = graph

    def __getitem__(self, name: str) -> RestoredGraph:
        return self._graphs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._graphs)

    def __len__(self) -> int:
        return len(self._graphs)

    def close(self) -> None:
        """Destroy the executables, then the kernels they use, then the memory."""
        for g in self._graphs.values():
            g._built = None
        self._graphs.clear()
        self.kernels = None
        n = native()
        for addr in self._allocations:
            n.region_release(self.device, addr)
        self._allocations.clear()
        self._reader.close()
