"""The startup report's ``caches`` field: what came from the archive, what was compiled.

"Compiled during this start" is every file below the kiln-owned cache directory that was
not there (or had another size) when ``kiln run`` prepared it: new Triton kernels, Inductor
artifacts, the engine's compile artifacts, autotuning results, counted by kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kiln.archive.caches import cache_kind, excluded
from kiln.lifecycle import cache_dirs, environment

#: Paths of compiled files listed in the report (all are counted).
MAX_LISTED = 200


def summarize(
    environ: Mapping[str, str], stored: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The report's ``caches`` field (``None`` outside ``kiln run``); ``stored``: what SAVE
    put in the archive."""
    text = environ.get(environment.CACHE_DIR)
    if not text:
        return None
    directory = Path(text)
    baseline = cache_dirs.read_baseline(directory) or {}
    before = baseline.get("files")
    before = before if isinstance(before, dict) else {}
    now = cache_dirs.inventory(directory) if directory.is_dir() else {}
    new = [path for path, size in now.items() if before.get(path) != size and _counted(path)]
    by_kind: dict[str, int] = {}
    for path in new:
        kind = cache_kind(path)
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return {
        "dir": text,
        "from_archive": baseline.get("from_archive"),
        "refused": baseline.get("refused"),
        "prepare_s": baseline.get("prepare_s"),
        "stored": None if stored is None else dict(stored),
        "compiled": {
            "files": len(new),
            "bytes": sum(now[p] for p in new),
            "by_kind": dict(sorted(by_kind.items())),
            "paths": sorted(new)[:MAX_LISTED],
        },
    }


def _counted(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return not excluded(parts[-1], False) and not any(excluded(p, True) for p in parts[:-1])


def log_text(caches: Mapping[str, Any] | None) -> str:
    """A few words for the report's log line."""
    if not caches:
        return ""
    words: list[str] = []
    from_archive = caches.get("from_archive")
    if isinstance(from_archive, Mapping):
        words.append(f"{from_archive.get('entries', 0)} cache files from the archive")
    if caches.get("refused"):
        words.append(f"archive caches refused: {caches['refused']}")
    stored = caches.get("stored")
    if isinstance(stored, Mapping):
        words.append(f"{stored.get('entries', 0)} cache files stored")
    compiled = caches.get("compiled") or {}
    kinds = ", ".join(f"{k} {v}" for k, v in (compiled.get("by_kind") or {}).items())
    words.append(f"{compiled.get('files', 0)} compiled" + (f" ({kinds})" if kinds else ""))
    return "; caches: " + ", ".join(words)
