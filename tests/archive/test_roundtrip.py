"""Archive container: behaviour (round trip, layout, zero-copy) and lifetime (close, atomic write)."""

from __future__ import annotations

import array
import gc
import hashlib
import mmap
import os
import random
import struct
from pathlib import Path

import pytest
from kiln.archive import (
    FORMAT_VERSION,
    MAGIC,
    SECTION_ALIGNMENT,
    ArchiveReader,
    dump_json,
    load_json,
    write_archive,
)
from kiln.errors import ArchiveError


def _sections() -> dict[str, bytes]:
    rng = random.Random(1234)
    return {
        "manifest": dump_json({"graphs": [1, 2, 3], "name": "décode"}),
        "empty": b"",
        "big": rng.randbytes(3 * 1024 * 1024 + 17),
        "one": b"\x01",
        "exactly-64": rng.randbytes(64),
        "x" * 32: b"name of exactly 32 bytes",
    }


def _table(path: Path) -> list[tuple[str, int, int, bytes]]:
    """Parse the section table by the documented layout (independently of the reader)."""
    data = path.read_bytes()
    magic, version, flags, count, hlen, file_len = struct.unpack_from("<8sIIIIQ", data, 0)
    assert (magic, version, flags) == (MAGIC, FORMAT_VERSION, 0)
    assert hlen == 32 + 80 * count + 32
    assert file_len == len(data)
    assert hashlib.sha256(data[: hlen - 32]).digest() == data[hlen - 32 : hlen]
    rows = []
    for i in range(count):
        name, off, length, digest = struct.unpack_from("<32sQQ32s", data, 32 + 80 * i)
        rows.append((name.rstrip(b"\0").decode(), off, length, digest))
    return rows


# --- behaviour ---------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    sections = _sections()
    written = write_archive(path, sections)
    assert written == path.stat().st_size
    with ArchiveReader(path) as reader:
        assert reader.names == tuple(sections)
        assert list(reader) == list(sections)
        assert len(reader) == len(sections)
        assert reader.file_size == written
        for name, data in sections.items():
            assert name in reader
            assert reader.section_size(name) == len(data)
            assert bytes(reader.section(name)) == data
            assert reader.section_digest(name) == hashlib.sha256(data).digest()
            reader.verify_section(name)
        assert "absent" not in reader
        assert load_json(reader.section("manifest"), "manifest")["name"] == "décode"


def test_layout_is_canonical_and_aligned(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    sections = _sections()
    write_archive(path, sections)
    rows = _table(path)
    assert [r[0] for r in rows] == list(sections)
    data = path.read_bytes()
    pos = 32 + 80 * len(sections) + 32
    for name, off, length, digest in rows:
        assert off % SECTION_ALIGNMENT == 0
        assert off == -(-pos // 64) * 64
        assert data[pos:off] == bytes(off - pos)
        assert data[off : off + length] == sections[name]
        assert digest == hashlib.sha256(sections[name]).digest()
        pos = off + length
    assert pos == len(data)


def test_views_are_zero_copy_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, _sections())
    with ArchiveReader(path) as reader:
        view = reader.section("big")
        assert isinstance(view.obj, mmap.mmap)
        assert view.readonly
        assert view.format == "B" and view.ndim == 1
        with pytest.raises(TypeError):
            view[0] = 0
        view.release()


def test_empty_archive(tmp_path: Path) -> None:
    path = tmp_path / "empty.kiln"
    assert write_archive(path, {}) == 64
    with ArchiveReader(path) as reader:
        assert reader.names == ()
        assert reader.file_size == 64


def test_trailing_empty_sections(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    # header+table 304 bytes; "a" at 320..323; empty "b" and "c" both at align64(323) = 384
    assert write_archive(path, {"a": b"abc", "b": b"", "c": b""}) == 384
    assert [row[1:3] for row in _table(path)] == [(320, 3), (384, 0), (384, 0)]
    with ArchiveReader(path) as reader:
        assert [bytes(reader.section(n)) for n in reader.names] == [b"abc", b"", b""]


def test_buffer_types(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    ints = array.array("I", [1, 2, 3, 0xDEADBEEF])
    sections = {
        "bytearray": bytearray(b"abc"),
        "memoryview": memoryview(b"0123456789")[2:7],
        "array": ints,
    }
    write_archive(path, sections)  # type: ignore[arg-type]
    with ArchiveReader(path) as reader:
        assert bytes(reader.section("bytearray")) == b"abc"
        assert bytes(reader.section("memoryview")) == b"23456"
        assert bytes(reader.section("array")) == ints.tobytes()


def test_verify_false_defers_hashing(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, _sections())
    with ArchiveReader(path, verify=False) as reader:
        reader.verify_section("big")
        reader.verify()


def test_json_canonical() -> None:
    a = dump_json({"b": 1, "a": [1.5, None, True, "é"], "c": {"y": 0, "x": -1}})
    b = dump_json(
        dict(reversed(list({"b": 1, "a": [1.5, None, True, "é"], "c": {"x": -1, "y": 0}}.items())))
    )
    assert a == b == '{"a":[1.5,null,true,"é"],"b":1,"c":{"x":-1,"y":0}}'.encode()
    assert load_json(a, "s") == {"a": [1.5, None, True, "é"], "b": 1, "c": {"x": -1, "y": 0}}


@pytest.mark.parametrize("obj", [{"x": float("nan")}, {"x": float("inf")}, {"x": set()}, [1], "s"])
def test_json_dump_rejects(obj: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        dump_json(obj)  # type: ignore[arg-type]


def test_json_dump_rejects_what_load_refuses() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(64):
        child: dict[str, object] = {}
        node["k"] = child
        node = child
    with pytest.raises(ValueError, match="nesting"):
        dump_json(deep)
    assert load_json(dump_json(deep["k"]), "s") == deep["k"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", ValueError),
        ("x" * 33, ValueError),
        ("é" * 17, ValueError),
        ("a\0b", ValueError),
        ("\udc80", ValueError),
        (7, TypeError),
    ],
)
def test_writer_rejects_bad_names(tmp_path: Path, name: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        write_archive(tmp_path / "a.kiln", {name: b"x"})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


# --- lifetime ----------------------------------------------------------------------------


def test_close_with_outstanding_views(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    sections = _sections()
    write_archive(path, sections)
    reader = ArchiveReader(path)
    view = reader.section("big")
    part = view[100:200]
    reader.close()
    reader.close()  # idempotent
    assert reader.closed
    # The mapping stays alive while views exist: reading them is still safe.
    assert bytes(view) == sections["big"]
    assert bytes(part) == sections["big"][100:200]
    with pytest.raises(ArchiveError, match="closed"):
        reader.section("big")
    with pytest.raises(ArchiveError, match="closed"):
        reader.verify_section("big")
    assert reader.section_size("big") == len(sections["big"])  # table stays available
    del view, part
    gc.collect()


def test_context_manager_closes(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, {"s": b"data"})
    with ArchiveReader(path) as reader:
        assert not reader.closed
    assert reader.closed
    assert "closed" in repr(reader)


def test_replace_keeps_open_reader_on_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, {"s": b"old"})
    with ArchiveReader(path) as old:
        write_archive(path, {"s": b"new", "t": b""})
        assert bytes(old.section("s")) == b"old"
        with ArchiveReader(path) as new:
            assert bytes(new.section("s")) == b"new"
            assert new.names == ("s", "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.kiln"]


class _RaisingBuffer:
    """A section object whose buffer raises (``__buffer__`` is honoured from Python 3.12;
    before that the object is simply not a buffer, which fails at the same point)."""

    def __buffer__(self, flags: int) -> memoryview:
        raise RuntimeError("buffer exploded")


@pytest.mark.parametrize("position", ["first", "last"])
def test_failing_write_leaves_no_temporary_and_keeps_old(tmp_path: Path, position: str) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, {"s": b"previous"})
    before = path.read_bytes()
    bad: dict[str, object] = {"good": b"x" * 1000, "bad": _RaisingBuffer()}
    if position == "first":
        bad = dict(reversed(list(bad.items())))
    with pytest.raises((RuntimeError, TypeError)):
        write_archive(path, bad)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.kiln"]
    assert path.read_bytes() == before


def test_failing_fsync_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, {"s": b"previous"})
    before = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        write_archive(path, {"s": b"new" * 100_000})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.kiln"]
    assert path.read_bytes() == before


def test_failing_write_without_existing_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    with pytest.raises((RuntimeError, TypeError)):
        write_archive(path, {"a": b"1", "b": _RaisingBuffer()})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_written_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    write_archive(path, {"s": b""})
    assert path.stat().st_mode & 0o777 == 0o644
