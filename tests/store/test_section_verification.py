"""kiln.archive.section_verification with store.load_kernels / start_graphs on the fake driver and a
real archive file: the restore starts before the archive is hashed, each section is read
once its own hash matched, and a corrupted section fails the restore naming it."""

from __future__ import annotations

import gc

import pytest
from kiln.archive import ArchiveReader, write_archive
from kiln.archive.manifest import MANIFEST
from kiln.archive.section_verification import restore_order, verify_in_background
from kiln.errors import ArchiveCorrupt
from kiln.graphs import store
from kiln.graphs.restored import RestoredSet
from kiln.native import native

from tests.native._restore_fixture import (
    DEV,
    archive,
    close_fake,
    open_fake_region,
    sections_and_manifest,
)


@pytest.fixture
def saved(tmp_path):
    """A fake-driver archive on disk and its manifest; `corrupt(name)` flips a byte of a
    section's data (the section table, itself checksummed, still opens)."""
    buffer = open_fake_region(strict_context=True)
    arc = archive(buffer)
    sections, manifest = sections_and_manifest(arc)
    path = tmp_path / "a.kiln"
    write_archive(path, {MANIFEST: b"{}", **sections})

    def corrupt(name: str) -> None:
        data = bytearray(path.read_bytes())
        at = data.find(sections[name])  # every section's bytes are distinct in this archive
        data[at + 1] ^= 0xFF
        path.write_bytes(bytes(data))

    try:
        yield path, manifest, corrupt
    finally:
        gc.collect()
        close_fake()


def _restore(path, manifest):
    reader = ArchiveReader(path, verify=False)
    restored = RestoredSet(reader, DEV)
    restored.verification = verify_in_background(reader, manifest)
    store.load_kernels(reader, manifest, restored, threads=2, resolve_threads=2)
    return restored, reader


def test_a_restore_reads_every_section_once_verified(saved) -> None:
    path, manifest, _ = saved
    restored, reader = _restore(path, manifest)
    try:
        assert restored.verification is not None
        store.start_graphs(reader, manifest, restored, dedicated=True, threads=2)
        restored.graph_set.wait_all(True)
        restored.verification.wait()
    finally:
        restored.close()


@pytest.mark.parametrize("section", ["b3", "g5"])
def test_a_corrupted_section_fails_the_restore_naming_it(saved, section: str) -> None:
    path, manifest, corrupt = saved
    corrupt(section)
    restored, reader = _restore(path, manifest)
    try:
        with pytest.raises(ArchiveCorrupt, match=f"section '{section}' checksum mismatch"):
            store.start_graphs(reader, manifest, restored, dedicated=True, threads=2)
            restored.graph_set.wait_all(False)
        with pytest.raises(ArchiveCorrupt, match=f"section '{section}' checksum mismatch"):
            restored.verification.wait()
    finally:
        restored.close()


def test_without_native_hashing_every_section_is_verified_at_once(saved, monkeypatch) -> None:
    path, manifest, corrupt = saved
    corrupt("b2")
    monkeypatch.setattr(native(), "sha256_available", lambda: False)
    with (
        ArchiveReader(path, verify=False) as reader,
        pytest.raises(ArchiveCorrupt, match="'b2' checksum mismatch"),
    ):
        verify_in_background(reader, manifest)


def test_restore_order_alternates_binaries_and_graphs(saved) -> None:
    _, manifest, _ = saved
    order = restore_order(manifest)
    assert order[:4] == ["b0", "g0", "b1", "g1"]
    assert sorted(order) == sorted([f"b{i}" for i in range(6)] + [f"g{i}" for i in range(8)])
