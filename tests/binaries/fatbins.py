"""Synthetic fatbins and ELF images for the tests (layout: kiln/fatbin.py's docstring)."""

from __future__ import annotations

import ctypes
import struct

from kiln.fatbin import FATBIN_MAGIC, KIND_ELF, KIND_PTX

__all__ = ["KIND_ELF", "KIND_PTX", "elf", "entry", "fatbin", "lz4", "zstd"]


def elf(tag: str) -> bytes:
    """A 64-byte ELF64 header (no tables: its own size is 64), `tag` in the ident padding."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + tag.encode().ljust(7, b"\0")[:7]
    return ident + bytes(48)


def entry(
    kind: int,
    arch: int,
    payload: bytes,
    *,
    flags: int = 0x11,
    uncompressed: int = 0,
    span: int | None = None,
) -> bytes:
    padded = payload + bytes(-len(payload) % 8)
    span = len(padded) if span is None else span
    header = struct.pack(
        "<HHIQIIIIIIQQQ",
        kind,
        0x0101,
        64,
        span,
        len(payload),
        0,
        0,
        arch,
        0,
        0,
        flags,
        0,
        uncompressed,
    )
    return header + padded


def fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def zstd(data: bytes) -> bytes | None:
    """`data` as a zstd frame, or None without the system's libzstd."""
    try:
        lib = ctypes.CDLL("libzstd.so.1")
    except OSError:
        return None
    lib.ZSTD_compressBound.restype = ctypes.c_size_t
    lib.ZSTD_compress.restype = ctypes.c_size_t
    cap = lib.ZSTD_compressBound(ctypes.c_size_t(len(data)))
    out = ctypes.create_string_buffer(cap)
    n = lib.ZSTD_compress(out, ctypes.c_size_t(cap), data, ctypes.c_size_t(len(data)), 3)
    return out.raw[:n]


def lz4(data: bytes) -> bytes | None:
    """`data` as an LZ4 block, or None without the system's liblz4."""
    try:
        lib = ctypes.CDLL("liblz4.so.1")
    except OSError:
        return None
    cap = lib.LZ4_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    n = lib.LZ4_compress_default(data, out, len(data), cap)
    return out.raw[:n]
