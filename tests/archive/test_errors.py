"""Archive container and JSON sections: every specific error, with its named cause."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from kiln.archive import ArchiveReader, dump_json, load_json, write_archive
from kiln.errors import (
    ArchiveCorrupt,
    ArchiveError,
    ArchiveTruncated,
    ArchiveVersionError,
)

SECTIONS = {
    "manifest": dump_json({"kind": "test", "n": 3}),
    "bin/0": bytes(range(256)) * 3,
    "empty": b"",
    "graph/1": b"graph-bytes" * 11,
}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "a.kiln"
    write_archive(path, SECTIONS)
    return path


def _entries(path: Path) -> list[tuple[str, int, int]]:
    data = path.read_bytes()
    (count,) = struct.unpack_from("<I", data, 16)
    out = []
    for i in range(count):
        name, off, length, _ = struct.unpack_from("<32sQQ32s", data, 32 + 80 * i)
        out.append((name.rstrip(b"\0").decode(), off, length))
    return out


def craft(
    path: Path,
    table: list[tuple[bytes, int, int, bytes | None]],
    blobs: dict[int, bytes] | None = None,
    *,
    file_len: int | None = None,
    version: int = 1,
    flags: int = 0,
    count: int | None = None,
    hlen: int | None = None,
) -> Path:
    """Write a hand-made archive with a *valid* header checksum over whatever table it gets.

    ``table`` rows are (name, offset, length, digest); a digest of None is computed from the
    bytes that end up at [offset, offset + length).
    """
    n = len(table)
    real_hlen = 32 + 80 * n + 32
    blobs = blobs or {}
    end = max([real_hlen] + [off + len(b) for off, b in blobs.items()])
    size = end if file_len is None else file_len
    body = bytearray(max(size, end))
    for off, blob in blobs.items():
        body[off : off + len(blob)] = blob
    rows = b""
    for name, off, length, digest in table:
        if digest is None:
            digest = hashlib.sha256(bytes(body[off : off + length])).digest()
        rows += struct.pack("<32sQQ32s", name, off, length, digest)
    head = (
        struct.pack(
            "<8sIIIIQ",
            b"KILNARC\0",
            version,
            flags,
            n if count is None else count,
            real_hlen if hlen is None else hlen,
            size,
        )
        + rows
    )
    body[: len(head)] = head
    body[len(head) : real_hlen] = hashlib.sha256(head).digest()
    path.write_bytes(bytes(body[:size]))
    return path


def _open(path: Path, verify: bool = True) -> None:
    with ArchiveReader(path, verify=verify):
        pass


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


# --- header ------------------------------------------------------------------------------


def test_bad_magic(archive: Path) -> None:
    _flip(archive, 3)
    with pytest.raises(ArchiveCorrupt, match="bad magic"):
        _open(archive)


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(ArchiveCorrupt, match="not a kiln archive"):
        _open(path)


@pytest.mark.parametrize("version", [0, 2, 0xFFFFFFFF])
def test_other_version(archive: Path, version: int) -> None:
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, 8, version)
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveVersionError, match=f"format version {version}"):
        _open(archive)


def test_unknown_flags(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [], flags=4)
    with pytest.raises(ArchiveVersionError, match="flags 0x4"):
        _open(path)


def test_header_checksum(archive: Path) -> None:
    _flip(archive, 32 + 80 + 40)  # a byte of the second entry's length
    with pytest.raises(ArchiveCorrupt, match="header checksum"):
        _open(archive)


def test_header_checksum_field_itself(archive: Path) -> None:
    hlen = 32 + 80 * len(SECTIONS) + 32
    _flip(archive, hlen - 1)
    with pytest.raises(ArchiveCorrupt, match="header checksum"):
        _open(archive)


def test_file_length_field_is_checksummed(archive: Path) -> None:
    _flip(archive, 24)
    with pytest.raises(ArchiveCorrupt, match="header checksum"):
        _open(archive)


def test_header_length_mismatch(archive: Path) -> None:
    _flip(archive, 20, 0x40)
    with pytest.raises(ArchiveCorrupt, match="header length .* does not match section count"):
        _open(archive)


def test_section_count_over_limit(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [], count=1 << 20, hlen=64)
    with pytest.raises(ArchiveCorrupt, match="section count 1048576 exceeds"):
        _open(path)


# --- truncation --------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"")
    with pytest.raises(ArchiveTruncated, match="0 bytes"):
        _open(path)


@pytest.mark.parametrize("length", [1, 8, 20, 31])
def test_truncated_in_header(archive: Path, length: int) -> None:
    archive.write_bytes(archive.read_bytes()[:length])
    with pytest.raises(ArchiveTruncated, match="truncated in the header"):
        _open(archive)


@pytest.mark.parametrize("length", [32, 100, 32 + 80 * len(SECTIONS) + 31])
def test_truncated_in_table(archive: Path, length: int) -> None:
    archive.write_bytes(archive.read_bytes()[:length])
    with pytest.raises(ArchiveTruncated, match="truncated in the section table"):
        _open(archive)


def test_truncated_in_data(archive: Path) -> None:
    data = archive.read_bytes()
    for cut in (32 + 80 * len(SECTIONS) + 32, len(data) // 2, len(data) - 1):
        archive.write_bytes(data[:cut])
        with pytest.raises(ArchiveTruncated, match=f"file has {cut} bytes, header says"):
            _open(archive, verify=False)


def test_trailing_bytes(archive: Path) -> None:
    archive.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(ArchiveCorrupt, match="1 trailing bytes"):
        _open(archive)


# --- section checksums -------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n, d in SECTIONS.items() if d])
def test_section_checksum(archive: Path, name: str) -> None:
    (off, length) = next((o, n) for s, o, n in _entries(archive) if s == name)
    _flip(archive, off + length // 2, 0x80)
    with pytest.raises(ArchiveCorrupt, match=f"section {name!r} checksum mismatch"):
        _open(archive)
    with ArchiveReader(archive, verify=False) as reader:  # structure is intact
        for other in SECTIONS:
            if other != name:
                reader.verify_section(other)
        with pytest.raises(ArchiveCorrupt, match=f"section {name!r} checksum mismatch"):
            reader.verify_section(name)
        with pytest.raises(ArchiveCorrupt, match=f"section {name!r}"):
            reader.verify()


def test_nonzero_padding(archive: Path) -> None:
    (_, off0, len0), (_, off1, _) = _entries(archive)[:2]
    assert off0 + len0 < off1  # a gap the writer pads with zeros
    _flip(archive, off1 - 1)
    with pytest.raises(ArchiveCorrupt, match="non-zero padding"):
        _open(archive, verify=False)


# --- structure (crafted with valid header checksums) -----------------------------------


def test_overlapping_sections(tmp_path: Path) -> None:
    path = craft(
        tmp_path / "a",
        [(b"a", 256, 100, None), (b"b", 320, 100, None)],
        {256: b"A" * 164},
    )
    with pytest.raises(ArchiveCorrupt, match=r"sections 'a' \[256, 356\) and 'b' .* overlap"):
        _open(path)


def test_same_offset_sections_overlap(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"a", 256, 10, None), (b"b", 256, 10, None)], {256: b"x" * 10})
    with pytest.raises(ArchiveCorrupt, match="overlap"):
        _open(path)


def test_offset_beyond_file(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"far", 1 << 40, 1, b"\0" * 32)], {192: b"x"})
    with pytest.raises(
        ArchiveCorrupt, match="section 'far'.*offset 1099511627776 is beyond the end"
    ):
        _open(path)


def test_section_extends_beyond_file(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"long", 192, 1 << 63, b"\0" * 32)], {192: b"x" * 10})
    with pytest.raises(ArchiveCorrupt, match="section 'long'.*extends beyond the end"):
        _open(path)


def test_offset_inside_header(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"s", 64, 8, None)], {192: b"x"})
    with pytest.raises(ArchiveCorrupt, match="section 's'.*inside the header"):
        _open(path)


def test_duplicate_names(tmp_path: Path) -> None:
    path = craft(
        tmp_path / "a", [(b"dup", 256, 1, None), (b"dup", 320, 1, None)], {256: b"1", 320: b"2"}
    )
    with pytest.raises(ArchiveCorrupt, match="duplicate section name 'dup'"):
        _open(path)


def test_unaligned_offset(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"s", 193, 1, None)], {193: b"x"})
    with pytest.raises(ArchiveCorrupt, match="section 's'.*not 64-byte aligned"):
        _open(path)


def test_out_of_order_sections(tmp_path: Path) -> None:
    path = craft(
        tmp_path / "a", [(b"a", 320, 1, None), (b"b", 256, 1, None)], {256: b"b", 320: b"a"}
    )
    with pytest.raises(ArchiveCorrupt, match="canonical layout"):
        _open(path)


def test_gap_between_sections(tmp_path: Path) -> None:
    path = craft(
        tmp_path / "a", [(b"a", 256, 1, None), (b"b", 384, 1, None)], {256: b"a", 384: b"b"}
    )
    with pytest.raises(ArchiveCorrupt, match="section 'b'.*canonical layout"):
        _open(path)


def test_file_longer_than_sections(tmp_path: Path) -> None:
    path = craft(tmp_path / "a", [(b"a", 192, 1, None)], {192: b"a", 260: b"\0"})
    with pytest.raises(ArchiveCorrupt, match="last section ends at 193"):
        _open(path)


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"", "empty section name"),
        (b"a\0b", "contains a NUL byte"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"\xc3", "not valid UTF-8"),
    ],
)
def test_bad_names_in_table(tmp_path: Path, raw: bytes, cause: str) -> None:
    path = craft(tmp_path / "a", [(raw, 192, 1, None)], {192: b"x"})
    with pytest.raises(ArchiveCorrupt, match=f"section table entry 0: .*{cause}"):
        _open(path)


def test_crafted_valid_archive_opens(tmp_path: Path) -> None:
    """The crafting helper itself produces readable archives (so the tests above test
    exactly one defect each)."""
    path = craft(
        tmp_path / "a", [(b"a", 256, 1, None), (b"b", 320, 2, None)], {256: b"a", 320: b"bb"}
    )
    with ArchiveReader(path) as reader:
        assert bytes(reader.section("b")) == b"bb"


# --- access ------------------------------------------------------------------------------


def test_missing_section(archive: Path) -> None:
    with ArchiveReader(archive) as reader:
        for call in (
            reader.section,
            reader.section_size,
            reader.verify_section,
            reader.section_digest,
        ):
            with pytest.raises(ArchiveCorrupt, match="missing section 'nope'"):
                call("nope")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot open archive"):
        _open(tmp_path / "absent.kiln")


def test_directory_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a regular file"):
        _open(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="not a regular file"):
        _open(fifo)


# --- JSON sections -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b'{"a": "\xff"}', "invalid UTF-8 at byte 7"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),  # a BOM
        (b"", "invalid JSON at line 1 column 1"),
        (b'{"a": 1', "invalid JSON"),
        (b'{"a": 1} trailing', "invalid JSON"),
        (b'{"a": NaN}', "non-finite number NaN"),
        (b'{"a": -Infinity}', "non-finite number -Infinity"),
        (b'{"a": 1e999}', "overflows"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": ' + b"1" * 5000 + b"}", "invalid JSON"),
        (b"[1, 2]", "top level is a JSON list"),
        (b'"s"', "top level is a JSON str"),
        (b"null", "top level is a JSON NoneType"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nesting deeper than 64"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nesting deeper than 64"),
    ],
)
def test_load_json_errors(data: bytes, cause: str) -> None:
    with pytest.raises(ArchiveCorrupt, match=f"section 'meta': .*{cause}"):
        load_json(memoryview(data), "meta")


def test_load_json_depth_limit_inclusive() -> None:
    assert load_json(b'{"a":' * 64 + b"1" + b"}" * 64, "meta")
