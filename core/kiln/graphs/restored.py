"""Graphs restored from an archive, and the resources that keep them valid."""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kiln.errors import KilnError, UnmappedRangeError
from kiln.graphs.tensors import TensorSpec
from kiln.native import native

log = logging.getLogger("kiln.graphs.restored")


class RestoredGraph:
    """One restored graph: replay it on a stream; read and write its tensors.

    It replays through its topology group's template until its own executable has been
    built in the background, then through that (the switch is atomic and invisible)."""

    def __init__(
        self,
        name: str,
        index: int,
        owner: RestoredSet,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
    ) -> None:
        self.name = name
        self.index = index
        self._owner = owner
        n = native()
        for what, specs in (("input", inputs), ("output", outputs)):
            for i, s in enumerate(specs):
                if s.nbytes and not n.region_is_backed(owner.device, s.address, s.nbytes):
                    raise UnmappedRangeError(
                        f"{what} {i} of graph {name!r} ([0x{s.address:x}, +{s.nbytes})) is not "
                        "backed in this process"
                    )
        # The tensors keep the window memory mapped, not the set: the reference a tensor
        # holds is invisible to the garbage collector, and one back to the set (which
        # holds the tensors) would keep it and its native objects alive for good.
        self.inputs = [s.tensor(owner.device, owner.memory) for s in inputs]
        self.outputs = [s.tensor(owner.device, owner.memory) for s in outputs]

    @property
    def node_count(self) -> int:
        return int(self._owner.graph_set.node_count(self.index))

    @property
    def group(self) -> int:
        """The topology group whose template this graph can replay through."""
        return int(self._owner.graph_set.group_of(self.index))

    @property
    def has_own_executable(self) -> bool:
        return bool(self._owner.graph_set.has_dedicated(self.index))

    def replay(self, stream: Any = None) -> None:
        """Launch on `stream` (a torch.cuda.Stream or raw handle), default the current one."""
        self._owner.graph_set.launch(self.index, _stream_handle(stream, self._owner.device))

    def replay_through_template(self, stream: Any = None) -> None:
        """Launch through the group template even when an own executable exists (for
        measuring what switching a template between members costs)."""
        self._owner.graph_set.launch_template(
            self.index, _stream_handle(stream, self._owner.device)
        )

    def finish(self) -> None:
        """Block until this graph's own executable is built; raises a background error."""
        self._owner.graph_set.wait(self.index, True)


def _stream_handle(stream: Any, device: int) -> int:
    if stream is None:
        return current_stream_handle(device)
    return int(stream.cuda_stream) if hasattr(stream, "cuda_stream") else int(stream)


def current_stream_handle(device: int) -> int:
    """The raw handle of `device`'s current stream. Read through torch's C getter where it
    has one: `torch.cuda.current_stream` builds a Stream object per call, and a vLLM prefill
    step replays ~37 PIECEWISE graphs (a cProfile of the first steps after LOAD put it at a
    third of kiln's replay time)."""
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return int(raw(device))
    return int(torch.cuda.current_stream(device).cuda_stream)


class WindowMemory:
    """The capture window's allocations that LOAD re-created at their recorded addresses.

    The restored set and every tensor it hands out reference this object; the memory is
    released when the last reference goes, after the device has finished all work (a
    replay in flight or a tensor still in use must not find its memory unmapped). Nothing
    is released while the interpreter shuts down: the process's exit frees it."""

    def __init__(self, device: int) -> None:
        self.device = device
        self._addresses: list[int] = []
        self._finalizer = weakref.finalize(
            self, _release, native(), device, self._addresses, sys.is_finalizing
        )
        self._finalizer.atexit = False

    def add(self, address: int) -> None:
        self._addresses.append(address)

    @property
    def addresses(self) -> tuple[int, ...]:
        return tuple(self._addresses)

    @property
    def released(self) -> bool:
        return not self._finalizer.alive


_release_lock = threading.Lock()


def _release(n: Any, device: int, addresses: list[int], finalizing: Callable[[], bool]) -> None:
    """Synchronise the device, then unmap `addresses` (WindowMemory's finalizer; holds no
    reference to the object it finalizes)."""
    if not addresses or finalizing():
        return
    with _release_lock:
        try:
            n.synchronize_device(device)
        except Exception as e:  # noqa: BLE001 (a finalizer must not raise; unmapping now could fault)
            log.warning("restored window memory not released: %s", e)
            return
        for addr in addresses:
            try:
                n.region_release(device, addr)
            except Exception as e:  # noqa: BLE001
                log.warning("releasing restored window memory at 0x%x failed: %s", addr, e)
        addresses.clear()


class RestoredSet(Mapping[str, RestoredGraph]):
    """Every graph of one archive. Tensors handed out keep its window memory alive
    (WindowMemory), also past close()."""

    def __init__(self, reader: Any, device: int) -> None:
        self.device = device
        self.timings: dict[str, float] = {}
        self.kernels: Any = None
        # The archive's sections still being hashed (kiln.archive.section_verification), or None.
        self.verification: Any = None
        self._graph_set: Any = None
        self._building = False
        self._reader = reader
        self._graphs: dict[str, RestoredGraph] = {}
        self._memory: WindowMemory | None = WindowMemory(device)
        self._waited: dict[str, float] = {}
        # time.monotonic() when the restore began (set by kiln.load): native categories are
        # then also reported as `<category>_start` / `_end` seconds after it.
        self.started_at: float | None = None

    @property
    def graph_set(self) -> Any:
        if self._graph_set is None:
            raise KilnError("this restored set was closed")
        return self._graph_set

    @graph_set.setter
    def graph_set(self, value: Any) -> None:
        self._graph_set = value

    @property
    def started(self) -> bool:
        """Whether graphs are being (or have been) built (start_builds was called)."""
        return self._building

    def start_builds(self, dedicated: bool) -> None:
        """Start the decoded graph set's background builds: templates, then, with
        `dedicated`, each graph's own executable."""
        self.graph_set.start(dedicated)
        self._building = True

    @property
    def group_count(self) -> int:
        return int(self.graph_set.group_count)

    @property
    def template_count(self) -> int:
        """Templates instantiated to make every graph replayable (one per family of groups)."""
        return int(self.graph_set.family_count)

    @property
    def memory(self) -> WindowMemory:
        if self._memory is None:
            raise KilnError("this restored set was closed")
        return self._memory

    def own_allocation(self, address: int) -> None:
        self.memory.add(address)

    def add(self, graph: RestoredGraph) -> None:
        self._graphs[graph.name] = graph

    def wait_replayable(self) -> None:
        """Block until every graph can replay (its group's template is built and uploaded)
        and every section of the archive was verified; raises the first background error.
        The own executables start building then."""
        t0 = time.perf_counter()
        self.graph_set.wait_all(False)
        t1 = time.perf_counter()
        self.graph_set.start_dedicated()
        self.wait_verified()  # sections no template read (e.g. the app's own binaries)
        self._waited = {"templates_wait": t1 - t0, "verify_wait": time.perf_counter() - t1}

    def wait_verified(self) -> None:
        """Block until every section of the archive was hashed (when that runs in the
        background); raises ArchiveCorrupt naming the first mismatch."""
        if self.verification is not None:
            self.verification.wait()

    def finish(self) -> None:
        """Block until every graph has its own executable (built in the background, so
        replays stop switching templates); raises the first background error."""
        self.graph_set.wait_all(True)

    def native_timings(self) -> dict[str, float]:
        """Where restore time went, measured on the native threads, flat for reports:
        `<category>_sum` (seconds summed over threads), `<category>_wall` (seconds during
        which any thread was in it) and `<category>_count`, categories with "." made "_".

        From the kernel table: binaries_load (each image), binaries_all (loading start to
        the last image), kernels_resolve (function lookups and attributes). From the graph
        set: decode, updates (per-member differences from the template), and for templates_*
        (and dedicated_*): task (whole build), kernels (waiting for or resolving the
        template's kernels), check (operands backed), build (CUgraph from the description:
        node adds, edges), instantiate, upload (each template uploads on its own stream
        right after instantiation), member_kernels (kernels the members switch to);
        templates_all runs from the start of the builds to the last template. Measured on
        the calling thread by wait_replayable: templates_wait (for the builds) and
        verify_wait. With `started_at`, also `<category>_start` and `<category>_end`: seconds
        from the start of the restore to the category's first begin and last end (which
        stage waited for which on the critical path)."""
        out: dict[str, float] = dict(self._waited)
        sources = [self.kernels, self._graph_set]
        for source in sources:
            if source is None:
                continue
            for category, t in source.timings().items():
                key = category.replace(".", "_")
                out[f"{key}_sum"] = float(t["sum"])
                out[f"{key}_wall"] = float(t["wall"])
                out[f"{key}_count"] = float(t["count"])
                if self.started_at is not None:
                    out[f"{key}_start"] = float(t["first"]) - self.started_at
                    out[f"{key}_end"] = float(t["last"]) - self.started_at
        return out

    def __getitem__(self, name: str) -> RestoredGraph:
        return self._graphs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._graphs)

    def __len__(self) -> int:
        return len(self._graphs)

    def close(self) -> None:
        """Stop background builds and destroy the executables, then the kernels they use,
        then drop this set's reference to the window memory: it is released (after the
        device finished all work) once no tensor handed out uses it any more."""
        self._graphs.clear()
        self._graph_set = None
        self._building = False
        self.kernels = None
        self.verification = None  # after its consumers: it stops hashing and fails what is left
        self._memory = None  # the memory is released here unless a tensor still uses it
        self._reader.close()
