"""This process's archive file: checked at LOAD, locked and committed at SAVE.

At LOAD the reader stays open until ready (the runtime maps binaries from it); at SAVE the
lock is held from device-bound to commit, so that a second SAVE of the same archive fails at
its start instead of overwriting this one's result at its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kiln.archive import ArchiveReader, archive_lock
from kiln.errors import ArchiveError
from kiln.lifecycle import archive_io, fingerprint, job
from kiln.lifecycle.errors import InvalidHookResult
from kiln.lifecycle.record import LifecycleRecord
from kiln.lifecycle.types import FingerprintValue

_OWNED = (archive_io.FINGERPRINT_SECTION, archive_io.LIFECYCLE_SECTION, job.SECTION)


class ArchiveSession:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader: ArchiveReader | None = None
        self._held = ExitStack()

    def open_checked(self, current: Mapping[str, FingerprintValue]) -> dict[str, Any]:
        """LOAD: open the archive, check its fingerprint, return its lifecycle record."""
        self.reader = archive_io.open_archive(self.path)
        archived = archive_io.checked_fingerprint(
            archive_io.read_json(self.reader, archive_io.FINGERPRINT_SECTION)
        )
        fingerprint.check(archived, current)
        record = archive_io.read_json(self.reader, archive_io.LIFECYCLE_SECTION)
        return LifecycleRecord.from_json(record).as_json()

    def lock(self) -> None:
        """SAVE: take the archive's lock (ArchiveLocked when another SAVE holds it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._held.enter_context(archive_lock(self.path))

    def commit(
        self,
        runtime_sections: Mapping[str, bytes | memoryview],
        fields: Mapping[str, FingerprintValue],
        record: LifecycleRecord,
        manifest: job.JobManifest,
    ) -> None:
        """SAVE: write the archive atomically, with the driver's own sections (fingerprint,
        lifecycle record, job manifest)."""
        sections = dict(runtime_sections)
        for owned in _OWNED:
            if owned in sections:
                raise InvalidHookResult("Runtime.sections", f"section {owned!r} is the driver's")
        sections[archive_io.FINGERPRINT_SECTION] = archive_io.encode_json(dict(fields))
        sections[archive_io.LIFECYCLE_SECTION] = archive_io.encode_json(record.as_json())
        sections[job.SECTION] = archive_io.encode_json(manifest.as_json())
        try:
            archive_io.write(self.path, sections)
        except OSError as err:
            raise ArchiveError(f"cannot write archive {self.path}: {err}") from err

    def close_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def release(self) -> None:
        self.close_reader()
        self._held.close()
