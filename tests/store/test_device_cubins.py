"""SAVE stores a fatbin's device cubin in its place (kiln.binaries.fatbin); the manifest remembers
the fatbin so that LOAD still finds the application's own loaded copy."""

from __future__ import annotations

import gc
import hashlib
from types import SimpleNamespace

import pytest
from kiln.archive.manifest import BinaryEntry, Manifest
from kiln.errors import ArchiveCorrupt
from kiln.graphs import store
from kiln_testing import testing

from tests.binaries.fatbins import KIND_ELF, elf, entry, fatbin
from tests.native._restore_fixture import close_fake, native, open_fake_region  # noqa: F401 (imported to skip without the extension)

FAT = fatbin(entry(KIND_ELF, 80, elf("sm80")), entry(KIND_ELF, 90, elf("sm90")))
CUBIN = elf("sm90")
DEVICE = SimpleNamespace(device=0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sm90(monkeypatch):
    monkeypatch.setattr(store, "device_sm", lambda device: 90)


def test_save_stores_the_device_cubin_and_remembers_the_fatbin(sm90) -> None:
    entry_, data = store._binary_entry("b0", FAT, sha(FAT), "fatbin", DEVICE)
    assert data == CUBIN
    assert entry_ == BinaryEntry("b0", sha(CUBIN), len(CUBIN), "cubin", sha(FAT), len(FAT))
    assert entry_.loaded_as == (sha(FAT), len(FAT))


def test_save_keeps_a_fatbin_without_a_cubin_for_the_device(monkeypatch) -> None:
    monkeypatch.setattr(store, "device_sm", lambda device: 100)
    entry_, data = store._binary_entry("b0", FAT, sha(FAT), "fatbin", DEVICE)
    assert data == FAT
    assert entry_ == BinaryEntry("b0", sha(FAT), len(FAT), "fatbin")
    assert entry_.loaded_as == (sha(FAT), len(FAT))


def test_save_stores_other_images_as_they_are(monkeypatch) -> None:
    monkeypatch.setattr(store, "device_sm", lambda device: pytest.fail("not a fatbin"))
    entry_, data = store._binary_entry("b0", CUBIN, sha(CUBIN), "cubin", DEVICE)
    assert (entry_, data) == (BinaryEntry("b0", sha(CUBIN), len(CUBIN), "cubin"), CUBIN)


def _manifest_json(binary: dict) -> dict:
    return {"device": 0, "trajectory": [], "window": [0, 0], "binaries": [binary], "graphs": []}


def test_the_source_fatbin_round_trips_through_the_manifest() -> None:
    e = BinaryEntry("b0", sha(CUBIN), len(CUBIN), "cubin", sha(FAT), len(FAT))
    m = Manifest(0, [], (0, 0), [e], [])
    assert Manifest.from_json(m.to_json(), {"b0"}).binaries == [e]
    plain = BinaryEntry("b0", sha(FAT), len(FAT), "fatbin")
    assert "source_sha256" not in plain.to_json()
    assert Manifest.from_json(_manifest_json(plain.to_json()), {"b0"}).binaries == [plain]


@pytest.mark.parametrize(
    "source",
    [
        {"source_sha256": "x" * 64, "source_size": 10},
        {"source_sha256": sha(FAT), "source_size": 0},
        {"source_sha256": sha(FAT)},
    ],
)
def test_a_bad_source_fatbin_in_the_manifest_is_refused(source: dict) -> None:
    binary = {**BinaryEntry("b0", sha(CUBIN), len(CUBIN), "cubin").to_json(), **source}
    with pytest.raises(ArchiveCorrupt, match="manifest"):
        Manifest.from_json(_manifest_json(binary), {"b0"})


def test_load_finds_the_applications_own_fatbin_for_a_stored_cubin() -> None:
    open_fake_region(strict_context=False)
    try:
        fat = fatbin(entry(KIND_ELF, 90, elf("own")))  # no other test records this one
        library = testing.load_library(fat)
        binary = testing.record_library(library, fat)
        cubin = elf("own")
        stored = BinaryEntry("b0", sha(cubin), len(cubin), "cubin", sha(fat), len(fat))
        unsourced = BinaryEntry("b1", sha(cubin), len(cubin), "cubin")
        assert store._app_copies([stored, unsourced]) == [binary, -1]
    finally:
        gc.collect()
        close_fake()
