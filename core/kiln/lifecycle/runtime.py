"""What the lifecycle driver needs from kiln's native runtime, as a typed protocol.

The driver does the bookkeeping (order, timing, fingerprint, policy, archive commit, lock);
the runtime does the device work (region, binaries, graphs). Keeping the boundary this
narrow lets the whole lifecycle be tested on a CPU with a fake runtime, and keeps the
runtime free of policy.

Every method may raise :class:`~kiln.errors.KilnError` subclasses that name their cause;
the driver applies the policy to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from kiln.config import Config
from kiln.errors import NativeUnavailable
from kiln.lifecycle.types import FingerprintValue, RestoreProgress, RunMode


class SectionSource(Protocol):
    """Read access to an open archive (a :class:`kiln.archive.ArchiveReader`)."""

    def section(self, name: str) -> memoryview: ...

    def verify_section(self, name: str) -> None: ...

    def verify(self) -> None:
        """Verify every section's checksum (hashed on several threads)."""
        ...


class RestoredGraphLike(Protocol):
    """What LOAD hands an adapter for one graph (kiln.graphs.restored.RestoredGraph is one): replay
    it, read its outputs and write its inputs, tensors aliasing the re-created window."""

    name: str
    inputs: list[Any]
    outputs: list[Any]

    def replay(self, stream: Any = None) -> None:
        """Launch the graph on `stream` (a torch.cuda.Stream or raw handle; default the
        current stream)."""
        ...


class Runtime(Protocol):
    def fingerprint(self, device: int, *, slot: int = 0) -> Mapping[str, FingerprintValue]:
        """Fields of the device and the software below the engine (the region's base among
        them: ``slot`` is the rank's region slot, :func:`kiln.region.rank_slot`).

        At least ``gpu_name``, ``compute_capability``, ``driver_version``, ``cuda_runtime``,
        ``torch_version``. Must not allocate device memory (it runs before the region exists).
        """
        ...

    def bind(
        self, device: int, mode: RunMode, archive: SectionSource | None, *, slot: int = 0
    ) -> None:
        """Reserve and bind the deterministic region (at ``slot``'s base on ``device``); at
        LOAD also load archived binaries.

        ``archive`` is open at LOAD (the runtime verifies each section it reads, then uses
        it) and ``None`` at SAVE, where the runtime starts recording.
        """
        ...

    def suspended(self) -> AbstractContextManager[None]:
        """Allocations inside the block bypass the region (and its trajectory)."""
        ...

    def begin_graph(self, key: str) -> None:
        """SAVE: the engine is about to capture graph ``key``; start recording it."""
        ...

    def end_graph(self, key: str, result: object) -> None:
        """SAVE: the engine's capture of ``key`` returned ``result``; record the graph it
        captured (walked and audited) and, as its outputs, the CUDA tensors ``result`` holds
        (a tensor, or a tuple or list of them)."""
        ...

    def abort_graph(self, key: str) -> None:
        """SAVE: the engine's capture of ``key`` raised; drop what was recorded for it."""
        ...

    def restore(self, key: str) -> RestoredGraphLike:
        """LOAD: rebuild graph ``key`` from the archive and return it replayable."""
        ...

    def restore_progress(self) -> RestoreProgress:
        """LOAD: how many restored graphs have their own executable now, without waiting.

        Never raises a background build's error (:meth:`finish_restores` does). Before the
        first :meth:`restore`, and at SAVE, both counts are 0.
        """
        ...

    def finish_restores(self) -> RestoreProgress:
        """LOAD: block until every restored graph has its own executable (built on background
        threads since the first :meth:`restore`), then say so.

        Raises the first background build error (a :class:`~kiln.errors.KilnError` naming
        the graph and the cause). Returns at once with zero counts when nothing was restored.
        """
        ...

    def collectives_bootstrapped(self) -> None:
        """NVSHMEM is up: initialise the archive's NVSHMEM binaries (LOAD)."""
        ...

    def close_region(self) -> None:
        """Stop placing allocations in the region (LOAD checked the allocations before the
        capture window when it re-created the window)."""
        ...

    def take_hook_error(self) -> str:
        """The first error a driver-call wrapper met since the last call ("" when none). A
        wrapper can only answer a CUresult, so a region that ran out of room reaches the
        engine as an out-of-memory error; the driver turns it back into kiln's cause."""
        ...

    def sections(self) -> Mapping[str, bytes | memoryview]:
        """SAVE: the archive sections the runtime recorded (binaries, graphs, trajectory)."""
        ...

    def bytes_mapped(self) -> int:
        """Bytes of device memory mapped in the region so far."""
        ...

    def abandon(self) -> None:
        """kiln fell back: stop recording and restoring; the engine continues natively."""
        ...


def default_runtime(config: Config) -> Runtime:
    """The native runtime, imported only when a process binds a GPU under kiln."""
    try:
        from kiln import api
    except ImportError as err:
        raise NativeUnavailable(f"kiln.api cannot be imported: {err}") from err
    factory = getattr(api, "lifecycle_runtime", None)
    if factory is None:
        raise NativeUnavailable("kiln.api provides no lifecycle_runtime(config)")
    runtime: Runtime = factory(config)
    return runtime
