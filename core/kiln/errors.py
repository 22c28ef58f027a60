"""Every error kiln raises. Each names its cause; none is printed and ignored.

The hierarchy lets callers (adapters applying the ``strict``/``fallback`` policy) catch
``KilnError`` and report ``str(err)`` as the reason, while tests match precise classes.
"""

from __future__ import annotations


class KilnError(Exception):
    """Base class of every kiln error."""


# --- configuration -----------------------------------------------------------------------


class ConfigError(KilnError):
    """A configuration value (config file, ``KILN_*`` variable, command-line flag) is
    invalid; names the key and the value's source."""

    def __init__(self, key: str | None, source: str, message: str) -> None:
        self.key = key
        self.source = source
        where = f"config key {key!r} (from {source})" if key else source
        super().__init__(f"{where}: {message}")


# --- environment -------------------------------------------------------------------------


class InterposerNotLoaded(KilnError):
    """libkiln_preload.so is not loaded into this process (start it under ``kiln run``)."""


class DriverError(KilnError):
    """A CUDA driver call made by kiln failed."""


class NativeUnavailable(KilnError):
    """The compiled extension ``kiln._native`` could not be imported."""


# --- deterministic memory ----------------------------------------------------------------


class RegionError(KilnError):
    """The deterministic memory region could not be set up or used."""


class RegionBaseNotHonoured(RegionError):
    """The driver placed the region elsewhere than the requested fixed base."""


class AllocationDriftError(RegionError):
    """The allocation trajectory differs from the one recorded at SAVE."""


class UnsupportedAllocator(RegionError):
    """An allocation path kiln cannot make deterministic is in use."""


# --- graphs and kernels ------------------------------------------------------------------


class NonPersistableGraph(KilnError):
    """A captured graph contains something kiln cannot persist faithfully."""


class ExternalPointerError(NonPersistableGraph):
    """A kernel argument points into device memory outside the region."""


class RngStateError(NonPersistableGraph):
    """The graph consumes PyTorch's CUDA RNG; a restore would repeat random numbers."""


class UnknownKernelError(NonPersistableGraph):
    """A kernel handle in the graph does not belong to any binary kiln recorded."""


class LibraryStateInCapture(NonPersistableGraph):
    """A communication library reserved or mapped memory while a graph was being captured:
    state LOAD cannot re-create before the graph replays. Names the library and the setting
    that avoids it."""


class LibraryPointerError(NonPersistableGraph):
    """A kernel argument points into a communication library's slot of the region where
    no mapping kiln can restore lies: memory the library reserved but never mapped, memory
    another process exported (peer), a multicast object or a handle kiln never saw made.
    Names the library, the graph and the node."""


class MulticastMemoryError(NonPersistableGraph):
    """A kernel argument points into memory a multicast object reaches (NVLink SHARP):
    a multicast mapping or memory bound to one. Names the setting that turns multicast
    off."""


class RestoreError(KilnError):
    """Rebuilding a graph from an archive failed (module load, kernel lookup, instantiate)."""


class UnmappedRangeError(RestoreError):
    """A region pointer recorded at SAVE is not backed by a live allocation at LOAD."""


class CommStateMismatch(RestoreError):
    """A communication library's memory at LOAD (its slot's requests or its mappings:
    class, slot, offset, size) differs from SAVE's; names the library and the first
    difference."""


# --- archives ----------------------------------------------------------------------------


class ArchiveError(KilnError):
    """An archive cannot be used."""


class ArchiveCorrupt(ArchiveError):
    """An archive's bytes are damaged (bad magic, checksum, bounds, structure)."""


class NotAnArchive(ArchiveCorrupt):
    """The file does not start with the archive magic: it is not a kiln archive at all."""


class ArchiveTruncated(ArchiveCorrupt):
    """An archive is shorter than its own header says."""


class ArchiveVersionError(ArchiveError):
    """An archive was written in a format version this kiln cannot read."""


class FingerprintMismatch(ArchiveError):
    """The archive was made for another environment; names the first differing field."""

    def __init__(self, field: str, expected: object, actual: object) -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"fingerprint mismatch in field {field!r}: archive has {expected!r}, "
            f"this process has {actual!r}"
        )


class ArchiveLocked(ArchiveError):
    """Another process is saving the same archive."""


# --- ranks of one job ------------------------------------------------------------------------


class JobError(ArchiveError):
    """The ranks' archives do not form one SAVE of this job (kiln.lifecycle.job)."""


class LayoutMismatch(JobError):
    """The engine's parallel layout (world size, TP/PP/DP/EP) differs from SAVE's."""

    def __init__(self, field: str, saved: object, current: object) -> None:
        self.field = field
        self.saved = saved
        self.current = current
        super().__init__(
            f"parallel layout differs from SAVE's in {field!r}: archive has {saved!r}, this "
            f"start has {current!r}; every rank's graphs were captured for SAVE's layout"
        )


class TopologyMismatch(JobError):
    """The node's GPUs or interconnect differ from SAVE's (communication libraries then
    allocate and connect differently)."""

    def __init__(self, field: str, saved: object, current: object) -> None:
        self.field = field
        self.saved = saved
        self.current = current
        super().__init__(
            f"topology differs from SAVE's in {field!r}: archive has {saved!r}, this node "
            f"has {current!r}"
        )


class RankArchiveMissing(JobError):
    """A rank of the job has no archive; never substituted by another rank's."""

    def __init__(self, rank: int, path: object, world_size: int) -> None:
        self.rank = rank
        self.path = path
        super().__init__(
            f"rank {rank} has no archive ({path}): the {world_size} ranks of this start need "
            "every rank's archive of one SAVE"
        )


class MixedSaves(JobError):
    """Two ranks' archives come from different SAVEs."""

    def __init__(self, rank: int, other: object, own_rank: int, own: object) -> None:
        self.rank = rank
        super().__init__(
            f"rank {rank}'s archive comes from another SAVE (session {other}) than rank "
            f"{own_rank}'s (session {own}): every rank must restore from one SAVE"
        )


class RankAgreementError(KilnError):
    """The ranks could not all restore: restore is all ranks or none (kiln.lifecycle.agreement)."""


class PeerRankFailed(RankAgreementError):
    """Another rank of the engine cannot restore, so this one must not either."""

    def __init__(self, rank: int, stage: str, cause: str) -> None:
        self.rank = rank
        self.stage = stage
        self.cause = cause
        super().__init__(
            f"rank {rank} cannot restore ({stage}: {cause}); restoring is all ranks or none"
        )


class AgreementFailed(RankAgreementError):
    """The collective that agrees on restoring raised, timed out or returned garbage."""


# --- input files ------------------------------------------------------------------------


class InputFileError(KilnError):
    """A file kiln reads (report, config, archive) cannot be read safely: missing, not a
    regular file (a FIFO or a device would block or never end), or larger than allowed."""


class InputFileMissing(InputFileError):
    """The file does not exist."""
