"""The job manifest: what ties the rank archives of one SAVE together.

Every rank's archive holds a ``job`` section: the SAVE session (the `kiln run` launch,
KILN_JOB), the rank it belongs to, the engine's parallel layout (world size and the
TP/PP/DP/EP sizes the engine reports) and the node's topology (kiln.lifecycle.topology). Each
rank writes its own, atomically with its archive, so no rank has to wait for another at SAVE.

LOAD checks it before anything allocates (:func:`check`): this start's layout and topology
against SAVE's, then, with several ranks, that every other rank's archive exists and comes
from the same SAVE with the same layout. Each deviation is a named :class:`~kiln.errors.
JobError`; the driver applies the policy, and the ranks agree on the outcome
(kiln.lifecycle.agreement). A rank's archive is never substituted by another rank's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from kiln.errors import (
    ArchiveCorrupt,
    JobError,
    LayoutMismatch,
    MixedSaves,
    RankArchiveMissing,
    TopologyMismatch,
)
from kiln.lifecycle import archive_io
from kiln.lifecycle.types import FingerprintValue
from kiln.schema import I64, SchemaViolation, validated

SECTION = "job"
VERSION = 1
MAX_RANKS = 1 << 16

_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")]
_Size = Annotated[int, msgspec.Meta(ge=0, le=MAX_RANKS)]
_Fact = Annotated[str, msgspec.Meta(max_length=4096)] | I64


class JobDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The section's schema: every value bounded, every key a short lowercase name."""

    version: int
    session: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None
    rank: Annotated[int, msgspec.Meta(ge=0, lt=MAX_RANKS)]
    world_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_RANKS)]
    layout: Annotated[dict[_Key, _Size], msgspec.Meta(max_length=32)]
    topology: Annotated[dict[_Key, _Fact], msgspec.Meta(max_length=32)]


@dataclass(frozen=True)
class JobManifest:
    session: str | None
    rank: int
    world_size: int
    layout: dict[str, int] = field(default_factory=dict)
    topology: dict[str, FingerprintValue] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "session": self.session,
            "rank": self.rank,
            "world_size": self.world_size,
            "layout": dict(self.layout),
            "topology": dict(self.topology),
        }

    @classmethod
    def from_json(cls, raw: object, where: str) -> JobManifest:
        """Validate a decoded section; a defect is ArchiveCorrupt naming ``where``."""
        try:
            doc = validated(raw, JobDoc)
        except SchemaViolation as err:
            raise ArchiveCorrupt(f"{where}: section {SECTION!r}: {err}") from None
        if doc.version != VERSION:
            raise ArchiveCorrupt(f"{where}: section {SECTION!r} has version {doc.version!r}")
        if doc.rank >= doc.world_size:
            raise ArchiveCorrupt(
                f"{where}: section {SECTION!r} says rank {doc.rank} of {doc.world_size}"
            )
        return cls(doc.session, doc.rank, doc.world_size, dict(doc.layout), dict(doc.topology))


def layout_of(world_size: int, layout: Mapping[str, int] | None) -> dict[str, int]:
    """The layout an adapter reports, checked (ValueError names the bad entry)."""
    out: dict[str, int] = {}
    for key, value in (layout or {}).items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise ValueError(f"layout keys are short names, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RANKS:
            raise ValueError(f"layout {key!r} is {value!r}, not a size in [0, {MAX_RANKS}]")
        out[key] = value
    if out.get("world_size", world_size) != world_size:
        raise ValueError(f"layout says world_size {out['world_size']}, the rank says {world_size}")
    out.pop("world_size", None)
    return out


def read(archive_dir: Path, rank: int) -> JobManifest:
    """Rank ``rank``'s manifest (RankArchiveMissing when it has no archive)."""
    path = archive_io.archive_file(archive_dir, rank)
    with archive_io.open_archive(path) as reader:
        if SECTION not in reader:
            raise JobError(
                f"rank {rank}'s archive {path} has no job manifest (saved by an older kiln): "
                "save it again"
            )
        manifest = JobManifest.from_json(archive_io.read_json(reader, SECTION), str(path))
    if manifest.rank != rank:
        raise ArchiveCorrupt(
            f"{path} sits in rank {rank}'s place but was saved by rank {manifest.rank}"
        )
    return manifest


def check(archive_dir: Path, current: JobManifest) -> JobManifest:
    """Check this rank's archive against this start and, with several ranks, every other
    rank's archive against this rank's. Returns SAVE's manifest."""
    saved = read(archive_dir, current.rank)
    check_layout(saved, current)
    check_topology(saved, current)
    if current.world_size > 1:
        check_ranks(archive_dir, saved)
    return saved


def check_layout(saved: JobManifest, current: JobManifest) -> None:
    if saved.world_size != current.world_size:
        raise LayoutMismatch("world_size", saved.world_size, current.world_size)
    for key in sorted(set(saved.layout) | set(current.layout)):
        if saved.layout.get(key) != current.layout.get(key):
            raise LayoutMismatch(key, saved.layout.get(key), current.layout.get(key))


def check_topology(saved: JobManifest, current: JobManifest) -> None:
    for key in sorted(set(saved.topology) | set(current.topology)):
        if saved.topology.get(key) != current.topology.get(key):
            raise TopologyMismatch(key, saved.topology.get(key), current.topology.get(key))


def check_ranks(archive_dir: Path, saved: JobManifest) -> None:
    """Every other rank's archive exists, comes from ``saved``'s SAVE and has its layout."""
    if saved.session is None:
        raise JobError(
            f"rank {saved.rank}'s archive records no SAVE session: kiln cannot tell whether "
            f"the {saved.world_size} ranks' archives belong together (save them again under "
            "`kiln run`)"
        )
    for other in range(saved.world_size):
        if other == saved.rank:
            continue
        path = archive_io.archive_file(archive_dir, other)
        if not path.is_file():
            raise RankArchiveMissing(other, path, saved.world_size)
        theirs = read(archive_dir, other)
        if theirs.session != saved.session:
            raise MixedSaves(other, theirs.session, saved.rank, saved.session)
        try:
            check_layout(saved, theirs)
        except LayoutMismatch as err:
            raise JobError(
                f"rank {other}'s archive is of the same SAVE but records another layout "
                f"({err.field}: {err.current!r}, rank {saved.rank}'s: {err.saved!r})"
            ) from None
