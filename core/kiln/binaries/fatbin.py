"""The one cubin a fatbin holds for this device, so that SAVE can store it instead.

A fatbin (what nvcc registers) carries an ELF cubin per architecture, compressed, and
PTX. Loading one makes the driver pick the entry for the device and decompress it, under
its own lock: on the H100 PyTorch's 20 fatbins cost LOAD ~0.26 s of driver time, their
sm_90 cubins ~0.11 s. The driver takes the ELF entry whose architecture equals the
device's; SAVE stores that entry only when exactly one such entry exists and it
decompresses to a whole ELF image. Anything else keeps the fatbin (extraction only
saves time, so a fatbin it cannot read is not an error).

Entry layout (little-endian, offsets into each entry's header): kind u16 @0 (1 PTX, 2
ELF), header size u32 @4, span of the payload and its padding u64 @8, payload size u32
@16, architecture u32 @28 (major * 10 + minor), flags u64 @40, uncompressed size u64
@56. Payloads are zstd frames (recent toolkits) or LZ4 blocks (flag 0x2000, older ones);
both are decompressed with the zstandard / lz4 packages, never beyond the stated size.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass

import lz4.block
import zstandard

__all__ = ["FatbinEntry", "device_cubin", "fatbin_entries"]

log = logging.getLogger("kiln.binaries.fatbin")

FATBIN_MAGIC = 0xBA55ED50
_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, bytes of entries
_ENTRY_MIN = 64
KIND_PTX, KIND_ELF = 1, 2
_LZ4_FLAG = 0x2000
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ELF_MAGIC = b"\x7fELF"
# A cubin larger than this is not believed (the biggest PyTorch ships are a few MB).
MAX_CUBIN_BYTES = 1 << 30


@dataclass(frozen=True)
class FatbinEntry:
    kind: int
    arch: int
    flags: int
    payload: memoryview
    uncompressed_size: int


def fatbin_entries(image: bytes | memoryview) -> list[FatbinEntry]:
    """The entries of a fatbin, bounds-checked; ValueError for anything malformed."""
    view = memoryview(image)
    if len(view) < _HEADER.size:
        raise ValueError("shorter than a fatbin header")
    magic, _version, header_size, body = _HEADER.unpack_from(view, 0)
    if magic != FATBIN_MAGIC:
        raise ValueError(f"magic 0x{magic:08x} is not a fatbin's")
    if header_size < _HEADER.size or header_size + body > len(view):
        raise ValueError("the header claims more bytes than the image holds")
    end, off, out = header_size + body, header_size, []
    while off < end:
        if end - off < _ENTRY_MIN:
            raise ValueError(f"entry at {off} is cut short")
        kind, _, size = struct.unpack_from("<HHI", view, off)
        span, payload_size = struct.unpack_from("<QI", view, off + 8)
        (arch,) = struct.unpack_from("<I", view, off + 28)
        (flags,) = struct.unpack_from("<Q", view, off + 40)
        (uncompressed,) = struct.unpack_from("<Q", view, off + 56)
        if size < _ENTRY_MIN or payload_size > span or span > end - off - size:
            raise ValueError(f"entry at {off} claims more bytes than the fatbin holds")
        start = off + size
        out.append(FatbinEntry(kind, arch, flags, view[start : start + payload_size], uncompressed))
        off = start + span
    return out


def device_cubin(image: bytes | memoryview, sm: int) -> bytes | None:
    """The ELF cubin the driver would run from fatbin `image` on an `sm` device (e.g. 90),
    or None when the fatbin should be stored as it is (see the module docstring)."""
    if os.environ.get("CUDA_FORCE_PTX_JIT", "0") not in ("", "0"):
        return None  # the driver JIT-compiles the PTX instead of running any cubin
    try:
        entries = fatbin_entries(image)
    except ValueError as e:
        log.debug("fatbin kept: %s", e)
        return None
    matches = [e for e in entries if e.kind == KIND_ELF and e.arch == sm]
    if len(matches) != 1:
        log.debug("fatbin kept: %d ELF entries for sm_%d", len(matches), sm)
        return None
    cubin = _payload(matches[0])
    if cubin is None or cubin[:4] != _ELF_MAGIC:
        log.debug("fatbin kept: its sm_%d entry did not give an ELF image", sm)
        return None
    return cubin


def _payload(entry: FatbinEntry) -> bytes | None:
    data, size = bytes(entry.payload), entry.uncompressed_size
    compressed = data[:4] == _ZSTD_MAGIC or entry.flags & _LZ4_FLAG
    if not compressed:
        return data
    if not 0 < size <= MAX_CUBIN_BYTES:
        return None
    if data[:4] == _ZSTD_MAGIC:
        return _zstd_decompress(data, size)
    return _lz4_decompress(data, size)


def _zstd_decompress(data: bytes, size: int) -> bytes | None:
    # A frame that states its content size is believed only when that is the entry's size
    # (so nothing larger is ever allocated); one that does not is cut at `size` bytes.
    stated = zstandard.frame_content_size(data)
    if stated not in (size, -1):
        return None
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError:
        return None
    return out if len(out) == size else None


def _lz4_decompress(data: bytes, size: int) -> bytes | None:
    if len(data) >= 1 << 31:
        return None
    try:
        out = lz4.block.decompress(data, uncompressed_size=size)
    except lz4.block.LZ4BlockError:
        return None
    return out if len(out) == size else None
