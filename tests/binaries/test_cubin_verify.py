"""kiln.binaries.cubin_verify: a compacted cubin is read back and compared with its original by name;
each way a renumbering or rewriting slip could change what a kept function runs is named.
SAVE stores a cubin whole when its compacted form fails this check, even when the driver
reports the same attributes and parameter layout for every launched kernel (which such a
slip leaves unchanged)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from kiln.binaries import pruned_binaries
from kiln.binaries.cubin_compact import compact_cubin
from kiln.binaries.cubin_prune import PrunedCubin
from kiln.binaries.cubin_verify import compacted_code_difference

from tests.binaries.cubins import (
    EXTERNS,
    PARAM_CBANK,
    REGCOUNT,
    ElfSymbol,
    info_attributes,
    read_elf,
    read_sections,
)
from tests.binaries.test_cubin_compact import cubin

SECTION_HEADER = 64


@pytest.mark.parametrize(
    "kernels",
    [{"launched"}, {"called"}, {"relocated"}, {"unused"}, {"launched", "unused_too"}],
)
def test_a_correct_compaction_keeps_every_kept_function_identical(kernels: set[str]) -> None:
    original = cubin()
    assert compacted_code_difference(original, compact_cubin(original, kernels).image) is None


def compacted() -> bytes:
    return compact_cubin(cubin(), {"launched"}).image


def symbol(symbols: list[ElfSymbol], name: str) -> int:
    return next(k for k, s in enumerate(symbols) if s.name == name and s.kind == 2)


def section_symbol(image: bytes, section: str) -> int:
    sections, symbols = read_elf(image)
    index = next(i for i, s in enumerate(sections) if s.name == section)
    return next(k for k, s in enumerate(symbols) if s.kind == 3 and s.section == index)


def repoint_relocation(image: bytes, section: str, entry: int, target: int) -> bytes:
    off, _size, data = read_sections(image)[section]
    (info,) = struct.unpack_from("<Q", data, 24 * entry + 8)
    out = bytearray(image)
    struct.pack_into("<Q", out, off + 24 * entry + 8, (target << 32) | (info & 0xFFFFFFFF))
    return bytes(out)


def patch_info_symbol(image: bytes, section: str, attr: int, target: int) -> bytes:
    """The first symbol word of `section`'s first `attr` entry set to `target`."""
    off, _size, data = read_sections(image)[section]
    p = 0
    for a, payload in info_attributes(data):
        if a == attr:
            out = bytearray(image)
            struct.pack_into("<I", out, off + p + 4, target)
            return bytes(out)
        p += 4 + len(payload)
    raise AssertionError(f"{section} has no attribute 0x{attr:x}")


def flip_byte(image: bytes, section: str, at: int) -> bytes:
    off, _size, _data = read_sections(image)[section]
    out = bytearray(image)
    out[off + at] ^= 0x01
    return bytes(out)


def text_naming(image: bytes, section: str, target: int) -> bytes:
    sections, _symbols = read_elf(image)
    (shoff,) = struct.unpack_from("<Q", image, 40)
    i = next(k for k, s in enumerate(sections) if s.name == section)
    out = bytearray(image)
    struct.pack_into(
        "<I", out, shoff + SECTION_HEADER * i + 44, sections[i].info & ~0xFFFFFF | target
    )
    return bytes(out)


def _called(image: bytes) -> int:
    return symbol(read_elf(image)[1], "called")


BROKEN: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "code": (
        lambda im: flip_byte(im, ".text.launched", 0x20),
        ".text.launched: the code differs from the original's at byte 32",
    ),
    "call-relocation": (
        lambda im: repoint_relocation(im, ".rela.text.launched", 0, _called(im)),
        (
            "relocation 0 of .rela.text.launched differs from the original's: "
            "(32, 2, 0, 'called') against (32, 2, 0, 'relocated')"
        ),
    ),
    "data-relocation": (
        lambda im: repoint_relocation(im, ".rela.nv.constant4", 0, _called(im)),
        "relocation 0 of .rela.nv.constant4 differs",
    ),
    "constant-bank-symbol": (
        lambda im: patch_info_symbol(
            im, ".nv.info.launched", PARAM_CBANK, section_symbol(im, ".nv.constant0.called")
        ),
        "entry 1 of .nv.info.launched differs from the original's",
    ),
    "externs": (
        lambda im: patch_info_symbol(
            im, ".nv.info.launched", EXTERNS, symbol(read_elf(im)[1], "relocated")
        ),
        "entry 2 of .nv.info.launched differs",
    ),
    "shared-info": (
        lambda im: patch_info_symbol(im, ".nv.info", REGCOUNT, _called(im)),
        "entry 0 of .nv.info differs",
    ),
    "constant-bank-bytes": (
        lambda im: flip_byte(im, ".nv.constant0.launched", 0),
        "section .nv.constant0.launched differs",
    ),
    "text-symbol": (
        lambda im: text_naming(im, ".text.launched", _called(im)),
        ".text.launched: names another function symbol",
    ),
}


@pytest.mark.parametrize("slip", sorted(BROKEN))
def test_a_rewriting_slip_in_kept_code_is_named(slip: str) -> None:
    original = cubin()
    breaking, why = BROKEN[slip]
    assert why in (compacted_code_difference(original, breaking(compacted())) or "")


def test_a_callgraph_edge_to_another_kept_function_is_named() -> None:
    original = cubin()
    image = compacted()
    off, _size, data = read_sections(image)[".nv.callgraph"]
    edges = list(struct.iter_unpack("<Ii", data))
    e = next(n for n, (caller, _callee) in enumerate(edges) if caller)
    out = bytearray(image)
    struct.pack_into("<i", out, off + 8 * e + 4, symbol(read_elf(image)[1], "relocated"))
    assert ".nv.callgraph differs" in (compacted_code_difference(original, bytes(out)) or "")


def test_an_image_that_cannot_be_read_back_is_a_difference() -> None:
    assert "cannot be read back" in (compacted_code_difference(cubin(), compacted()[:200]) or "")


def test_save_stores_whole_a_cubin_whose_compaction_renumbered_a_relocation_wrongly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The driver comparison sees attributes and parameter layouts only, which a call
    # relocation pointing at another kept function leaves unchanged: it reports no
    # difference here, as it would on a GPU.
    def broken_compaction(image: bytes, kernels) -> PrunedCubin:
        good = compact_cubin(image, kernels)
        return PrunedCubin(
            repoint_relocation(good.image, ".rela.text.launched", 0, _called(good.image)),
            good.kept,
            good.stubbed,
            good.removed,
        )

    driver = SimpleNamespace(compare_kernel_images=lambda original, candidate, kernels: None)
    monkeypatch.setattr(pruned_binaries, "native", lambda: driver)
    monkeypatch.setattr(pruned_binaries, "compact_cubin", broken_compaction)
    monkeypatch.setattr(pruned_binaries, "prune_cubin", lambda *a: pytest.fail("stored whole"))
    with caplog.at_level(logging.DEBUG, "kiln.binaries.pruned_binaries"):
        assert pruned_binaries.verified_pruned_cubin(cubin(), {"launched"}) is None
    assert "stored whole: its compacted form changes kept code (relocation 0" in caplog.text


def test_save_stores_whole_a_cubin_whose_compaction_altered_kept_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_compaction(image: bytes, kernels) -> PrunedCubin:
        good = compact_cubin(image, kernels)
        return PrunedCubin(flip_byte(good.image, ".text.launched", 0x40), 4, 0, 2)

    driver = SimpleNamespace(compare_kernel_images=lambda original, candidate, kernels: None)
    monkeypatch.setattr(pruned_binaries, "native", lambda: driver)
    monkeypatch.setattr(pruned_binaries, "compact_cubin", broken_compaction)
    monkeypatch.setattr(pruned_binaries, "prune_cubin", lambda *a: pytest.fail("stored whole"))
    assert pruned_binaries.verified_pruned_cubin(cubin(), {"launched"}) is None


def test_save_stores_a_correct_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = SimpleNamespace(compare_kernel_images=lambda original, candidate, kernels: None)
    monkeypatch.setattr(pruned_binaries, "native", lambda: driver)
    original = cubin()
    stored = pruned_binaries.verified_pruned_cubin(original, {"launched"})
    assert stored is not None and stored.image == compact_cubin(original, {"launched"}).image
