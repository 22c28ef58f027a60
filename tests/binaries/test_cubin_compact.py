"""kiln.binaries.cubin_compact: unreached functions leave no section or symbol behind, every
reference to a section or symbol still names the same thing after renumbering, the image
stays a consistent ELF, and anything it could misread is refused (never a crash)."""

from __future__ import annotations

import struct

import pytest
from kiln.binaries.cubin_compact import compact_cubin
from kiln.binaries.cubin_prune import PruneRefused

from tests.binaries.cubins import (
    EXTERNS,
    FRAME_SIZE,
    PARAM_CBANK,
    REGCOUNT,
    ElfSection,
    ElfSymbol,
    Fn,
    build_cubin,
    info_attributes,
    info_entry,
    mangled,
    read_elf,
    read_sections,
    read_segments,
)

NAMES = ("launched", "called", "relocated", "pointed_to", "unused", "unused_too")
KEPT = ("launched", "called", "relocated", "pointed_to")


def cubin(**kw) -> bytes:
    return build_cubin(
        [Fn(n) for n in NAMES],
        calls=(("launched", "called"), ("unused", "called")),
        code_refs={"launched": ["relocated"], "unused": ["called"]},
        data_refs=("pointed_to",),
        externs={"launched": ["called"]},
        **kw,
    )


def by_name(sections: list[ElfSection]) -> dict[str, ElfSection]:
    return {s.name: s for s in sections}


def function_symbol(symbols: list[ElfSymbol], name: str) -> int:
    return next(k for k, s in enumerate(symbols) if s.name == name and s.kind == 2)


def test_unreached_functions_leave_no_section_or_symbol() -> None:
    original = cubin()
    result = compact_cubin(original, {"launched"})
    sections, symbols = read_elf(result.image)
    names = {s.name for s in sections}
    for gone in ("unused", "unused_too"):
        assert not [n for n in names if n.endswith(f".{gone}")], gone
        assert gone not in {s.name for s in symbols}
    before = read_sections(original)
    for kept in KEPT:
        for section in (f".text.{kept}", f".nv.constant0.{kept}"):
            assert by_name(sections)[section].data == before[section][2], section
    assert (result.kept, result.stubbed, result.removed) == (4, 0, 2)
    assert len(result.image) < len(original)


def relocation_targets(section: ElfSection, symbols: list[ElfSymbol]) -> list[str]:
    return [
        symbols[struct.unpack_from("<Q", section.data, off + 8)[0] >> 32].name
        for off in range(0, len(section.data), 24)
    ]


def test_every_reference_names_the_same_thing_after_renumbering() -> None:
    sections, symbols = read_elf(compact_cubin(cubin(), {"launched"}).image)
    named = by_name(sections)
    index = {s.name: i for i, s in enumerate(sections)}
    assert relocation_targets(named[".rela.text.launched"], symbols) == ["relocated"]
    assert relocation_targets(named[".rela.nv.constant4"], symbols) == ["pointed_to"]
    assert named[".rela.nv.constant4"].info == index[".nv.constant4"]
    edges = [
        (symbols[a].name, symbols[b].name)
        for a, b in struct.iter_unpack("<Ii", named[".nv.callgraph"].data)
        if a
    ]
    assert edges == [("launched", "called")]  # the removed caller's edge went with it
    for i, name in enumerate(KEPT):
        text = named[f".text.{name}"]
        assert symbols[text.info & 0xFFFFFF].name == name
        assert text.info >> 24 == 24 + NAMES.index(name)  # the register count stays
        assert symbols[function_symbol(symbols, name)].section == index[f".text.{name}"]
        info = named[f".nv.info.{name}"]
        assert (info.link, info.info) == (index[".symtab"], index[f".text.{name}"])
        attrs = dict(info_attributes(info.data))
        (cbank,) = struct.unpack_from("<I", attrs[PARAM_CBANK])
        assert symbols[cbank].section == index[f".nv.constant0.{name}"]
    externs = dict(info_attributes(named[".nv.info.launched"].data))[EXTERNS]
    assert [symbols[k].name for k in struct.unpack("<I", externs)] == ["called"]
    shared = [
        (attr, symbols[struct.unpack_from("<I", payload)[0]].name, payload[4:])
        for attr, payload in info_attributes(named[".nv.info"].data)
    ]
    assert [(a, n) for a, n, _v in shared] == [
        (attr, n) for n in KEPT for attr in (REGCOUNT, FRAME_SIZE)
    ]
    assert shared[0][2] == struct.pack("<I", 24)  # values travel with their function


def test_the_compacted_image_is_a_consistent_elf() -> None:
    image = compact_cubin(cubin(), {"launched"}).image
    sections, symbols = read_elf(image)
    symtab = next(s for s in sections if s.type == 2)
    assert sections[symtab.link].name == ".strtab"
    locals_end = symtab.info
    assert all(s.kind == 3 for s in symbols[1:locals_end])  # section symbols first
    assert all(s.kind == 2 for s in symbols[locals_end:])
    for s in symbols:
        assert s.section < len(sections)
    text = [
        (off, size)
        for name, (off, size, _d) in read_sections(image).items()
        if name.startswith(".text.")
    ]
    code = [s for s in read_segments(image) if s[0] == 1 and s[1] == min(o for o, _s in text)]
    assert len(code) == 1 and code[0][2] == max(o + s for o, s in text) - code[0][1]
    with pytest.raises(PruneRefused, match="every function"):
        compact_cubin(image, set(KEPT))  # nothing left to remove


def with_info_attribute(image: bytes, function: str, attr: int) -> bytes:
    """`image` with f's first .nv.info entry (CUDA_API_VERSION) turned into attribute
    `attr` of the same length, so nothing moves."""
    off, _size, data = read_sections(image)[f".nv.info.{function}"]
    assert data[1] == 0x37
    patched = bytearray(image)
    patched[off : off + 8] = info_entry(attr, bytes(4))
    return bytes(patched)


@pytest.mark.parametrize(
    ("image", "kernels", "why"),
    [
        (with_info_attribute(cubin(), "launched", 0x7E), {"launched"}, "0x7e may name symbols"),
        (cubin(), {"missing"}, "kernel missing is not defined"),
        (cubin(), set(NAMES), "every function"),
        (cubin(extra_sections=(".nv.uft",)), {"launched"}, "does not follow"),
    ],
    ids=["unknown-attribute", "missing-kernel", "nothing-to-remove", "unknown-section"],
)
def test_what_it_could_misread_is_refused(image: bytes, kernels: set[str], why: str) -> None:
    with pytest.raises(PruneRefused, match=why):
        compact_cubin(image, kernels)


def test_an_unknown_attribute_of_a_removed_function_does_not_matter() -> None:
    image = with_info_attribute(cubin(), "unused", 0x7E)
    assert compact_cubin(image, {"launched"}).removed == 2


def test_a_text_that_does_not_name_its_function_is_refused() -> None:
    image = bytearray(cubin())
    (shoff,) = struct.unpack_from("<Q", image, 40)
    sections, _symbols = read_elf(bytes(image))
    i = next(k for k, s in enumerate(sections) if s.name == ".text.launched")
    struct.pack_into("<I", image, shoff + 64 * i + 44, 0)  # sh_info
    with pytest.raises(PruneRefused, match="does not name its function"):
        compact_cubin(bytes(image), {"launched"})


def test_truncated_or_corrupted_images_raise_prune_refused_only() -> None:
    for bad in mangled(cubin(), seed=13):
        try:
            compact_cubin(bad, {"launched"})
        except PruneRefused:
            pass
