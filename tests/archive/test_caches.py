"""Engine caches in an archive: packing, and every refusal of a hostile or mismatched set.

Each refusal test builds an archive that passes every check but the one it names, so that
removing that check makes the test fail."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from kiln.archive import ArchiveReader, dump_json, write_archive
from kiln.archive.caches import (
    MANIFEST_SECTION,
    CacheKeyMismatch,
    CacheLimits,
    CachesTooLarge,
    check_key,
    install,
    pack,
    read_manifest,
    section_name,
)
from kiln.errors import ArchiveCorrupt

KEY = {"kiln_version": "0.1", "cache.triton_version": "3.5.0", "gpu_name": "H100"}


def cache_tree(root: Path) -> Path:
    (root / "triton" / "ab").mkdir(parents=True)
    (root / "triton" / "ab" / "k.cubin").write_bytes(b"cubin")
    (root / "triton" / "ab" / "k.json.lock").write_text("")
    (root / "triton" / "ab" / ".k.json.123.tmp").write_text("partial")
    (root / "inductor" / "fx").mkdir(parents=True)
    (root / "inductor" / "fx" / "graph").write_bytes(b"cubin")  # same content: one section
    run = root / "inductor" / "fx" / "run.sh"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    return root


def archive_of(tmp_path: Path, sections: dict) -> ArchiveReader:
    path = tmp_path / "graphs.kiln"
    write_archive(path, sections)
    return ArchiveReader(path)


def test_pack_then_install_gives_the_same_files(tmp_path: Path) -> None:
    packed = pack(cache_tree(tmp_path / "save"), KEY)
    assert packed.entries == 3 and len(packed.sections) == 3  # two contents, one manifest
    with archive_of(tmp_path, packed.sections) as reader:
        manifest = read_manifest(reader)
        assert manifest is not None and manifest.key == KEY
        installed = install(reader, manifest, tmp_path / "load")
    assert installed.by_kind == {"inductor": 2, "triton": 1}
    assert (tmp_path / "load" / "triton" / "ab" / "k.cubin").read_bytes() == b"cubin"
    assert not (tmp_path / "load" / "triton" / "ab" / "k.json.lock").exists()
    assert os.stat(tmp_path / "load" / "inductor" / "fx" / "run.sh").st_mode & 0o777 == 0o755


def test_pack_never_follows_a_symbolic_link_out_of_the_directory(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_bytes(b"private")
    root = cache_tree(tmp_path / "save")
    (root / "triton" / "link").symlink_to(secret / "key")
    (root / "linkdir").symlink_to(secret)
    packed = pack(root, KEY)
    assert packed.manifest is not None
    assert {e.path for e in packed.manifest.entries}.isdisjoint({"triton/link", "linkdir/key"})
    assert b"private" not in packed.sections.values()
    assert {p for p, _ in packed.skipped} == {"linkdir", "triton/link"}


def test_pack_refuses_a_directory_over_the_limits(tmp_path: Path) -> None:
    root = cache_tree(tmp_path / "save")
    with pytest.raises(CachesTooLarge):
        pack(root, KEY, CacheLimits(max_total_bytes=8))
    with pytest.raises(CachesTooLarge):
        pack(root, KEY, CacheLimits(max_file_bytes=4))


def test_a_triton_group_file_is_moved_to_the_new_directory(tmp_path: Path) -> None:
    root = tmp_path / "save"
    (root / "triton" / "ab").mkdir(parents=True)
    (root / "triton" / "ab" / "k.cubin").write_bytes(b"cubin")
    group = {"child_paths": {"k.cubin": str(root / "triton" / "ab" / "k.cubin")}}
    (root / "triton" / "ab" / "__grp__k.json").write_text(json.dumps(group))
    with archive_of(tmp_path, pack(root, KEY).sections) as reader:
        manifest = read_manifest(reader)
        assert manifest is not None
        install(reader, manifest, tmp_path / "load")
    moved = json.loads((tmp_path / "load" / "triton" / "ab" / "__grp__k.json").read_text())
    assert moved["child_paths"]["k.cubin"] == str(tmp_path / "load" / "triton" / "ab" / "k.cubin")


# --- refusals -----------------------------------------------------------------------------


def forged(tmp_path: Path, entries: list[dict], root: str = "/save", **extra) -> ArchiveReader:
    """An archive whose manifest lists ``entries`` (content given as ``data``)."""
    sections: dict[str, bytes] = {}
    listed = []
    for entry in entries:
        data = entry.pop("data", b"x")
        digest = entry.pop("sha256", hashlib.sha256(data).hexdigest())
        sections.setdefault(section_name(hashlib.sha256(data).hexdigest()), data)
        listed.append({"sha256": digest, "size": len(data), "mode": 0o644, **entry})
    doc = {"version": 1, "root": root, "key": KEY, "entries": listed, **extra}
    sections[MANIFEST_SECTION] = dump_json(doc)
    return archive_of(tmp_path, sections)


def refused(tmp_path: Path, reader: ArchiveReader, match: str, **limits: int) -> None:
    with reader, pytest.raises(ArchiveCorrupt, match=match):
        manifest = read_manifest(reader, CacheLimits(**limits))
        assert manifest is not None
        install(reader, manifest, tmp_path / "load")


def test_a_path_with_dotdot_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": "triton/../../escape"}]), "'\\.\\.' component")
    assert not (tmp_path / "escape").exists()


def test_an_absolute_path_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": str(tmp_path / "abs")}]), "is absolute")


def test_a_path_that_is_a_file_and_a_directory_is_refused(tmp_path: Path) -> None:
    entries = [{"path": "a", "data": b"1"}, {"path": "a/b", "data": b"2"}]
    refused(tmp_path, forged(tmp_path, entries), "both a file and a directory")


def test_a_path_listed_twice_is_refused(tmp_path: Path) -> None:
    entries = [{"path": "a", "data": b"1"}, {"path": "a", "data": b"2"}]
    refused(tmp_path, forged(tmp_path, entries), "appears twice")


def test_a_path_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": "a/b/c/d"}]), "deeper than", max_depth=3)


def test_an_entry_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    reader = forged(tmp_path, [{"path": "a", "data": b"12345"}])
    refused(tmp_path, reader, "at most 4", max_file_bytes=4)


def test_entries_over_the_total_limit_are_refused(tmp_path: Path) -> None:
    entries = [{"path": "a", "data": b"123"}, {"path": "b", "data": b"456"}]
    refused(tmp_path, forged(tmp_path, entries), "exceed 5 bytes", max_total_bytes=5)


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    entries = [{"path": "a", "data": b"1"}, {"path": "b", "data": b"2"}]
    refused(tmp_path, forged(tmp_path, entries), "2 entries, at most 1", max_entries=1)


def test_an_entry_whose_size_differs_from_its_section_is_refused(tmp_path: Path) -> None:
    reader = forged(tmp_path, [{"path": "a", "data": b"123"}])
    doc = json.loads(bytes(reader.section(MANIFEST_SECTION)))
    doc["entries"][0]["size"] = 2
    sections = {n: bytes(reader.section(n)) for n in reader.names}
    reader.close()
    sections[MANIFEST_SECTION] = dump_json(doc)
    refused(tmp_path, archive_of(tmp_path, sections), "holds 3")


def test_an_entry_whose_digest_differs_from_its_section_is_refused(tmp_path: Path) -> None:
    # The section name matches the digest's first 26 digits, the rest differs.
    real = hashlib.sha256(b"123").hexdigest()
    other = real[:26] + ("0" if real[26] != "0" else "1") + real[27:]
    reader = forged(tmp_path, [{"path": "a", "data": b"123", "sha256": other}])
    refused(tmp_path, reader, "another SHA-256")


def test_a_missing_section_is_refused(tmp_path: Path) -> None:
    reader = forged(tmp_path, [{"path": "a", "sha256": "0" * 64}])
    refused(tmp_path, reader, "missing section")


def test_a_tampered_section_is_refused_by_its_checksum(tmp_path: Path) -> None:
    reader = forged(tmp_path, [{"path": "a", "data": b"cubin"}])
    path = reader.path
    reader.close()
    raw = bytearray(Path(path).read_bytes())
    at = raw.rfind(b"cubin")
    raw[at : at + 5] = b"CUBIN"
    Path(path).write_bytes(bytes(raw))
    refused(tmp_path, ArchiveReader(path, verify=False), "checksum mismatch")
    assert not (tmp_path / "load" / "a").exists()


def test_a_file_mode_other_than_644_or_755_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": "a", "mode": 0o4755}]), "mode")


def test_a_relative_root_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": "a"}], root="save"), "not an absolute path")


def test_a_manifest_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, forged(tmp_path, [{"path": "a"}], run="rm -rf /"), "unknown field")


def test_a_triton_group_member_outside_the_directory_is_refused(tmp_path: Path) -> None:
    group = json.dumps({"child_paths": {"k.cubin": "/etc/passwd"}}).encode()
    reader = forged(tmp_path, [{"path": "triton/__grp__k.json", "data": group}])
    refused(tmp_path, reader, "outside the cache directory")


def test_a_triton_group_member_escaping_with_dotdot_is_refused(tmp_path: Path) -> None:
    group = json.dumps({"child_paths": {"k.cubin": "/save/../etc/passwd"}}).encode()
    reader = forged(tmp_path, [{"path": "triton/__grp__k.json", "data": group}])
    refused(tmp_path, reader, "'\\.\\.' component")


def test_entries_built_with_another_triton_are_refused_naming_the_field(tmp_path: Path) -> None:
    with forged(tmp_path, [{"path": "a"}]) as reader:
        manifest = read_manifest(reader)
    assert manifest is not None
    check_key(manifest, {"kiln_version": "0.1", "cache.triton_version": "3.5.0"})
    with pytest.raises(CacheKeyMismatch, match="cache.triton_version = '3.5.0'.*'3.6.0'"):
        check_key(manifest, {"cache.triton_version": "3.6.0"})
    with pytest.raises(CacheKeyMismatch, match="vllm.version"):
        check_key(manifest, {"vllm.version": "0.24.0"})  # a field the entries do not record
