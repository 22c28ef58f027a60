"""The kiln archive: container format, JSON sections, fingerprints, the SAVE lock.

Everything here is pure Python and CPU-only. See ``docs/archive-format.md``.
"""

from __future__ import annotations

from kiln.archive.fingerprint import (
    FIELD_ORDER,
    compare_fingerprints,
    diff_fingerprints,
    values_equal,
)
from kiln.archive.format import (
    FORMAT_VERSION,
    MAGIC,
    MAX_NAME_BYTES,
    MAX_SECTIONS,
    SECTION_ALIGNMENT,
    ArchiveReader,
    write_archive,
)
from kiln.archive.jsonsec import MAX_DEPTH, dump_json, load_json
from kiln.archive.lock import archive_lock, lock_path

__all__ = [
    "FIELD_ORDER",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_DEPTH",
    "MAX_NAME_BYTES",
    "MAX_SECTIONS",
    "SECTION_ALIGNMENT",
    "ArchiveReader",
    "archive_lock",
    "compare_fingerprints",
    "diff_fingerprints",
    "dump_json",
    "load_json",
    "lock_path",
    "values_equal",
    "write_archive",
]
