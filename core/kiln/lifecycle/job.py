"""The archives of one multi-rank SAVE belong together: each records the `kiln run` launch
that wrote it (KILN_JOB). A LOAD with several ranks checks, before anything allocates, that
every rank's archive exists and comes from the same SAVE as its own: ranks restored from
different SAVEs would disagree on every collective."""

from __future__ import annotations

from pathlib import Path

from kiln.errors import ArchiveError
from kiln.lifecycle import archive_io
from kiln.lifecycle.record import LifecycleRecord


def check_ranks(archive_dir: Path, rank: int, world_size: int, job: str | None) -> None:
    """Raises ArchiveError naming the first rank whose archive is missing or comes from
    another SAVE than this rank's (whose record says `job`)."""
    if world_size <= 1:
        return
    if job is None:
        raise ArchiveError(
            f"rank {rank}'s archive records no SAVE launch: kiln cannot tell whether the "
            f"{world_size} ranks' archives belong together (save them again)"
        )
    for other in range(world_size):
        if other == rank:
            continue
        path = archive_io.archive_file(archive_dir, other)
        if not path.is_file():
            raise ArchiveError(
                f"rank {other} has no archive ({path}): the {world_size} ranks of this start "
                "need every rank's archive of one SAVE"
            )
        reader = archive_io.open_archive(path)
        try:
            record = LifecycleRecord.from_json(
                archive_io.read_json(reader, archive_io.LIFECYCLE_SECTION)
            )
        finally:
            reader.close()
        if record.job != job:
            raise ArchiveError(
                f"rank {other}'s archive comes from another SAVE (launch {record.job}) than "
                f"rank {rank}'s (launch {job}): every rank must restore from one SAVE"
            )
