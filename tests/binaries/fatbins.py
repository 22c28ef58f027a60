"""Synthetic fatbins and ELF images for the tests (layout: kiln/binaries/fatbin.py's docstring)."""

from __future__ import annotations

import struct

import lz4.block as lz4_block
import zstandard
from kiln.binaries.fatbin import FATBIN_MAGIC, KIND_ELF, KIND_PTX

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


def zstd(data: bytes) -> bytes:
    """`data` as one zstd frame that states its content size (as nvcc writes them)."""
    return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)


def lz4(data: bytes) -> bytes:
    """`data` as a raw LZ4 block (no size prefix)."""
    return lz4_block.compress(data, store_size=False)
