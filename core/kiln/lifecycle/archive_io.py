"""Where archives and reports live in an archive directory, and the JSON sections kiln owns.

Layout of an archive directory (rank 0 at the top, so a single-GPU archive is one file)::

    <dir>/graphs.kiln              rank 0's archive
    <dir>/startup-report.json      rank 0's last startup report
    <dir>/rank<N>/graphs.kiln      rank N's archive (N > 0), likewise its report

The lifecycle driver owns two sections of every archive: ``fingerprint`` (flat JSON, the
fields compared at LOAD) and ``lifecycle`` (the decisions LOAD must repeat: KV capacity,
warmup actions, graph keys). All other sections come from the native runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeAlias

import msgspec

from kiln.archive import ArchiveReader, dump_json, load_json, write_archive
from kiln.errors import ArchiveCorrupt
from kiln.schema import I64, Name, SchemaViolation, Text, validated

ARCHIVE_FILE = "graphs.kiln"
REPORT_FILE = "startup-report.json"
FINGERPRINT_SECTION = "fingerprint"
LIFECYCLE_SECTION = "lifecycle"


def rank_dir(archive_dir: Path, rank: int = 0) -> Path:
    return archive_dir if rank == 0 else archive_dir / f"rank{rank}"


def archive_file(archive_dir: Path, rank: int = 0) -> Path:
    return rank_dir(archive_dir, rank) / ARCHIVE_FILE


def report_file(archive_dir: Path, rank: int = 0) -> Path:
    return rank_dir(archive_dir, rank) / REPORT_FILE


def resolve_archive(path: Path) -> Path:
    """Accept either an archive directory or the archive file itself (CLI arguments): a
    directory means its ``graphs.kiln``, anything else is taken as the archive file."""
    if path.is_dir():
        return path / ARCHIVE_FILE
    if os.path.lexists(path) or path.suffix == ".kiln":
        return path  # a file, or something else kiln will refuse by name (a FIFO, a device)
    return path / ARCHIVE_FILE


def open_archive(path: Path) -> ArchiveReader:
    # Section checksums are verified per section when read (read_json below, the runtime
    # for its own sections): hashing a multi-GB archive up front would cost the restore
    # most of its time budget.
    return ArchiveReader(path, verify=False)


def read_json(reader: ArchiveReader, name: str) -> dict[str, Any]:
    if name not in reader:
        raise ArchiveCorrupt(f"archive {reader.path}: missing section {name!r}")
    reader.verify_section(name)
    return load_json(reader.section(name), name)


#: The fingerprint section's schema: a flat object of at most 4096 fields, each a JSON
#: scalar (strings at most 64 KiB, integers within 64 bits).
FingerprintDoc: TypeAlias = Annotated[
    dict[Name, Text | I64 | float | bool | None], msgspec.Meta(max_length=4096)
]


def checked_fingerprint(raw: object) -> dict[str, Any]:
    """``raw`` (a decoded fingerprint section) if it follows :data:`FingerprintDoc`."""
    try:
        return dict(validated(raw, FingerprintDoc))  # type: ignore[arg-type]
    except SchemaViolation as err:
        where = f"section {FINGERPRINT_SECTION!r}"
        if isinstance(raw, dict):  # msgspec names no key of a dict: find the field
            for key, value in raw.items():
                try:
                    validated({key: value}, FingerprintDoc)
                except SchemaViolation as field_err:
                    raise ArchiveCorrupt(f"{where}: field {key[:64]!r}: {field_err}") from None
        raise ArchiveCorrupt(f"{where}: {err}") from None


def read_fingerprint(path: Path) -> dict[str, Any]:
    with open_archive(path) as reader:
        return checked_fingerprint(read_json(reader, FINGERPRINT_SECTION))


def encode_json(obj: Mapping[str, Any]) -> bytes:
    return dump_json(obj)


def write(path: Path, sections: Mapping[str, bytes | memoryview]) -> None:
    """Write the archive atomically (temporary file, fsync, rename; see write_archive)."""
    write_archive(path, sections)
