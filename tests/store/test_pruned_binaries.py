"""SAVE stores a cubin pruned to the kernels its graphs launch only when the driver sees
those kernels unchanged (kiln.binaries.pruned_binaries); the manifest keeps the loaded image's
identity so LOAD still finds the application's own copy."""

from __future__ import annotations

import hashlib
import logging
from types import SimpleNamespace

import pytest
from kiln.archive.manifest import BinaryEntry, Manifest
from kiln.binaries import pruned_binaries
from kiln.binaries.cubin_prune import PrunedCubin
from kiln.errors import ArchiveCorrupt, KilnError
from kiln.graphs import store

from tests.native._restore_fixture import close_fake, native, open_fake_region

DEVICE = SimpleNamespace(device=0)


def fake_image(entries: dict[str, str], *attrs: str, fail: bool = False) -> bytes:
    """A fake-driver image: entries name -> parameter sizes; attrs "k0 4=40" lines."""
    lines = [f"//fake entry {e} {sizes}" for e, sizes in entries.items()]
    lines += [f"//fake attr {a}" for a in attrs]
    if fail:
        lines.append("//fake fail-load")
    return ("\n".join(lines) + "\n").encode() + b"\0"


ORIGINAL = fake_image({"k0": "8,4", "k1": "8"}, "k0 4=40")


@pytest.fixture
def fake_driver():
    open_fake_region(strict_context=False)
    yield
    close_fake()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_identical_kernels_compare_equal(fake_driver) -> None:
    same = fake_image({"k0": "8,4"}, "k0 4=40")
    assert native.compare_kernel_images(ORIGINAL, same, ["k0"]) is None


@pytest.mark.parametrize(
    ("candidate", "why"),
    [
        (fake_image({"k0": "8,4"}, "k0 4=38"), "kernel k0: attribute 4 is 40 in the original, 38"),
        (fake_image({"k0": "8"}, "k0 4=40"), "kernel k0: 2 parameters in the original, 1"),
        (fake_image({"k1": "8"}), "kernel k0: cuKernelGetFunction"),
        (fake_image({"k0": "8,4"}, fail=True), "refuses the candidate"),
    ],
)
def test_what_differs_first_is_named(fake_driver, candidate: bytes, why: str) -> None:
    assert why in native.compare_kernel_images(ORIGINAL, candidate, ["k0"])


def test_an_original_the_driver_refuses_raises(fake_driver) -> None:
    with pytest.raises(KilnError, match="original image"):
        native.compare_kernel_images(fake_image({"k0": "8"}, fail=True), ORIGINAL, ["k0"])


def code_unchanged(monkeypatch) -> None:
    """The fake driver's images are not ELF cubins: the structural check of compacted code
    (kiln.binaries.cubin_verify, tested in tests/binaries/test_cubin_verify.py) passes them here, so
    these tests see the driver comparison alone."""
    monkeypatch.setattr(pruned_binaries, "compacted_code_difference", lambda *a: None)


def with_candidate(monkeypatch, candidate: bytes) -> None:
    monkeypatch.setattr(
        pruned_binaries, "prune_cubin", lambda image, kernels: PrunedCubin(candidate, 1, 1)
    )


def test_a_pruned_cubin_the_driver_sees_unchanged_is_kept(fake_driver, monkeypatch) -> None:
    candidate = fake_image({"k0": "8,4"}, "k0 4=40")
    with_candidate(monkeypatch, candidate)
    assert pruned_binaries.verified_pruned_cubin(ORIGINAL, {"k0"}) == PrunedCubin(candidate, 1, 1)


def test_a_pruned_cubin_that_differs_is_dropped_and_logged(
    fake_driver, monkeypatch, caplog
) -> None:
    with_candidate(monkeypatch, fake_image({"k0": "8,4"}, "k0 4=38"))
    with caplog.at_level(logging.WARNING, "kiln.binaries.pruned_binaries"):
        assert pruned_binaries.verified_pruned_cubin(ORIGINAL, {"k0"}) is None
    assert "attribute 4 is 40 in the original" in caplog.text


def test_the_compacted_form_is_preferred_when_the_driver_sees_it_unchanged(
    fake_driver, monkeypatch
) -> None:
    compacted = fake_image({"k0": "8,4"}, "k0 4=40")
    code_unchanged(monkeypatch)
    monkeypatch.setattr(
        pruned_binaries, "compact_cubin", lambda image, kernels: PrunedCubin(compacted, 1, 0, 1)
    )
    monkeypatch.setattr(pruned_binaries, "prune_cubin", lambda *a: pytest.fail("not needed"))
    assert pruned_binaries.verified_pruned_cubin(ORIGINAL, {"k0"}).image == compacted


def test_a_compacted_form_that_differs_falls_back_to_the_stubbed_one(
    fake_driver, monkeypatch, caplog
) -> None:
    code_unchanged(monkeypatch)
    monkeypatch.setattr(
        pruned_binaries,
        "compact_cubin",
        lambda image, kernels: PrunedCubin(fake_image({"k0": "8"}, "k0 4=40"), 1, 0, 1),
    )
    stubbed = fake_image({"k0": "8,4"}, "k0 4=40")
    with_candidate(monkeypatch, stubbed)
    with caplog.at_level(logging.WARNING, "kiln.binaries.pruned_binaries"):
        assert pruned_binaries.verified_pruned_cubin(ORIGINAL, {"k0"}).image == stubbed
    assert "not compacted: its compacted form differs (kernel k0: 2 parameters" in caplog.text


def test_save_stores_the_pruned_cubin_and_remembers_the_loaded_one(
    fake_driver, monkeypatch
) -> None:
    candidate = fake_image({"k0": "8,4"}, "k0 4=40")
    with_candidate(monkeypatch, candidate)
    entry, data = store._binary_entry(
        "b0", ORIGINAL, sha(ORIGINAL), "cubin", DEVICE, kernels={"k0"}
    )
    assert data == candidate
    assert entry == BinaryEntry(
        "b0", sha(candidate), len(candidate), "cubin", sha(ORIGINAL), len(ORIGINAL), len(ORIGINAL)
    )
    assert entry.loaded_as == (sha(ORIGINAL), len(ORIGINAL))


def test_save_keeps_a_cubin_whole_when_nothing_is_launched_from_it(monkeypatch) -> None:
    monkeypatch.setattr(
        pruned_binaries, "prune_cubin", lambda *a: pytest.fail("nothing to prune for")
    )
    entry, data = store._binary_entry("b0", ORIGINAL, sha(ORIGINAL), "cubin", DEVICE)
    assert (entry, data) == (BinaryEntry("b0", sha(ORIGINAL), len(ORIGINAL), "cubin"), ORIGINAL)


def test_pruning_can_be_switched_off() -> None:
    assert pruned_binaries.pruning_enabled({})
    assert not pruned_binaries.pruning_enabled({pruned_binaries.PRUNE_ENV: "0"})
    with pytest.raises(KilnError, match=pruned_binaries.PRUNE_ENV):
        pruned_binaries.pruning_enabled({pruned_binaries.PRUNE_ENV: "no"})


def _manifest_json(binary: dict) -> dict:
    return {"device": 0, "trajectory": [], "window": [0, 0], "binaries": [binary], "graphs": []}


def test_the_unpruned_size_round_trips_through_the_manifest() -> None:
    e = BinaryEntry("b0", sha(b"p"), 10, "cubin", sha(ORIGINAL), len(ORIGINAL), 100)
    assert Manifest.from_json(_manifest_json(e.to_json()), {"b0"}).binaries == [e]


@pytest.mark.parametrize(
    "extra",
    [
        {"unpruned_size": 10},  # not larger than what is stored
        {"unpruned_size": 5},
    ],
)
def test_an_impossible_unpruned_size_is_refused(extra: dict) -> None:
    binary = {**BinaryEntry("b0", sha(b"p"), 10, "cubin", sha(ORIGINAL), 50).to_json(), **extra}
    with pytest.raises(ArchiveCorrupt, match="unpruned size"):
        Manifest.from_json(_manifest_json(binary), {"b0"})


def test_an_unpruned_size_without_the_loaded_image_is_refused() -> None:
    binary = {**BinaryEntry("b0", sha(b"p"), 10, "cubin").to_json(), "unpruned_size": 100}
    with pytest.raises(ArchiveCorrupt, match="unpruned size"):
        Manifest.from_json(_manifest_json(binary), {"b0"})
