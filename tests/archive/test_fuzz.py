"""Hostile bytes: truncations, bit flips, garbage, crafted tables. Deterministic seeds.

Every case must raise an ``ArchiveError`` subclass or (never expected with this format,
where every byte is checksummed or must be zero) read back the original data; any other
exception fails the test.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import pytest
from kiln.archive import ArchiveReader, dump_json, load_json, write_archive
from kiln.errors import ArchiveCorrupt, ArchiveError, ArchiveTruncated

SECTIONS = {
    "manifest": dump_json({"graphs": ["decode-1", "decode-2"], "v": 1}),
    "bin/a": bytes(range(200)),
    "empty": b"",
    "params": b"\x00\x01" * 70,
}


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "orig.kiln"
    write_archive(path, SECTIONS)
    return path.read_bytes()


def _hlen() -> int:
    return 32 + 80 * len(SECTIONS) + 32


def _attempt(path: Path, data: bytes, verify: bool = True) -> ArchiveError | None:
    """Open ``data``; return the ArchiveError raised, or None after checking the contents."""
    path.write_bytes(data)
    try:
        with ArchiveReader(path, verify=verify) as reader:
            contents = {name: bytes(reader.section(name)) for name in reader.names}
            reader.verify()
    except ArchiveError as err:
        assert str(err), "an archive error must name its cause"
        return err
    assert contents == SECTIONS
    return None


def test_truncate_at_every_length(tmp_path: Path, original: bytes) -> None:
    path = tmp_path / "t.kiln"
    for length in range(len(original)):
        err = _attempt(path, original[:length])
        assert isinstance(err, ArchiveTruncated), (length, err)
    assert _attempt(path, original) is None


@pytest.mark.parametrize("verify", [True, False])
def test_flip_every_header_and_table_bit(tmp_path: Path, original: bytes, verify: bool) -> None:
    path = tmp_path / "f.kiln"
    for offset in range(_hlen()):
        for mask in (1, 2, 4, 8, 16, 32, 64, 128, 0xFF):
            data = bytearray(original)
            data[offset] ^= mask
            err = _attempt(path, bytes(data), verify=verify)
            assert err is not None, (offset, mask)


def test_flip_data_bytes(tmp_path: Path, original: bytes) -> None:
    rng = random.Random(7)
    path = tmp_path / "d.kiln"
    positions = list(range(_hlen(), len(original)))
    for offset in sorted(rng.sample(positions, 250)) + [positions[0], positions[-1]]:
        data = bytearray(original)
        data[offset] ^= 1 << rng.randrange(8)
        err = _attempt(path, bytes(data))
        assert isinstance(err, ArchiveCorrupt), offset
        assert "checksum mismatch" in str(err) or "padding" in str(err), err


def test_every_data_flip_is_detected_by_its_section(tmp_path: Path, original: bytes) -> None:
    """Each flipped data byte is reported against the section that holds it."""
    path = tmp_path / "d.kiln"
    table = []
    for i in range(len(SECTIONS)):
        name, off, length, _ = struct.unpack_from("<32sQQ32s", original, 32 + 80 * i)
        table.append((name.rstrip(b"\0").decode(), off, length))
    for name, off, length in table:
        for offset in range(off, off + length):
            data = bytearray(original)
            data[offset] ^= 0x10
            err = _attempt(path, bytes(data))
            assert isinstance(err, ArchiveCorrupt)
            assert f"section {name!r} checksum mismatch" in str(err)


def test_random_garbage(tmp_path: Path) -> None:
    rng = random.Random(2024)
    path = tmp_path / "g.kiln"
    for i in range(400):
        length = rng.choice([0, 1, 7, 8, 31, 32, 33, 64, 144, rng.randrange(2048)])
        body = rng.randbytes(length)
        if i % 2:  # get past the magic and version checks
            body = (b"KILNARC\0" + struct.pack("<I", 1) + body[12:])[: max(length, 12)]
        assert _attempt(path, body) is not None


def test_garbage_tables_with_valid_checksum(tmp_path: Path) -> None:
    """Random tables under a correct header checksum reach the structural checks."""
    rng = random.Random(99)
    path = tmp_path / "c.kiln"
    opened = 0
    for _ in range(400):
        count = rng.randrange(5)
        hlen = 32 + 80 * count + 32
        size = hlen + rng.choice([0, rng.randrange(512)])
        rows = b""
        for _ in range(count):
            name = rng.choice([b"a", b"b", b"", b"\xff", b"n\0m", rng.randbytes(32)])
            off = rng.choice([0, hlen, -(-hlen // 64) * 64, rng.randrange(size + 64), 1 << 63])
            length = rng.choice([0, 1, 64, rng.randrange(size + 1), (1 << 64) - 1])
            rows += struct.pack("<32sQQ32s", name, off, length, rng.randbytes(32))
        file_len = rng.choice([size] * 6 + [size + 1, max(0, size - 1), rng.randrange(1 << 64)])
        head = struct.pack("<8sIIIIQ", b"KILNARC\0", 1, 0, count, hlen, file_len) + rows
        body = head + hashlib.sha256(head).digest()
        body += bytes(max(0, size - len(body)))
        path.write_bytes(body)
        try:
            with ArchiveReader(path) as reader:
                for section in reader.names:
                    bytes(reader.section(section))
                opened += 1
        except ArchiveError as err:
            assert str(err)
    assert opened < 400  # almost every crafted table is rejected (an empty one is valid)


def test_json_mutations() -> None:
    rng = random.Random(5)
    doc = dump_json({"graphs": [{"id": i, "w": i / 3, "k": "é" * i} for i in range(5)]})
    for _ in range(1000):
        data = bytearray(doc)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos:]
            else:
                data[pos:pos] = rng.choice([b"[", b"{", b'"', b"\\", b"1e999", b",", b"NaN"])
            if not data:
                break
        try:
            assert isinstance(load_json(bytes(data), "fuzz"), dict)
        except ArchiveCorrupt as err:
            assert "section 'fuzz'" in str(err)
