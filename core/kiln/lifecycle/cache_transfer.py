"""Moving engine caches between the kiln-owned cache directory and the archive.

* :func:`prepare` runs in ``kiln run`` after the plan, before exec (so every engine process
  sees the result): SAVE makes the directory; LOAD verifies the archive's cache entries
  (checksums, paths, sizes, key inputs against this machine) and installs them into a new
  directory. A refusal stops the start under ``strict``; under ``fallback`` the engine starts
  with an empty directory and the startup report says why.
* :func:`store` runs in rank 0's engine process at SAVE's commit: the directory's files
  become archive sections (:mod:`kiln.archive.caches`).
* :func:`discard_installed` removes what LOAD installed when the engine process then finds
  the archive unusable and falls back (the caches were built for the refused environment).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.archive import caches
from kiln.config import Policy
from kiln.errors import ArchiveError
from kiln.lifecycle import archive_io, cache_dirs, environment
from kiln.lifecycle.types import FingerprintValue

log = logging.getLogger("kiln")


class CachesRefused(ArchiveError):
    """LOAD refuses the archive's engine caches (strict policy: the start stops)."""

    def __init__(self, archive: Path, err: ArchiveError) -> None:
        self.cause = err
        super().__init__(
            f"the engine caches in archive {archive} are refused: {err} (policy fallback "
            "starts with an empty cache directory instead)"
        )


@dataclass
class Prepared:
    directory: Path
    mode: str
    installed: caches.Installed | None = None
    refused: str | None = None
    notes: list[str] = field(default_factory=list)


def prepare(
    mode: str,
    archive_dir: Path,
    directory: Path,
    key: Mapping[str, FingerprintValue],
    policy: Policy,
    limits: caches.CacheLimits = caches.DEFAULT_LIMITS,
) -> Prepared:
    """Make the engine's cache directory ready (see the module doc); write its baseline."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    cache_dirs.remove_stale_load_dirs(archive_dir)
    started = time.perf_counter()
    result = Prepared(directory, mode)
    if mode == "save":
        directory.mkdir(exist_ok=True)
    else:
        _reset(directory)
        try:
            result.installed = _install(archive_dir, directory, key, limits)
        except ArchiveError as err:
            if policy is Policy.STRICT:
                raise CachesRefused(archive_io.archive_file(archive_dir), err) from err
            _reset(directory)
            directory.mkdir()
            result.refused = str(err)
            log.warning("kiln: starting with an empty cache directory: %s", err)
        if result.installed is None and result.refused is None:
            result.notes.append("the archive stores no engine caches")
    cache_dirs.write_baseline(
        directory,
        {
            "mode": mode,
            "files": cache_dirs.inventory(directory),
            "from_archive": None if result.installed is None else _installed(result.installed),
            "refused": result.refused,
            "notes": result.notes,
            "prepare_s": round(time.perf_counter() - started, 6),
        },
    )
    return result


def _install(
    archive_dir: Path,
    directory: Path,
    key: Mapping[str, FingerprintValue],
    limits: caches.CacheLimits,
) -> caches.Installed | None:
    with archive_io.open_archive(archive_io.archive_file(archive_dir)) as reader:
        manifest = caches.read_manifest(reader, limits)
        if manifest is None:
            directory.mkdir()
            return None
        caches.check_key(manifest, key)
        return caches.install(reader, manifest, directory, limits)


def _reset(directory: Path) -> None:
    if directory.is_symlink():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)


def _installed(installed: caches.Installed) -> dict[str, Any]:
    return {"entries": installed.entries, "bytes": installed.bytes, "by_kind": installed.by_kind}


# --- SAVE: the engine process ------------------------------------------------------------


@dataclass
class Stored:
    sections: dict[str, bytes]
    summary: dict[str, Any] | None
    note: str | None = None


def store(
    environ: Mapping[str, str],
    fields: Mapping[str, FingerprintValue],
    limits: caches.CacheLimits = caches.DEFAULT_LIMITS,
) -> Stored:
    """The sections holding the engine's cache directory (none outside ``kiln run``).

    A directory over ``limits`` is not stored: LOAD then compiles what SAVE did, and the
    report's note says so.
    """
    text = environ.get(environment.CACHE_DIR)
    if not text:
        return Stored({}, None)
    directory = Path(text)
    if not directory.is_dir() or directory.is_symlink():
        return Stored({}, None, f"caches not stored: {directory} is not a directory")
    try:
        packed = caches.pack(directory, cache_dirs.key_fields(fields), limits)
    except caches.CachesTooLarge as err:
        return Stored({}, None, f"caches not stored: {err}")
    summary: dict[str, Any] = {
        "entries": packed.entries,
        "bytes": packed.bytes,
        "sections": len(packed.sections) - 1,
        "by_kind": packed.by_kind(),
        "skipped": [f"{path}: {why}" for path, why in packed.skipped[:20]],
    }
    return Stored(packed.sections, summary)


def discard_installed(environ: Mapping[str, str]) -> int:
    """Remove the files LOAD installed from the archive; how many were still there."""
    text = environ.get(environment.CACHE_DIR)
    if not text:
        return 0
    directory = Path(text)
    baseline = cache_dirs.read_baseline(directory)
    if not baseline or baseline.get("mode") != "load" or not baseline.get("from_archive"):
        return 0
    files = baseline.get("files")
    return cache_dirs.discard(directory, files if isinstance(files, dict) else ())
