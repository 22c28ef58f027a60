"""The kiln archive container, format version 1: one file of named, checksummed sections.

Archives carry GPU kernel binaries that kiln loads and runs, so the reader treats every
byte as hostile: each field is validated before use, every byte of the file is covered by
a checksum or must be zero, and every failure raises an :class:`~kiln.errors.ArchiveError`
subclass that names the check and, where there is one, the section.

On-disk layout (all integers little-endian, offsets in bytes from the start of the file)::

    0    8   magic            b"KILNARC\\x00"
    8    4   u32 version      FORMAT_VERSION (1)
    12   4   u32 flags        0 (any other value: ArchiveVersionError)
    16   4   u32 count        number of sections, at most MAX_SECTIONS
    20   4   u32 header_len   32 + 80 * count + 32 (fixed header + table + header checksum)
    24   8   u64 file_len     total length of the file in bytes
    32   80 * count           section table, one entry per section, in file order:
             +0   32  name    UTF-8, NUL-padded; 1..32 bytes, no NUL inside
             +32   8  u64     offset of the section data
             +40   8  u64     length of the section data
             +48  32  sha256  SHA-256 of the section data
    32 + 80 * count   32      SHA-256 of bytes [0, 32 + 80 * count)
    header_len ...            section data

The layout is canonical, so that no byte of the file escapes validation: the first
section starts at ``align64(header_len)``, each next one at ``align64(end of previous)``,
in table order; the gaps between (at most 63 bytes each) are zero; the file ends exactly at
the end of the last section (at ``header_len`` when there are none). Every section offset
is therefore a multiple of :data:`SECTION_ALIGNMENT` (64), which keeps the mmap'd kernel
binaries aligned.

Reading: :class:`ArchiveReader` maps the file read-only and hands out zero-copy, read-only
``memoryview`` slices of the mapping. Closing the reader while such views are alive is
safe: the mapping is then released when the last view is garbage collected. The file must
never be modified in place while it is mapped (a process that truncates a mapped file makes
readers fault); :func:`write_archive` never does, it writes a new file and renames it over.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Final, Self

from kiln.errors import (
    ArchiveCorrupt,
    ArchiveError,
    ArchiveTruncated,
    ArchiveVersionError,
    InputFileError,
    NotAnArchive,
)
from kiln.input_files import open_regular

__all__ = [
    "ENTRY_SIZE",
    "FIXED_HEADER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_NAME_BYTES",
    "MAX_SECTIONS",
    "SECTION_ALIGNMENT",
    "ArchiveReader",
    "header_length",
    "write_archive",
]

MAGIC: Final = b"KILNARC\x00"
FORMAT_VERSION: Final = 1
SECTION_ALIGNMENT: Final = 64
MAX_NAME_BYTES: Final = 32
MAX_SECTIONS: Final = 65536
DIGEST_SIZE: Final = 32

_FIXED = struct.Struct("<8sIIIIQ")  # magic, version, flags, count, header_len, file_len
_ENTRY = struct.Struct("<32sQQ32s")  # name, offset, length, sha256
FIXED_HEADER_SIZE: Final = _FIXED.size  # 32
ENTRY_SIZE: Final = _ENTRY.size  # 80

PathArg = str | os.PathLike[str]
SectionData = bytes | bytearray | memoryview


def header_length(count: int) -> int:
    """Bytes taken by the fixed header, a table of ``count`` entries and the header checksum."""
    return FIXED_HEADER_SIZE + ENTRY_SIZE * count + DIGEST_SIZE


def _align(n: int) -> int:
    return (n + SECTION_ALIGNMENT - 1) & ~(SECTION_ALIGNMENT - 1)


# --- writing -----------------------------------------------------------------------------


def _encode_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"section name must be str, got {type(name).__name__}")
    raw = name.encode("utf-8")
    if not raw:
        raise ValueError("section name must not be empty")
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(
            f"section name {name!r} is {len(raw)} bytes of UTF-8, at most {MAX_NAME_BYTES}"
        )
    if b"\x00" in raw:
        raise ValueError(f"section name {name!r} contains a NUL character")
    return raw


def _as_bytes_view(name: str, data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError as err:
        raise TypeError(
            f"section {name!r}: {type(data).__name__} does not support the buffer protocol"
        ) from err
    if not view.c_contiguous:
        view.release()
        raise ValueError(f"section {name!r}: buffer is not C-contiguous")
    if view.format == "B" and view.ndim == 1:
        return view
    try:
        return view.cast("B")
    finally:
        view.release()


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_archive(path: PathArg, sections: Mapping[str, SectionData]) -> int:
    """Write ``sections`` (in mapping order) to a new archive at ``path``; return its size.

    The file is written to a temporary file in the same directory, flushed and fsync'd,
    then renamed over ``path`` (atomic on POSIX). On any failure the temporary file is
    removed and an existing archive at ``path`` is left untouched. The file mode is 0o644.

    Raises ``TypeError``/``ValueError`` for invalid names or data (empty, longer than
    :data:`MAX_NAME_BYTES` bytes of UTF-8, containing NUL, duplicate after encoding, more
    than :data:`MAX_SECTIONS` sections, non-contiguous buffers) and ``OSError`` for I/O
    failures. Writing does not take the archive lock; see :func:`kiln.archive.archive_lock`.
    """
    target = os.path.abspath(os.fspath(path))
    names: list[tuple[str, bytes]] = []
    seen: set[bytes] = set()
    for name in sections:
        raw = _encode_name(name)
        if raw in seen:
            raise ValueError(f"duplicate section name {name!r}")
        seen.add(raw)
        names.append((name, raw))
    if len(names) > MAX_SECTIONS:
        raise ValueError(f"{len(names)} sections, at most {MAX_SECTIONS}")

    directory, base = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    views: list[memoryview] = []
    try:
        with os.fdopen(fd, "wb") as out:
            for name, _ in names:
                views.append(_as_bytes_view(name, sections[name]))
            hlen = header_length(len(names))
            table = bytearray()
            layout: list[tuple[int, int]] = []  # (padding before, offset)
            pos = hlen
            for (name, raw), view in zip(names, views, strict=True):
                offset = _align(pos)
                layout.append((offset - pos, offset))
                table += _ENTRY.pack(raw, offset, view.nbytes, hashlib.sha256(view).digest())
                pos = offset + view.nbytes
            file_len = pos
            head = _FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(names), hlen, file_len) + table
            out.write(head)
            out.write(hashlib.sha256(head).digest())
            for (pad, _), view in zip(layout, views, strict=True):
                if pad:
                    out.write(bytes(pad))
                out.write(view)
            out.flush()
            if out.tell() != file_len:
                raise OSError(f"wrote {out.tell()} bytes to {tmp}, expected {file_len}")
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        for view in views:
            view.release()
    _fsync_dir(directory)
    return file_len


# --- reading -----------------------------------------------------------------------------


class _Entry:
    __slots__ = ("digest", "length", "name", "offset")

    def __init__(self, name: str, offset: int, length: int, digest: bytes) -> None:
        self.name = name
        self.offset = offset
        self.length = length
        self.digest = digest

    @property
    def end(self) -> int:
        return self.offset + self.length


def _open_mapping(path: str) -> tuple[mmap.mmap | None, int]:
    """Map ``path`` read-only; return (mapping, size). An empty file has no mapping.

    A FIFO, a device or a directory is refused without being read (see kiln.input_files)."""
    try:
        fd, st = open_regular(path, "archive")
    except InputFileError as err:
        raise ArchiveError(str(err)) from None
    try:
        if st.st_size == 0:
            return None, 0
        try:
            mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise ArchiveError(f"cannot map archive {path}: {err}") from err
        return mapping, len(mapping)
    finally:
        os.close(fd)


class ArchiveReader:
    """A validated, read-only, memory-mapped view of one archive.

    ``ArchiveReader(path, verify=True)`` validates the header, the table and the layout at
    once and, with ``verify=True``, the SHA-256 of every section (cost proportional to the
    archive size). With ``verify=False`` the section data is not hashed at open; call
    :meth:`verify_section` (or :meth:`verify`) before trusting a section.

    Views returned by :meth:`section` are read-only slices of the mapping; they stay valid
    after :meth:`close`, which then leaves the unmapping to the garbage collection of the
    last view.
    """

    def __init__(self, path: PathArg, verify: bool = True) -> None:
        self._path = os.fspath(path)
        self._entries: dict[str, _Entry] = {}
        self._order: tuple[str, ...] = ()
        self._mm, self._size = _open_mapping(self._path)
        try:
            self._parse()
            if verify:
                self.verify()
        except BaseException:
            self.close()
            raise

    # -- validation ---------------------------------------------------------------------

    def _fail(self, message: str) -> ArchiveCorrupt:
        return ArchiveCorrupt(f"archive {self._path}: {message}")

    def _parse(self) -> None:
        size = self._size
        mm = self._mm
        prefix = mm[: len(MAGIC)] if mm is not None else b""
        if prefix != MAGIC[: len(prefix)]:
            raise NotAnArchive(
                f"archive {self._path}: bad magic {prefix!r}, expected {MAGIC!r}: not a kiln "
                "archive"
            )
        if size < FIXED_HEADER_SIZE or mm is None:
            raise ArchiveTruncated(
                f"archive {self._path}: truncated in the header: file has {size} bytes, "
                f"the fixed header alone needs {FIXED_HEADER_SIZE}"
            )
        _, version, flags, count, hlen, file_len = _FIXED.unpack_from(mm, 0)
        if version != FORMAT_VERSION:
            raise ArchiveVersionError(
                f"archive {self._path}: format version {version}, this kiln reads version "
                f"{FORMAT_VERSION} only"
            )
        if count > MAX_SECTIONS:
            raise self._fail(f"header: section count {count} exceeds the limit {MAX_SECTIONS}")
        if hlen != header_length(count):
            raise self._fail(
                f"header: header length {hlen} does not match section count {count} "
                f"(expected {header_length(count)})"
            )
        if size < hlen:
            raise ArchiveTruncated(
                f"archive {self._path}: truncated in the section table: file has {size} "
                f"bytes, header and table of {count} sections need {hlen}"
            )
        table_end = hlen - DIGEST_SIZE
        with memoryview(mm) as whole:
            digest = hashlib.sha256(whole[:table_end]).digest()
        if digest != mm[table_end:hlen]:
            raise self._fail("header checksum mismatch (header or section table damaged)")
        # From here on every header and table field is as the writer wrote it.
        if flags != 0:
            raise ArchiveVersionError(
                f"archive {self._path}: unsupported header flags {flags:#x} (this kiln knows none)"
            )
        if size < file_len:
            raise ArchiveTruncated(
                f"archive {self._path}: truncated in the section data: file has {size} "
                f"bytes, header says {file_len}"
            )
        if size > file_len:
            raise self._fail(f"{size - file_len} trailing bytes after the declared end {file_len}")
        entries = [self._parse_entry(i, mm, hlen, file_len) for i in range(count)]
        self._check_overlap(entries)
        self._check_layout(entries, mm, hlen, file_len)
        self._order = tuple(e.name for e in entries)

    def _parse_entry(self, index: int, mm: mmap.mmap, hlen: int, file_len: int) -> _Entry:
        raw, offset, length, digest = _ENTRY.unpack_from(mm, FIXED_HEADER_SIZE + index * ENTRY_SIZE)
        where = f"section table entry {index}"
        stripped = raw.rstrip(b"\x00")
        if not stripped:
            raise self._fail(f"{where}: empty section name")
        if b"\x00" in stripped:
            raise self._fail(f"{where}: section name {stripped!r} contains a NUL byte")
        try:
            name = stripped.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(f"{where}: section name {stripped!r} is not valid UTF-8") from None
        if name in self._entries:
            raise self._fail(f"{where}: duplicate section name {name!r}")
        where = f"section {name!r} (table entry {index})"
        if offset % SECTION_ALIGNMENT:
            raise self._fail(f"{where}: offset {offset} is not {SECTION_ALIGNMENT}-byte aligned")
        if offset < hlen:
            raise self._fail(
                f"{where}: offset {offset} lies inside the header and table (which end at {hlen})"
            )
        if offset > file_len:
            raise self._fail(f"{where}: offset {offset} is beyond the end of the file {file_len}")
        if length > file_len - offset:
            raise self._fail(
                f"{where}: data [{offset}, {offset + length}) extends beyond the end of the "
                f"file {file_len}"
            )
        entry = _Entry(name, offset, length, digest)
        self._entries[name] = entry
        return entry

    def _check_overlap(self, entries: list[_Entry]) -> None:
        furthest: _Entry | None = None
        for e in sorted(entries, key=lambda e: (e.offset, e.length)):
            if furthest is not None and e.length and e.offset < furthest.end:
                raise self._fail(
                    f"sections {furthest.name!r} [{furthest.offset}, {furthest.end}) and "
                    f"{e.name!r} [{e.offset}, {e.end}) overlap"
                )
            if furthest is None or e.end > furthest.end:
                furthest = e

    def _check_layout(self, entries: list[_Entry], mm: mmap.mmap, hlen: int, file_len: int) -> None:
        pos = hlen
        for e in entries:
            if e.offset != _align(pos):
                raise self._fail(
                    f"section {e.name!r}: offset {e.offset}, but the canonical layout places "
                    f"it at {_align(pos)} (sections out of order or separated by a gap)"
                )
            if any(mm[pos : e.offset]):
                raise self._fail(
                    f"non-zero padding bytes in [{pos}, {e.offset}) before section {e.name!r}"
                )
            pos = e.end
        if pos != file_len:
            raise self._fail(f"file length {file_len}, but the last section ends at {pos}")

    # -- public API ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def names(self) -> tuple[str, ...]:
        """Section names in file order."""
        return self._order

    @property
    def file_size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._mm is None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ArchiveCorrupt(f"archive {self._path}: missing section {name!r}")
        return entry

    def _mapping(self) -> mmap.mmap:
        if self._mm is None:
            raise ArchiveError(f"archive {self._path}: reader is closed")
        return self._mm

    def section_size(self, name: str) -> int:
        """Length of section ``name`` in bytes (``ArchiveCorrupt`` when it does not exist)."""
        return self._entry(name).length

    def section_digest(self, name: str) -> bytes:
        """The SHA-256 recorded for section ``name`` in the (checksummed) table."""
        return self._entry(name).digest

    def section(self, name: str) -> memoryview:
        """Zero-copy, read-only view of section ``name``'s bytes.

        Not hashed here: with ``verify=False`` at open, call :meth:`verify_section` first.
        """
        entry = self._entry(name)
        mm = self._mapping()
        return memoryview(mm)[entry.offset : entry.end]

    def verify_section(self, name: str) -> None:
        """Hash section ``name`` and compare with the table; ``ArchiveCorrupt`` on mismatch."""
        entry = self._entry(name)
        view = memoryview(self._mapping())[entry.offset : entry.end]
        try:
            digest = hashlib.sha256(view).digest()
        finally:
            view.release()
        if digest != entry.digest:
            raise ArchiveCorrupt(
                f"archive {self._path}: section {name!r} checksum mismatch "
                f"(SHA-256 {digest.hex()}, table says {entry.digest.hex()})"
            )

    def verify(self) -> None:
        """Verify every section's SHA-256 (what ``verify=True`` does at open).

        hashlib releases the GIL while hashing, so sections are hashed on a few threads."""
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(self._order)))) as pool:
            for future in [pool.submit(self.verify_section, name) for name in self._order]:
                future.result()

    def close(self) -> None:
        """Release the mapping. Idempotent. Views handed out stay valid (see class doc)."""
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                # Views are still exported; the mapping is unmapped when the last is freed.
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._order)} sections"
        return f"<ArchiveReader {self._path!r} {state}>"
