"""The kiln-owned cache directory of an archive and the variables that point engines at it.

Layout, next to the archive::

    <archive dir>/caches/save/            SAVE's directory; kept from one SAVE to the next
    <archive dir>/caches/load-<pid>/      one LOAD's directory: new, filled from the archive
    <archive dir>/caches/<dir>.kiln.json  what `kiln run` put there (the report's baseline)

``kiln run`` pins the caches' variables (:data:`CORE_VARIABLES`, and the engine's own ones
that adapters return from ``kiln_child_env`` through :func:`pin`) to directories below it,
for SAVE and LOAD alike, so that every engine process compiles into, and reads from, a
directory kiln can store and fill; never the user's own cache directories. A variable the
user set to another value is refused by name (``PinConflict``, under every policy).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from kiln.errors import InputFileError
from kiln.input_files import read_bounded
from kiln.lifecycle.types import FingerprintValue, Pin

CACHES: Final = "caches"
SAVE_DIR: Final = "save"
BASELINE_SUFFIX: Final = ".kiln.json"
MAX_BASELINE_BYTES: Final = 64 << 20
_LOAD_DIR = re.compile(r"^load-([0-9]{1,10})$")

#: Variables kiln pins for every engine: the variable and its directory below the cache dir.
CORE_VARIABLES: Final[dict[str, str]] = {
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
}

#: Distributions whose versions key the cache entries (besides the fingerprint's fields).
KEY_DISTRIBUTIONS: Final = ("torch", "triton")


def cache_root(archive_dir: Path) -> Path:
    return archive_dir / CACHES


def cache_dir(archive_dir: Path, mode: str, pid: int) -> Path:
    """The directory a ``save`` or ``load`` start's engine uses."""
    root = cache_root(archive_dir)
    return root / SAVE_DIR if mode == "save" else root / f"load-{pid}"


def baseline_file(directory: Path) -> Path:
    return directory.with_name(directory.name + BASELINE_SUFFIX)


def pin(directory: Path, variable: str, subdir: str, reason: str) -> Pin:
    """Pin ``variable`` to ``<directory>/<subdir>`` (for adapters' ``kiln_child_env``)."""
    return Pin(variable, str(directory / subdir), reason)


def core_pins(directory: Path) -> tuple[Pin, ...]:
    reason = (
        "kiln owns the engine's compile caches: SAVE stores them in the archive, LOAD "
        "installs them there (unset it; kiln never writes the user's cache directories)"
    )
    return tuple(pin(directory, name, sub, reason) for name, sub in CORE_VARIABLES.items())


def key_fields(fields: Mapping[str, FingerprintValue]) -> dict[str, FingerprintValue]:
    """The key inputs of cache entries: ``fields`` (a fingerprint) and the cache tools'
    versions (``cache.torch_version``, ``cache.triton_version``)."""
    key: dict[str, FingerprintValue] = dict(fields)
    for distribution in KEY_DISTRIBUTIONS:
        try:
            version: str = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        key[f"cache.{distribution}_version"] = version
    return key


# --- the baseline: what the directory held when the engine started -------------------------


def inventory(directory: Path) -> dict[str, int]:
    """``{relative path: size}`` of the regular files below ``directory`` (no symlinks)."""
    found: dict[str, int] = {}
    for here, dirs, files in os.walk(directory, followlinks=False):
        for name in files:
            path = Path(here) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink():
                found[path.relative_to(directory).as_posix()] = st.st_size
        dirs.sort()
    return found


def write_baseline(directory: Path, doc: Mapping[str, Any]) -> None:
    path = baseline_file(directory)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(doc), sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_baseline(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_bounded(baseline_file(directory), MAX_BASELINE_BYTES, "baseline"))
    except (InputFileError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- housekeeping ------------------------------------------------------------------------


def remove_stale_load_dirs(archive_dir: Path) -> list[Path]:
    """Remove the LOAD directories of processes that no longer run; return them."""
    root = cache_root(archive_dir)
    removed: list[Path] = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return removed
    for name in names:
        match = _LOAD_DIR.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = root / name
        if path.is_symlink() or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)  # never follows a symbolic link
        baseline_file(path).unlink(missing_ok=True)
        removed.append(path)
    return removed


def discard(directory: Path, paths: Iterable[str]) -> int:
    """Remove the files ``paths`` (relative, as installed) below ``directory``; return how
    many were there. Other processes may remove the same files at the same time."""
    removed = 0
    for rel in paths:
        target = directory / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            target.unlink()
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True
