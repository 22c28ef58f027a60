"""kiln.binaries.cubin_prune: which functions stay whole, what a stub is, that the rewritten image
stays a consistent ELF, and that anything it does not understand is refused (never a
crash)."""

from __future__ import annotations

import struct

import pytest
from kiln.binaries.cubin_prune import PruneRefused, prune_cubin

from tests.binaries.cubins import (
    BRA_SELF,
    EXIT,
    EXIT_AT,
    EXIT_OFFSETS,
    SYSCALL_OFFSETS,
    TEXT_BYTES,
    Fn,
    build_cubin,
    info_attributes,
    mangled,
    read_sections,
    read_segments,
    read_symbols,
)

NAMES = ("launched", "called", "relocated", "pointed_to", "unused", "unused_too")


def cubin(**kw) -> bytes:
    return build_cubin(
        [Fn(n) for n in NAMES],
        calls=(("launched", "called"),),
        code_refs={"launched": ["relocated"]},
        data_refs=("pointed_to",),
        **kw,
    )


def test_launched_kernels_and_what_they_reach_keep_every_byte() -> None:
    original = cubin()
    pruned = prune_cubin(original, {"launched"})
    before, after = read_sections(original), read_sections(pruned.image)
    for name in ("launched", "called", "relocated", "pointed_to"):
        for section in (f".text.{name}", f".nv.info.{name}", f".nv.constant0.{name}"):
            assert after[section][2] == before[section][2], section
    assert after[".rela.text.launched"][2] == before[".rela.text.launched"][2]
    assert (pruned.kept, pruned.stubbed) == (4, 2)
    assert len(pruned.image) < len(original)


def test_an_unreached_function_becomes_its_own_last_exit() -> None:
    original = cubin()
    after = read_sections(prune_cubin(original, {"launched"}).image)
    body = read_sections(original)[".text.unused"][2]
    stub = after[".text.unused"][2]
    assert stub == body[EXIT_AT : EXIT_AT + 128]
    assert stub.startswith(EXIT + BRA_SELF)
    # Its .nv.info names no code offset but the EXIT it now starts with.
    attrs = dict(info_attributes(after[".nv.info.unused"][2]))
    assert SYSCALL_OFFSETS not in attrs
    assert attrs[EXIT_OFFSETS] == struct.pack("<I", 0)
    assert read_symbols(original)["unused"][1:] == (0, TEXT_BYTES)
    assert read_symbols(prune_cubin(original, {"launched"}).image)["unused"][1:] == (0, 128)


def test_zero_sized_function_text_is_never_written() -> None:
    """Regression: emptying unused functions' text made the driver refuse every kernel of
    the image with CUDA_ERROR_INVALID_IMAGE (docs/restore.md, "Pruned cubins")."""
    pruned = prune_cubin(cubin(), {"launched"}).image
    texts = {n: s for n, s in read_sections(pruned).items() if n.startswith(".text.")}
    assert len(texts) == len(NAMES)
    assert all(size > 0 for _off, size, _data in texts.values())


def test_sections_a_stub_alone_owned_and_debug_information_are_emptied() -> None:
    after = read_sections(prune_cubin(cubin(), {"launched"}).image)
    assert after[".nv.constant0.unused"][1] == 0
    assert after[".debug_frame"][1] == 0 and after[".rela.debug_frame"][1] == 0
    assert after[".nv.constant4"][1] > 0 and after[".rela.nv.constant4"][1] > 0


def test_the_pruned_image_is_a_consistent_elf() -> None:
    image = prune_cubin(cubin(), {"launched"}).image
    sections = read_sections(image)
    for name, (off, size, data) in sections.items():
        if name != ".nv.global":
            assert off + size <= len(image) and len(data) == size, name
    segments = read_segments(image)
    text = [(off, size) for name, (off, size, _d) in sections.items() if name.startswith(".text.")]
    code = [s for s in segments if s[0] == 1 and s[1] == min(o for o, _s in text)]
    assert len(code) == 1
    assert code[0][2] == max(o + s for o, s in text) - code[0][1]  # covers every text, no more
    phoff = struct.unpack_from("<Q", image, 32)[0]
    assert segments[0][:2] == (6, phoff) and segments[1][:2] == (1, phoff)
    # Pruning what is already pruned leaves nothing to do.
    with pytest.raises(PruneRefused, match="every function"):
        prune_cubin(
            image, {"launched", "called", "relocated", "pointed_to", "unused", "unused_too"}
        )


def test_a_function_without_a_recognisable_exit_stays_whole() -> None:
    odd = build_cubin(
        [
            Fn("launched"),
            Fn("no_exit", exits=[]),
            Fn("bad_exit", body=bytes(TEXT_BYTES)),
            Fn("unused"),
        ]
    )
    pruned = prune_cubin(odd, {"launched"})
    before, after = read_sections(odd), read_sections(pruned.image)
    assert after[".text.no_exit"][2] == before[".text.no_exit"][2]
    assert after[".text.bad_exit"][2] == before[".text.bad_exit"][2]
    assert (pruned.kept, pruned.stubbed) == (3, 1)


@pytest.mark.parametrize(
    ("image", "kernels", "why"),
    [
        (b"MZ" + bytes(100), {"launched"}, "not an ELF"),
        (cubin(machine=62), {"launched"}, "CUDA executable"),
        (cubin(extra_sections=(".nv.uft",)), {"launched"}, "does not follow"),
        (cubin(), {"missing"}, "kernel missing is not defined"),
        (cubin(), set(NAMES), "every function"),
    ],
)
def test_images_it_does_not_understand_are_refused(
    image: bytes, kernels: set[str], why: str
) -> None:
    with pytest.raises(PruneRefused, match=why):
        prune_cubin(image, kernels)


def test_truncated_or_corrupted_images_raise_prune_refused_only() -> None:
    for bad in mangled(cubin(), seed=12):
        try:
            prune_cubin(bad, {"launched"})
        except PruneRefused:
            pass


def test_what_a_function_kept_whole_reaches_stays_whole_too() -> None:
    """A function that cannot be stubbed stays as it is, so its relocations must still find
    their targets as they were."""
    odd = build_cubin(
        [Fn("launched"), Fn("no_exit", exits=[]), Fn("its_target"), Fn("unused")],
        code_refs={"no_exit": ["its_target"]},
    )
    before, after = read_sections(odd), read_sections(prune_cubin(odd, {"launched"}).image)
    assert after[".text.its_target"][2] == before[".text.its_target"][2]
    assert after[".text.unused"][1] == 128
