"""Synthetic sm_90-shaped cubins (ELF64 executables for EM_CUDA) for the pruning tests:
functions in their own .text sections with .nv.info (parameters, EXIT and syscall
offsets), per-function constant banks, a call graph, code and data relocations, debug
frames, and program headers as nvlink lays them out."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

EXIT = b"\x4d\x79" + bytes(6) + bytes.fromhex("000fea0003800000")[::-1]
BRA_SELF = bytes.fromhex("fffffffc00fc7947")[::-1] + bytes.fromhex("000fc0000383ffff")[::-1]
NOP = bytes.fromhex("0000000000007918")[::-1] + bytes.fromhex("000fc00000000000")[::-1]
TEXT_BYTES = 512
EXIT_AT = 0x100  # each function: NOPs, then EXIT, BRA-to-self, NOPs
KPARAM_INFO, EXIT_OFFSETS, SYSCALL_OFFSETS, CUDA_API_VERSION = 0x17, 0x1C, 0x46, 0x37
PARAM_CBANK, EXTERNS, FRAME_SIZE, REGCOUNT = 0x0A, 0x0F, 0x11, 0x2F


def text_body(tag: int) -> bytes:
    body = bytearray(NOP * (TEXT_BYTES // 16))
    body[0:2] = bytes([tag, 0x7A])  # distinct code per function
    body[EXIT_AT : EXIT_AT + 32] = EXIT + BRA_SELF
    return bytes(body)


def info_entry(attr: int, payload: bytes) -> bytes:
    return struct.pack("<BBH", 4, attr, len(payload)) + payload


def function_info(exits: list[int], cbank_symbol: int = 0, externs: Sequence[int] = ()) -> bytes:
    return (
        info_entry(CUDA_API_VERSION, struct.pack("<I", 0x82))
        + info_entry(PARAM_CBANK, struct.pack("<IHH", cbank_symbol, 0x210, 0x10))
        + (info_entry(EXTERNS, struct.pack(f"<{len(externs)}I", *externs)) if externs else b"")
        + info_entry(KPARAM_INFO, bytes(12))
        + info_entry(SYSCALL_OFFSETS, struct.pack("<I", 0x40))
        + (info_entry(EXIT_OFFSETS, struct.pack(f"<{len(exits)}I", *exits)) if exits else b"")
    )


@dataclass
class Fn:
    name: str
    exits: list[int] = field(default_factory=lambda: [EXIT_AT])
    body: bytes | None = None


@dataclass
class _Sec:
    name: str
    type: int
    flags: int = 0
    data: bytes = b""
    link: int = 0
    info: int = 0
    align: int = 1
    entsize: int = 0
    size: int | None = None  # NOBITS


def build_cubin(
    functions: list[Fn],
    *,
    calls: tuple[tuple[str, str], ...] = (),
    code_refs: dict[str, list[str]] | None = None,
    data_refs: tuple[str, ...] = (),
    extra_sections: tuple[str, ...] = (),
    externs: dict[str, list[str]] | None = None,
    machine: int = 190,
) -> bytes:
    """A cubin defining `functions` (kernels; each owns .text, .nv.info, .nv.constant0);
    `calls` become .nv.callgraph edges, `code_refs[f]` relocations in .rela.text.f against
    the named functions, `data_refs` relocations in .rela.nv.constant4 (function pointers),
    every function also has a .debug_frame relocation; `extra_sections` adds empty
    PROGBITS sections by name; `externs[f]` become f's EIATTR_EXTERNS. As nvlink writes
    them: each text's sh_info names its function symbol (register count above), each
    .nv.info.f names its constant bank's section symbol, and the shared .nv.info holds
    every function's register count and frame size."""
    code_refs = code_refs or {}
    externs = externs or {}
    names = [f.name for f in functions]
    secs: list[_Sec] = [_Sec("", 0)]

    def add(s: _Sec) -> int:
        secs.append(s)
        return len(secs) - 1

    shstrtab = add(_Sec(".shstrtab", 3))
    strtab = add(_Sec(".strtab", 3))
    symtab = add(_Sec(".symtab", 2, align=8, entsize=24, link=strtab))
    debug = add(_Sec(".debug_frame", 1, data=bytes(24 * len(functions))))
    shared_info = add(_Sec(".nv.info", 0x70000000, data=b"", link=symtab, align=4))
    infos = {
        f.name: add(_Sec(f".nv.info.{f.name}", 0x70000000, 0x40, b"", symtab, 0, 4))
        for f in functions
    }
    callgraph = add(_Sec(".nv.callgraph", 0x70000001, link=symtab, align=4, entsize=8))
    rela_c4 = add(_Sec(".rela.nv.constant4", 4, 0x40, link=symtab, align=8, entsize=24))
    rela_debug = add(
        _Sec(".rela.debug_frame", 4, 0x40, link=symtab, info=debug, align=8, entsize=24)
    )
    rela_text = {
        f: add(_Sec(f".rela.text.{f}", 4, 0x40, link=symtab, align=8, entsize=24))
        for f in code_refs
    }
    c4 = add(_Sec(".nv.constant4", 1, 0x2, data=bytes(8 * max(1, len(data_refs))), align=8))
    secs[rela_c4].info = c4
    texts = {}
    for i, f in enumerate(functions):
        body = f.body if f.body is not None else text_body(i)
        texts[f.name] = add(_Sec(f".text.{f.name}", 1, 0x6, body, symtab, 0, 128))
    for f in code_refs:
        secs[rela_text[f]].info = texts[f]
    consts = {
        f.name: add(_Sec(f".nv.constant0.{f.name}", 1, 0x42, bytes(0x160), 0, texts[f.name], 4))
        for f in functions
    }
    for extra in extra_sections:
        add(_Sec(extra, 1, data=bytes(8)))
    add(_Sec(".nv.global", 8, 0x3, size=16))
    for f in functions:
        secs[infos[f.name]].info = texts[f.name]

    # Symbols: null, one section symbol per text, then the functions (global, entry).
    strings = bytearray(b"\0")

    def string(s: str) -> int:
        strings.extend(s.encode() + b"\0")
        return len(strings) - len(s) - 1

    syms = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    for f in functions:
        syms.append(struct.pack("<IBBHQQ", string(f".text.{f.name}"), 3, 0, texts[f.name], 0, 0))
    cbank_sym = {}
    for f in functions:
        cbank_sym[f.name] = len(syms)
        syms.append(struct.pack("<IBBHQQ", 0, 3, 0, consts[f.name], 0, 0))
    first_local_end = len(syms)
    fsym = {}
    for f in functions:
        fsym[f.name] = len(syms)
        syms.append(
            struct.pack(
                "<IBBHQQ",
                string(f.name),
                0x12,
                0x10,
                texts[f.name],
                0,
                len(secs[texts[f.name]].data),
            )
        )
    for i, f in enumerate(functions):
        secs[texts[f.name]].info = (24 + i) << 24 | fsym[f.name]
        secs[infos[f.name]].data = function_info(
            f.exits, cbank_sym[f.name], [fsym[e] for e in externs.get(f.name, [])]
        )
    secs[shared_info].data = b"".join(
        info_entry(REGCOUNT, struct.pack("<II", fsym[f.name], 24 + i))
        + info_entry(FRAME_SIZE, struct.pack("<II", fsym[f.name], 8 * i))
        for i, f in enumerate(functions)
    )
    secs[symtab].data = b"".join(syms)
    secs[symtab].info = first_local_end
    secs[strtab].data = bytes(strings)

    def rela(offset: int, target: str) -> bytes:
        return struct.pack("<QQq", offset, (fsym[target] << 32) | 2, 0)

    secs[rela_debug].data = b"".join(rela(24 * i, n) for i, n in enumerate(names))
    secs[rela_c4].data = b"".join(rela(8 * i, n) for i, n in enumerate(data_refs))
    for f, targets in code_refs.items():
        secs[rela_text[f]].data = b"".join(rela(0x20 + 16 * i, t) for i, t in enumerate(targets))
    edges = [(0, -1)] + [(fsym[a], fsym[b]) for a, b in calls] + [(0, -2), (0, -3), (0, -4)]
    secs[callgraph].data = b"".join(struct.pack("<Ii", a, b) for a, b in edges)

    shstr = bytearray(b"\0")
    name_off = []
    for s in secs:
        name_off.append(len(shstr) if s.name else 0)
        if s.name:
            shstr.extend(s.name.encode() + b"\0")
    secs[shstrtab].data = bytes(shstr)

    # Layout: header, sections in order, section headers, program headers.
    out = bytearray(64)
    offsets = [0] * len(secs)
    for i, s in enumerate(secs[1:], 1):
        if s.type == 8:
            offsets[i] = len(out)
            continue
        out += bytes(-len(out) % s.align)
        offsets[i] = len(out)
        out += s.data
    out += bytes(-len(out) % 8)
    shoff = len(out)
    for i, s in enumerate(secs):
        size = s.size if s.type == 8 else len(s.data)
        out += struct.pack(
            "<IIQQQQIIQQ",
            name_off[i],
            s.type,
            s.flags,
            0,
            offsets[i],
            size or 0,
            s.link,
            s.info,
            s.align if i else 0,
            s.entsize,
        )
    phoff = len(out)
    text_ids = [texts[f.name] for f in functions]
    const_ids = [consts[f.name] for f in functions]

    def span(ids: list[int]) -> tuple[int, int]:
        start = min(offsets[i] for i in ids)
        return start, max(offsets[i] + len(secs[i].data) for i in ids) - start

    t0, tn = span(text_ids)
    c0, cn = span(const_ids)
    count = 4
    table = count * 56
    for ptype, flags, off, size in (
        (6, 4, phoff, table),
        (1, 4, phoff, table),
        (1, 5, t0, tn),
        (1, 4, c0, cn),
    ):
        out += struct.pack("<IIQQQQQQ", ptype, flags, off, 0, 0, size, size, 8)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0x33, 7]) + bytes(7)
    struct.pack_into(
        "<16sHHIQQQIHHHHHH",
        out,
        0,
        ident,
        2,
        machine,
        0x80,
        0,
        phoff,
        shoff,
        0x5A055A,
        64,
        56,
        count,
        64,
        len(secs),
        shstrtab,
    )
    return bytes(out)


def read_sections(image: bytes) -> dict[str, tuple[int, int, bytes]]:
    """name -> (offset, size, bytes) of every section of an ELF64 image."""
    (shoff,) = struct.unpack_from("<Q", image, 40)
    shnum, shstrndx = struct.unpack_from("<HH", image, 60)
    raw = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + 64 * i) for i in range(shnum)]
    names = raw[shstrndx][4]
    out = {}
    for r in raw[1:]:
        name = image[names + r[0] : image.index(b"\0", names + r[0])].decode()
        data = b"" if r[1] == 8 else image[r[4] : r[4] + r[5]]
        out[name] = (r[4], r[5], data)
    return out


def read_symbols(image: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (section index, value, size) of every named symbol."""
    (shoff,) = struct.unpack_from("<Q", image, 40)
    (shnum,) = struct.unpack_from("<H", image, 60)
    raw = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + 64 * i) for i in range(shnum)]
    st = next(r for r in raw if r[1] == 2)
    strings = raw[st[6]][4]
    out = {}
    for k in range(st[5] // 24):
        name_off, _info, _other, shndx, value, size = struct.unpack_from(
            "<IBBHQQ", image, st[4] + 24 * k
        )
        name = image[strings + name_off : image.index(b"\0", strings + name_off)].decode()
        if name:
            out[name] = (shndx, value, size)
    return out


def read_segments(image: bytes) -> list[tuple[int, int, int, int]]:
    """(type, offset, file size, memory size) of every program header."""
    (phoff,) = struct.unpack_from("<Q", image, 32)
    (phnum,) = struct.unpack_from("<H", image, 56)
    out = []
    for p in range(phnum):
        t, _f, off, _va, _pa, fs, ms, _al = struct.unpack_from("<IIQQQQQQ", image, phoff + 56 * p)
        out.append((t, off, fs, ms))
    return out


def info_attributes(data: bytes) -> list[tuple[int, bytes]]:
    out, p = [], 0
    while p < len(data):
        fmt, attr = data[p], data[p + 1]
        n = 4 + struct.unpack_from("<H", data, p + 2)[0] if fmt == 4 else 4
        out.append((attr, data[p + 4 : p + n] if fmt == 4 else data[p + 2 : p + 4]))
        p += n
    return out


@dataclass
class ElfSection:
    name: str
    type: int
    flags: int
    link: int
    info: int
    data: bytes


@dataclass
class ElfSymbol:
    name: str
    kind: int  # STT_*
    section: int


def read_elf(image: bytes) -> tuple[list[ElfSection], list[ElfSymbol]]:
    """Every section (in index order, names resolved) and every symbol of an ELF64 image."""
    (shoff,) = struct.unpack_from("<Q", image, 40)
    shnum, shstrndx = struct.unpack_from("<HH", image, 60)
    raw = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + 64 * i) for i in range(shnum)]

    def string(table: int, off: int) -> str:
        start = raw[table][4] + off
        return image[start : image.index(b"\0", start)].decode()

    sections = [
        ElfSection(
            string(shstrndx, r[0]) if i else "",
            r[1],
            r[2],
            r[6],
            r[7],
            b"" if r[1] == 8 else image[r[4] : r[4] + r[5]],
        )
        for i, r in enumerate(raw)
    ]
    st = next(i for i, s in enumerate(sections) if s.type == 2)
    symbols = []
    for k in range(len(sections[st].data) // 24):
        name, info, _o, shndx, _v, _s = struct.unpack_from("<IBBHQQ", sections[st].data, 24 * k)
        symbols.append(ElfSymbol(string(sections[st].link, name), info & 0xF, shndx))
    return sections, symbols


def mangled(original: bytes, seed: int) -> Iterator[bytes]:
    """`original` truncated at every 97th byte, then 400 copies with 1-8 random bytes
    changed: what a reader of cubins must refuse cleanly, never crash on."""
    for cut in range(0, len(original), 97):
        yield original[:cut]
    rng = random.Random(seed)
    for _ in range(400):
        bad = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        yield bytes(bad)
