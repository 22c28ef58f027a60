"""Reading a startup report back (``kiln report``, ``kiln verify --gpu``).

The report is a file next to the archive that anything able to write there may have
replaced: it is read as untrusted input. At most :data:`MAX_REPORT_BYTES` are read, from a
regular file only (never a FIFO or a device); the JSON is decoded strictly and checked
against :class:`ReportDoc` (types, ranges, sizes) before any field is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from kiln.archive import load_json
from kiln.errors import ArchiveCorrupt, InputFileError, InputFileMissing, KilnError
from kiln.input_files import read_bounded
from kiln.schema import Count, Name, SchemaViolation, Text, validated

MAX_REPORT_BYTES: Final = 1 << 20
Seconds: TypeAlias = (
    Annotated[float, msgspec.Meta(ge=0, le=1e9)] | Annotated[int, msgspec.Meta(ge=0)]
)
Outcome: TypeAlias = Annotated[str, msgspec.Meta(pattern="^(saved|restored|fallback|failed)$")]


class ReportUnreadable(KilnError):
    """The startup report is missing, not a regular file, too large or malformed."""

    def __init__(self, path: Path, why: str, *, missing: bool = False) -> None:
        self.missing = missing
        super().__init__(f"no startup report at {path}: {why}")


class ErrorDoc(msgspec.Struct, frozen=True):
    stage: Name
    type: Name
    message: Text


class ReportDoc(msgspec.Struct, frozen=True):
    """What :class:`kiln.lifecycle.report.StartupReport` writes. Only the outcome is
    required: reports of older kiln versions lack some fields."""

    outcome: Outcome
    engine: Name | None = None
    mode: Name | None = None
    rank: Count | None = None
    kiln_version: Name | None = None
    requested_mode: Name | None = None
    policy: Name | None = None
    load_builds: Name | None = None
    archive: Text | None = None
    world_size: Count | None = None
    pid: Count | None = None
    graphs_captured: Count = 0
    graphs_restored: Count = 0
    graphs_own_executable_at_ready: Count | None = None
    graphs_on_template_at_ready: Count | None = None
    bytes_mapped: Count = 0
    kv_capacity: dict[Name, Count] | None = None
    fallback_reason: Text | None = None
    error: ErrorDoc | None = None
    phases_s: Annotated[dict[Name, Seconds | None], msgspec.Meta(max_length=256)] = {}
    total_s: Seconds | None = None
    stages: Annotated[list[dict[Name, Any]], msgspec.Meta(max_length=4096)] = []
    notes: Annotated[list[Text], msgspec.Meta(max_length=4096)] = []
    caches: Annotated[dict[Name, Any], msgspec.Meta(max_length=64)] | None = None


def read_report(path: Path) -> tuple[dict[str, Any], ReportDoc]:
    """The report at ``path``: as decoded (``--json`` prints it) and as validated."""
    try:
        data = read_bounded(path, MAX_REPORT_BYTES, "startup report")
    except InputFileMissing:
        raise ReportUnreadable(
            path, "the engine has not reached a report yet", missing=True
        ) from None
    except InputFileError as err:
        raise ReportUnreadable(path, str(err)) from None
    try:
        raw = load_json(data, path.name, what="the report")
        return raw, validated(raw, ReportDoc)
    except (ArchiveCorrupt, SchemaViolation) as err:
        raise ReportUnreadable(path, str(err)) from None
