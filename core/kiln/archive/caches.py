"""Engine caches in an archive: the files of a cache directory, content-addressed.

SAVE packs the files of a kiln-owned cache directory (Triton kernels, Inductor artifacts,
the engine's compiled model, autotuning results) into one section per distinct content,
named ``cache/<first 26 hex digits of its SHA-256>``, plus the section ``caches``: a JSON
manifest of ``(path, sha256, size, mode)`` per file, the directory the files lived in
(``root``) and the key inputs they were built with (``key``: the fingerprint's fields and
the cache tools' versions).

LOAD treats all of it as hostile: the manifest is validated against a schema, every path
must be relative and stay inside the directory (no ``..``, no absolute path, no empty or
``.`` component, no path that is another's directory), every size and the totals are
bounded, every section's SHA-256 is compared with the manifest and the section table, and
files are created below a new directory through directory descriptors that never follow a
symbolic link. Triton's group files (``__grp__*.json``) name their members by absolute
path; those paths are moved from ``root`` to the new directory, and a member outside
``root`` refuses the whole set.

Everything here raises :class:`~kiln.errors.ArchiveError` subclasses: ``ArchiveCorrupt``
for a defective or hostile set, :class:`CacheKeyMismatch` for entries built with other key
inputs (naming the first differing field).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Final, Protocol, TypeAlias

import msgspec

from kiln.archive.fingerprint import compare_fingerprints
from kiln.archive.jsonsec import dump_json, load_json
from kiln.errors import ArchiveCorrupt, FingerprintMismatch
from kiln.schema import Count, Digest, Name, SchemaViolation, Text, validated

__all__ = [
    "MANIFEST_SECTION",
    "CacheEntry",
    "CacheKeyMismatch",
    "CacheLimits",
    "CacheManifest",
    "Installed",
    "Packed",
    "cache_kind",
    "install",
    "pack",
    "read_manifest",
    "section_name",
]

MANIFEST_SECTION: Final = "caches"
SECTION_PREFIX: Final = "cache/"
_NAME_DIGITS: Final = 32 - len(SECTION_PREFIX)  # a section name holds at most 32 bytes
MANIFEST_VERSION: Final = 1
_GROUP_PREFIX: Final = "__grp__"
_MAX_GROUP_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class CacheLimits:
    """Bounds on what SAVE stores and LOAD accepts."""

    max_entries: int = 32768
    max_file_bytes: int = 1 << 30
    max_total_bytes: int = 8 << 30
    max_path_bytes: int = 1024
    max_depth: int = 32


DEFAULT_LIMITS: Final = CacheLimits()


class CacheKeyMismatch(FingerprintMismatch):
    """The archive's cache entries were built with other key inputs than this machine's."""

    def __init__(self, field_name: str, archived: object, current: object) -> None:
        super().__init__(field_name, archived, current)
        message = (
            f"the archive's engine caches were built with {field_name} = {archived!r}, this "
            f"machine has {current!r}"
        )
        self.args = (message,)


# --- the manifest --------------------------------------------------------------------------

Path_: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
KeyValue: TypeAlias = Text | int | float | bool | None


class CacheEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Path_
    sha256: Digest
    size: Count
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o777)]


class CacheSkip(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Text
    reason: Text


class CacheManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]
    root: Path_
    key: Annotated[dict[Name, KeyValue], msgspec.Meta(max_length=4096)]
    entries: Annotated[list[CacheEntry], msgspec.Meta(max_length=1 << 20)]
    skipped: Annotated[list[CacheSkip], msgspec.Meta(max_length=1 << 16)] = []


def section_name(sha256_hex: str) -> str:
    return SECTION_PREFIX + sha256_hex[:_NAME_DIGITS]


def cache_kind(path: str) -> str:
    """The kind of cache a relative path belongs to, for the startup report."""
    parts = PurePosixPath(path).parts
    if "triton" in parts[:-1]:
        return "triton"
    if parts[0] == "inductor" or "inductor_cache" in parts[:-1]:
        return "inductor"
    return parts[0] if len(parts) > 1 else "other"


# --- SAVE ----------------------------------------------------------------------------------


@dataclass
class Packed:
    """What :func:`pack` found: the sections to write and what it left out, and why."""

    sections: dict[str, bytes] = field(default_factory=dict)
    manifest: CacheManifest | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return 0 if self.manifest is None else len(self.manifest.entries)

    @property
    def bytes(self) -> int:
        return 0 if self.manifest is None else sum(e.size for e in self.manifest.entries)

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.manifest.entries if self.manifest is not None else ():
            kind = cache_kind(entry.path)
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))


class CachesTooLarge(ArchiveCorrupt):
    """SAVE found more cache files or bytes than an archive may hold."""


def excluded(name: str, is_dir: bool) -> bool:
    """Lock files, temporary files and directories, bytecode: never stored."""
    if is_dir:
        return name == "__pycache__" or name.startswith(("tmp.", ".tmp"))
    return name.endswith((".lock", ".tmp", ".pyc")) or name.startswith((".tmp", "tmp."))


def pack(
    directory: Path, key: Mapping[str, KeyValue], limits: CacheLimits = DEFAULT_LIMITS
) -> Packed:
    """The sections holding every regular file below ``directory`` (never following a
    symbolic link; lock and temporary files excluded).

    Raises :class:`CachesTooLarge` when the files exceed ``limits`` (the caller decides
    whether SAVE stores no caches or stops).
    """
    root = directory.absolute()
    packed = Packed()
    entries: list[CacheEntry] = []
    total = 0
    by_name: dict[str, str] = {}
    for rel, kind in _walk(root, limits):
        if kind != "file":
            packed.skipped.append((rel, kind))
            continue
        data = _read_file(root / rel, limits.max_file_bytes)
        if data is None:
            packed.skipped.append((rel, "vanished or not a regular file while read"))
            continue
        if isinstance(data, int):
            raise CachesTooLarge(
                f"cache file {rel} holds {data} bytes, more than the {limits.max_file_bytes} "
                "an archive stores"
            )
        content, mode = data
        digest = hashlib.sha256(content).hexdigest()
        name = section_name(digest)
        if by_name.setdefault(name, digest) != digest:
            packed.skipped.append((rel, f"another file's content has the section name {name}"))
            continue
        total += len(content)
        if len(entries) >= limits.max_entries or total > limits.max_total_bytes:
            raise CachesTooLarge(
                f"the cache directory {root} holds more than {limits.max_entries} files or "
                f"{limits.max_total_bytes} bytes"
            )
        packed.sections.setdefault(name, content)
        entries.append(CacheEntry(rel, digest, len(content), mode))
    packed.manifest = CacheManifest(
        version=MANIFEST_VERSION,
        root=str(root),
        key=dict(key),
        entries=entries,
        skipped=[CacheSkip(p, r) for p, r in packed.skipped[: 1 << 16]],
    )
    packed.sections[MANIFEST_SECTION] = dump_json(msgspec.to_builtins(packed.manifest))
    return packed


def _walk(root: Path, limits: CacheLimits) -> Iterator[tuple[str, str]]:
    """``(relative path, "file" | why it is skipped)`` for every entry below ``root``."""
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # removed while walked
        for item in items:
            path = Path(item.path)
            rel = path.relative_to(root).as_posix()
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                yield rel, "symbolic link (never followed)"
            elif stat.S_ISDIR(st.st_mode):
                if excluded(item.name, True):
                    continue
                if depth + 1 >= limits.max_depth:
                    yield rel, f"deeper than {limits.max_depth} levels"
                else:
                    stack.append((path, depth + 1))
            elif not stat.S_ISREG(st.st_mode):
                yield rel, "not a regular file"
            elif excluded(item.name, False):
                continue
            elif len(rel.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
                yield rel, f"path longer than {limits.max_path_bytes} bytes"
            elif not _portable(rel):
                yield rel, "path is not valid UTF-8"
            else:
                yield rel, "file"


def _portable(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_file(path: Path, limit: int) -> tuple[bytes, int] | int | None:
    """``(content, mode)``; the size when over ``limit``; ``None`` when not readable as a
    regular file (never through a symbolic link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            return st.st_size
        with os.fdopen(os.dup(fd), "rb") as f:
            content = f.read(limit + 1)
        if len(content) > limit:
            return len(content)
        return content, 0o755 if st.st_mode & 0o100 else 0o644
    except OSError:
        return None
    finally:
        os.close(fd)


# --- LOAD ----------------------------------------------------------------------------------


class SectionReader(Protocol):
    """What :func:`read_manifest` and :func:`install` need of an ArchiveReader."""

    @property
    def path(self) -> str: ...
    def __contains__(self, name: object) -> bool: ...
    def section(self, name: str) -> memoryview: ...
    def section_size(self, name: str) -> int: ...
    def section_digest(self, name: str) -> bytes: ...
    def verify_section(self, name: str) -> None: ...


def read_manifest(
    reader: SectionReader, limits: CacheLimits = DEFAULT_LIMITS
) -> CacheManifest | None:
    """The archive's cache manifest, validated (``None`` when the archive stores no caches)."""
    if MANIFEST_SECTION not in reader:
        return None
    reader.verify_section(MANIFEST_SECTION)
    raw = load_json(reader.section(MANIFEST_SECTION), MANIFEST_SECTION)
    try:
        manifest = validated(raw, CacheManifest)
    except SchemaViolation as err:
        raise ArchiveCorrupt(f"section {MANIFEST_SECTION!r}: {err}") from None
    if manifest.version != MANIFEST_VERSION:
        raise ArchiveCorrupt(
            f"section {MANIFEST_SECTION!r}: version {manifest.version}, this kiln reads "
            f"version {MANIFEST_VERSION}"
        )
    _check_entries(reader, manifest, limits)
    return manifest


def check_key(manifest: CacheManifest, current: Mapping[str, object]) -> None:
    """Raise :class:`CacheKeyMismatch` for the first field of ``current`` whose value differs
    from the one the entries were built with (a field only one side has is compared too)."""
    archived = {k: manifest.key.get(k) for k in current}
    try:
        compare_fingerprints(archived, current)
    except FingerprintMismatch as err:
        raise CacheKeyMismatch(err.field, err.expected, err.actual) from None


def _check_entries(reader: SectionReader, manifest: CacheManifest, limits: CacheLimits) -> None:
    where = f"section {MANIFEST_SECTION!r}"
    if len(manifest.entries) > limits.max_entries:
        raise ArchiveCorrupt(
            f"{where}: {len(manifest.entries)} entries, at most {limits.max_entries}"
        )
    if not PurePosixPath(manifest.root).is_absolute():
        raise ArchiveCorrupt(f"{where}: root {manifest.root[:200]!r} is not an absolute path")
    files: set[str] = set()
    dirs: set[str] = set()
    total = 0
    for entry in manifest.entries:
        parts = safe_parts(entry.path, limits, where)
        if entry.path in files or entry.path in dirs:
            raise ArchiveCorrupt(f"{where}: path {entry.path!r} appears twice")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise ArchiveCorrupt(f"{where}: {parent!r} is both a file and a directory")
            dirs.add(parent)
        files.add(entry.path)
        if entry.size > limits.max_file_bytes:
            raise ArchiveCorrupt(
                f"{where}: {entry.path!r} is {entry.size} bytes, at most {limits.max_file_bytes}"
            )
        total += entry.size
        if total > limits.max_total_bytes:
            raise ArchiveCorrupt(f"{where}: the entries exceed {limits.max_total_bytes} bytes")
        if entry.mode not in (0o644, 0o755):
            raise ArchiveCorrupt(f"{where}: {entry.path!r} has mode {entry.mode:#o}")
        name = section_name(entry.sha256)
        if name not in reader:
            raise ArchiveCorrupt(f"{where}: {entry.path!r}: missing section {name!r}")
        if reader.section_size(name) != entry.size:
            raise ArchiveCorrupt(
                f"{where}: {entry.path!r} is {entry.size} bytes, section {name!r} holds "
                f"{reader.section_size(name)}"
            )
        if reader.section_digest(name).hex() != entry.sha256:
            raise ArchiveCorrupt(
                f"{where}: {entry.path!r}: section {name!r} has another SHA-256 than the entry"
            )


def safe_parts(path: str, limits: CacheLimits, where: str) -> list[str]:
    """The components of a relative path that stays inside its directory, or ArchiveCorrupt."""
    shown = repr(path[:200])
    if len(path.encode("utf-8", "surrogatepass")) > limits.max_path_bytes:
        raise ArchiveCorrupt(f"{where}: path {shown} is longer than {limits.max_path_bytes} bytes")
    if "\x00" in path:
        raise ArchiveCorrupt(f"{where}: path {shown} contains a NUL character")
    if path.startswith("/"):
        raise ArchiveCorrupt(f"{where}: path {shown} is absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ArchiveCorrupt(f"{where}: path {shown} has an empty, '.' or '..' component")
    if len(parts) > limits.max_depth:
        raise ArchiveCorrupt(f"{where}: path {shown} is deeper than {limits.max_depth} levels")
    return parts


@dataclass(frozen=True)
class Installed:
    entries: int
    bytes: int
    by_kind: dict[str, int]
    paths: tuple[str, ...]


def install(
    reader: SectionReader,
    manifest: CacheManifest,
    destination: Path,
    limits: CacheLimits = DEFAULT_LIMITS,
) -> Installed:
    """Verify every entry's content and write it below ``destination``, a new directory.

    ``destination`` must not exist (its parent must); on any error the files written so far
    stay there and the caller discards the directory.
    """
    where = f"section {MANIFEST_SECTION!r}"
    destination.mkdir(mode=0o755)
    root_fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    by_kind: dict[str, int] = {}
    verified: set[str] = set()
    try:
        for entry in manifest.entries:
            parts = safe_parts(entry.path, limits, where)
            name = section_name(entry.sha256)
            if name not in verified:
                reader.verify_section(name)  # the table's SHA-256, checked in _check_entries
                verified.add(name)
            data: bytes | memoryview = reader.section(name)
            if parts[-1].startswith(_GROUP_PREFIX) and parts[-1].endswith(".json"):
                data = _relocated_group(bytes(data), entry.path, manifest.root, destination)
            _write_below(root_fd, parts, data, entry.mode)
            kind = cache_kind(entry.path)
            by_kind[kind] = by_kind.get(kind, 0) + 1
    finally:
        os.close(root_fd)
    return Installed(
        entries=len(manifest.entries),
        bytes=sum(e.size for e in manifest.entries),
        by_kind=dict(sorted(by_kind.items())),
        paths=tuple(e.path for e in manifest.entries),
    )


def _relocated_group(data: bytes, path: str, old_root: str, new_root: Path) -> bytes:
    """A Triton group file with its members' absolute paths moved to ``new_root``."""
    where = f"cache entry {path!r}"
    if len(data) > _MAX_GROUP_BYTES:
        raise ArchiveCorrupt(f"{where}: a Triton group file of {len(data)} bytes")
    doc: Any = load_json(data, MANIFEST_SECTION, what=where)
    children = doc.get("child_paths")
    if not isinstance(children, dict):
        return data  # not a Triton group: installed as it is
    prefix = old_root.rstrip("/") + "/"
    moved: dict[str, str] = {}
    for child, member in children.items():
        if not isinstance(member, str) or not member.startswith(prefix):
            raise ArchiveCorrupt(
                f"{where}: member {str(child)[:100]!r} lies outside the cache directory"
            )
        rel = member[len(prefix) :]
        safe_parts(rel, DEFAULT_LIMITS, where)
        moved[child] = str(new_root / rel)
    doc["child_paths"] = moved
    return json.dumps(doc).encode("utf-8")


def _write_below(root_fd: int, parts: list[str], data: bytes | memoryview, mode: int) -> None:
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ArchiveCorrupt(f"cache path component {part!r} is not a directory")
                raise
            os.close(fd)
            fd = child
        out = os.open(
            parts[-1],
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=fd,
        )
        with os.fdopen(out, "wb") as f:
            f.write(data)
    finally:
        os.close(fd)
