"""kiln.binaries.fatbin: which cubin SAVE stores in place of a fatbin, and when it keeps the fatbin."""

from __future__ import annotations

import pytest
import zstandard
from kiln.binaries.fatbin import device_cubin, fatbin_entries

from .fatbins import KIND_ELF, KIND_PTX, elf, entry, fatbin, lz4, zstd

LZ4_FLAG = 0x2000
PTX = b"//ptx\n.version 8.0\n\0"


def test_the_entry_for_the_device_is_taken_from_a_fatbin_of_several_architectures() -> None:
    image = fatbin(
        entry(KIND_ELF, 80, elf("sm80")),
        entry(KIND_ELF, 90, elf("sm90")),
        entry(KIND_PTX, 90, PTX),
    )
    assert device_cubin(image, 90) == elf("sm90")
    assert device_cubin(image, 80) == elf("sm80")


def test_a_zstd_compressed_entry_is_decompressed() -> None:
    cubin = elf("zstd") + bytes(range(256)) * 64
    packed = zstd(cubin)
    image = fatbin(entry(KIND_ELF, 90, packed, flags=0x8011, uncompressed=len(cubin)))
    assert device_cubin(image, 90) == cubin


def test_an_lz4_compressed_entry_is_decompressed() -> None:
    cubin = elf("lz4") + bytes(range(256)) * 64
    packed = lz4(cubin)
    image = fatbin(entry(KIND_ELF, 90, packed, flags=0x11 | LZ4_FLAG, uncompressed=len(cubin)))
    assert device_cubin(image, 90) == cubin


def test_zstd_and_lz4_decompression_needs_no_system_library(monkeypatch) -> None:
    # Bug: fatbins were decompressed through ctypes with the system's libzstd / liblz4, so a
    # machine without them stored every fatbin whole. The zstandard / lz4 packages are
    # dependencies now: no shared library is looked up.
    import ctypes

    def no_library(*args, **kwargs):
        raise AssertionError(f"ctypes.CDLL{args} was called")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    cubin = elf("pkg") + bytes(range(256)) * 16
    for packed, flags in ((zstd(cubin), 0x8011), (lz4(cubin), 0x11 | LZ4_FLAG)):
        image = fatbin(entry(KIND_ELF, 90, packed, flags=flags, uncompressed=len(cubin)))
        assert device_cubin(image, 90) == cubin


def test_a_zstd_frame_without_a_content_size_is_decompressed_up_to_the_entry_size() -> None:
    cubin = elf("nosize") + bytes(range(256)) * 16
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(cubin)
    assert zstandard.frame_content_size(packed) == -1
    image = fatbin(entry(KIND_ELF, 90, packed, flags=0x8011, uncompressed=len(cubin)))
    assert device_cubin(image, 90) == cubin
    short = fatbin(entry(KIND_ELF, 90, packed, flags=0x8011, uncompressed=len(cubin) - 1))
    assert device_cubin(short, 90) is None


def test_an_lz4_block_longer_than_its_entry_states_keeps_the_fatbin() -> None:
    cubin = elf("lz4big") + bytes(4096)
    image = fatbin(entry(KIND_ELF, 90, lz4(cubin), flags=0x11 | LZ4_FLAG, uncompressed=100))
    assert device_cubin(image, 90) is None


def test_a_fatbin_without_a_cubin_for_the_device_is_kept() -> None:
    # The driver would JIT the PTX (or fail): that is not one stored cubin.
    image = fatbin(entry(KIND_ELF, 80, elf("sm80")), entry(KIND_PTX, 90, PTX))
    assert device_cubin(image, 90) is None


def test_two_cubins_for_the_device_keep_the_fatbin() -> None:
    image = fatbin(entry(KIND_ELF, 90, elf("a")), entry(KIND_ELF, 90, elf("b")))
    assert device_cubin(image, 90) is None


def test_forced_ptx_jit_keeps_the_fatbin(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_FORCE_PTX_JIT", "1")
    assert device_cubin(fatbin(entry(KIND_ELF, 90, elf("sm90"))), 90) is None


def test_an_uncompressed_entry_that_is_not_elf_keeps_the_fatbin() -> None:
    assert device_cubin(fatbin(entry(KIND_ELF, 90, b"not an elf image")), 90) is None


def test_a_corrupt_zstd_payload_keeps_the_fatbin() -> None:
    cubin = elf("bad") + bytes(4096)
    packed = zstd(cubin)
    broken = packed[:4] + bytes(len(packed) - 4)
    image = fatbin(entry(KIND_ELF, 90, broken, flags=0x8011, uncompressed=len(cubin)))
    assert device_cubin(image, 90) is None


@pytest.mark.parametrize("claimed", [0, 100, 1 << 40])
def test_a_compressed_entry_with_the_wrong_size_keeps_the_fatbin(claimed: int) -> None:
    cubin = elf("size") + bytes(4096)
    packed = zstd(cubin)
    image = fatbin(entry(KIND_ELF, 90, packed, flags=0x8011, uncompressed=claimed))
    assert device_cubin(image, 90) is None


def test_every_truncation_of_a_fatbin_is_refused_and_kept() -> None:
    image = fatbin(entry(KIND_ELF, 80, elf("sm80")), entry(KIND_ELF, 90, elf("sm90")))
    for cut in range(len(image)):
        with pytest.raises(ValueError):
            fatbin_entries(image[:cut])
        assert device_cubin(image[:cut], 90) is None


def test_an_entry_claiming_more_than_the_fatbin_holds_is_refused() -> None:
    image = fatbin(entry(KIND_ELF, 90, elf("sm90"), span=1 << 20))
    with pytest.raises(ValueError, match="claims more bytes"):
        fatbin_entries(image)
    assert device_cubin(image, 90) is None


def test_an_image_that_is_not_a_fatbin_is_refused() -> None:
    with pytest.raises(ValueError, match="not a fatbin"):
        fatbin_entries(elf("plain") + bytes(16))
