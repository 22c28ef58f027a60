"""Reading sm_90-style cubins (ELF64 executables for EM_CUDA) for SAVE's binary pruning
(kiln.binaries.cubin_prune, kiln.binaries.cubin_compact): sections and symbols, which function owns which
section, what the launched kernels reach, .nv.info entries and moving program headers.
Anything unexpected raises PruneRefused and the image is stored whole."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
PHDR = struct.Struct("<IIQQQQQQ")
SYM = struct.Struct("<IBBHQQ")
ET_EXEC, EM_CUDA = 2, 190
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS, SHT_REL = (
    1,
    2,
    3,
    4,
    7,
    8,
    9,
)
SHT_NV_INFO, SHT_NV_CALLGRAPH, SHT_NV_COMPAT = 0x70000000, 0x70000001, 0x70000086
KNOWN_TYPES = {
    0,
    SHT_PROGBITS,
    SHT_SYMTAB,
    SHT_STRTAB,
    SHT_RELA,
    SHT_NOTE,
    SHT_NOBITS,
    SHT_REL,
    SHT_NV_INFO,
    SHT_NV_CALLGRAPH,
    SHT_NV_COMPAT,
}
# Every section kind seen in PyTorch's, cuBLAS's and Triton's sm_90 cubins; anything else
# (unified function tables, relocation actions, ...) may tie functions together in ways
# this module does not follow, so such an image is kept whole.
KNOWN_PREFIXES = (
    ".shstrtab",
    ".strtab",
    ".symtab",
    ".note.nv.",
    ".nv.info",
    ".nv.compat",
    ".nv.callgraph",
    ".nv.constant",
    ".nv.global",
    ".nv.shared",
    ".nv.local",
    ".text.",
    ".rel.",
    ".rela.",
    ".debug",
    ".nv_debug",
)
SHF_EXECINSTR, SHF_INFO_LINK = 0x4, 0x40
STT_FUNC = 2
SHN_LORESERVE = 0xFF00
EIFMT_SVAL = 4
MAX_ALIGN = 1 << 16


class PruneRefused(ValueError):
    """This image is stored whole; the message says why."""


_Result = TypeVar("_Result")


def refuse_malformed(
    reduce: Callable[[bytes, Collection[str]], _Result],
) -> Callable[[bytes, Collection[str]], _Result]:
    """`reduce` raising PruneRefused, not a parsing error, for an image malformed in a way
    its checks missed."""

    @functools.wraps(reduce)
    def guarded(image: bytes, kernels: Collection[str]) -> _Result:
        try:
            return reduce(image, kernels)
        except (struct.error, IndexError, KeyError, OverflowError) as e:
            raise PruneRefused(f"malformed image ({e!r})") from e

    return guarded


@dataclass
class Section:
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    raw: list[int]

    @property
    def in_file(self) -> bool:
        return self.type != SHT_NOBITS

    @property
    def is_rel(self) -> bool:
        return self.type in (SHT_REL, SHT_RELA)


def cstr(table: bytes, off: int, what: str) -> str:
    end = table.find(b"\0", off)
    if off >= len(table) or end < 0:
        raise PruneRefused(f"{what}: name offset {off} is outside its string table")
    return table[off:end].decode("utf-8", "replace")


class Cubin:
    def __init__(self, image: bytes) -> None:
        self.image = image
        if len(image) < EHDR.size or image[:4] != b"\x7fELF":
            raise PruneRefused("not an ELF image")
        (
            ident,
            etype,
            machine,
            _v,
            _e,
            phoff,
            shoff,
            _f,
            _eh,
            phentsize,
            phnum,
            shentsize,
            shnum,
            shstrndx,
        ) = EHDR.unpack_from(image, 0)
        if ident[4] != 2 or ident[5] != 1 or etype != ET_EXEC or machine != EM_CUDA:
            raise PruneRefused("not a little-endian 64-bit CUDA executable")
        if shentsize != SHDR.size or not 0 < shnum < SHN_LORESERVE or shstrndx >= shnum:
            raise PruneRefused("unexpected section header table")
        if phnum and phentsize != PHDR.size:
            raise PruneRefused("unexpected program header table")
        self._within(shoff, shnum * SHDR.size, "section header table")
        self._within(phoff, phnum * PHDR.size, "program header table")
        self.phoff, self.phnum, self.shstrndx = phoff, phnum, shstrndx
        raws = [list(SHDR.unpack_from(image, shoff + i * SHDR.size)) for i in range(shnum)]
        for i, r in enumerate(raws):
            if r[1] not in KNOWN_TYPES:
                raise PruneRefused(f"section {i} has an unknown type 0x{r[1]:x}")
            if r[1] != SHT_NOBITS:
                self._within(r[4], r[5], f"section {i}")
            if r[8] > MAX_ALIGN or r[8] & (r[8] - 1):
                raise PruneRefused(f"section {i} has an implausible alignment {r[8]}")
        names = self._bytes(raws[shstrndx])
        self.secs = [
            Section(
                cstr(names, r[0], f"section {i}") if i else "",
                r[1],
                r[2],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r,
            )
            for i, r in enumerate(raws)
        ]
        for i, s in enumerate(self.secs[1:], 1):
            if not s.name.startswith(KNOWN_PREFIXES):
                raise PruneRefused(f"section {s.name!r} is of a kind pruning does not follow")
            if s.is_rel and (s.info >= shnum or s.info == 0):
                raise PruneRefused(f"relocation section {s.name!r} targets no section")
        symtabs = [i for i, s in enumerate(self.secs) if s.type == SHT_SYMTAB]
        if len(symtabs) != 1:
            raise PruneRefused(f"{len(symtabs)} symbol tables")
        self.symtab = symtabs[0]
        st = self.secs[self.symtab]
        if st.size % SYM.size or not 0 < st.link < shnum or self.secs[st.link].type != SHT_STRTAB:
            raise PruneRefused("malformed symbol table")
        strings = self._bytes(self.secs[st.link].raw)
        self.syms = [
            list(SYM.unpack_from(image, st.offset + k * SYM.size))
            for k in range(st.size // SYM.size)
        ]
        self.sym_names = [cstr(strings, s[0], f"symbol {k}") for k, s in enumerate(self.syms)]
        for k, sym in enumerate(self.syms):
            special = sym[3] >= SHN_LORESERVE
            if special and sym[3] not in (0xFFF1, 0xFFF2) or not special and sym[3] >= shnum:
                raise PruneRefused(f"symbol {k} names section {sym[3]}")
        self.text = {
            i
            for i, s in enumerate(self.secs)
            if s.name.startswith(".text.") and s.type == SHT_PROGBITS and s.flags & SHF_EXECINSTR
        }

    def _within(self, off: int, size: int, what: str) -> None:
        if off > len(self.image) or size > len(self.image) - off:
            raise PruneRefused(f"{what} lies outside the image")

    def _bytes(self, raw: list[int]) -> bytes:
        return self.image[raw[4] : raw[4] + raw[5]]

    def data(self, i: int) -> bytes:
        s = self.secs[i]
        return self.image[s.offset : s.offset + s.size] if s.in_file else b""

    def relocated_symbols(self, i: int) -> Iterator[int]:
        s = self.secs[i]
        size = 24 if s.type == SHT_RELA else 16
        if s.size % size or s.link != self.symtab:
            raise PruneRefused(f"malformed relocation section {s.name!r}")
        for e in range(s.size // size):
            (info,) = struct.unpack_from("<Q", self.image, s.offset + e * size + 8)
            sym = info >> 32
            if sym >= len(self.syms):
                raise PruneRefused(
                    f"{s.name!r} relocates against symbol {sym}, which does not exist"
                )
            yield sym

    def call_edges(self) -> Iterator[tuple[int, int]]:
        """(caller, callee) symbol pairs from .nv.callgraph (markers left out)."""
        for i, s in enumerate(self.secs):
            if s.type != SHT_NV_CALLGRAPH:
                continue
            d = self.data(i)
            if len(d) % 8:
                raise PruneRefused("malformed .nv.callgraph")
            for caller, callee in struct.iter_unpack("<Ii", d):
                if caller and callee > 0:
                    if caller >= len(self.syms) or callee >= len(self.syms):
                        raise PruneRefused(".nv.callgraph names a symbol that does not exist")
                    yield caller, callee


def owner(c: Cubin, i: int) -> int | None:
    """The function (text section) a section belongs to, or None for shared sections; a
    relocation section belongs to whatever its target belongs to."""
    if c.secs[i].is_rel:
        i = c.secs[i].info
        if c.secs[i].is_rel:
            return None
    s = c.secs[i]
    if i in c.text:
        return i
    if s.flags & SHF_INFO_LINK and s.info in c.text:
        return s.info
    return None


def is_debug(c: Cubin, i: int) -> bool:
    s = c.secs[i]
    target = c.secs[s.info].name if s.is_rel else s.name
    return target.startswith((".debug", ".nv_debug"))


def reached_functions(
    c: Cubin, kernels: Collection[str], whole: set[int], owners: list[int | None]
) -> set[int]:
    """Functions left whole: the launched kernels, the functions in `whole` (those that
    cannot be stubbed), and everything these reach."""
    by_name = {n: k for k, n in enumerate(c.sym_names) if (c.syms[k][1] & 0xF) == STT_FUNC}
    work: list[int] = list(whole)
    for name in kernels:
        k = by_name.get(name)
        if k is None or c.syms[k][3] not in c.text:
            raise PruneRefused(f"kernel {name} is not defined in this cubin")
        work.append(c.syms[k][3])
    rels_of: dict[int, list[int]] = {}
    for i, s in enumerate(c.secs):
        if not s.is_rel or is_debug(c, i):
            continue
        owner = owners[i]
        if owner is None:  # data pointing at code (function pointers): those stay
            work += [c.syms[k][3] for k in c.relocated_symbols(i) if c.syms[k][3] in c.text]
        else:
            rels_of.setdefault(owner, []).append(i)
    calls: dict[int, list[int]] = {}
    for caller, callee in c.call_edges():
        calls.setdefault(c.syms[caller][3], []).append(c.syms[callee][3])
    kept: set[int] = set()
    while work:
        t = work.pop()
        if t in kept or t not in c.text:
            continue
        kept.add(t)
        for r in rels_of.get(t, ()):
            work += [c.syms[k][3] for k in c.relocated_symbols(r)]
        work += calls.get(t, ())
    return kept


def info_entries(d: bytes, name: str) -> Iterator[tuple[int, bytes]]:
    """(attribute, whole entry) of an .nv.info section."""
    p = 0
    while p < len(d):
        if len(d) - p < 4:
            raise PruneRefused(f"{name} ends inside an entry")
        fmt, attr = d[p], d[p + 1]
        n = 4 + struct.unpack_from("<H", d, p + 2)[0] if fmt == EIFMT_SVAL else 4
        if n > len(d) - p:
            raise PruneRefused(f"{name} ends inside an entry")
        yield attr, d[p : p + n]
        p += n


def layout(c: Cubin, keep: list[int], bodies: dict[int, bytes], headers: list[list[int]]) -> bytes:
    """A new image of the sections `keep` (ascending, 0 first; they become sections 0, 1,
    ...) laid out in their old file order with `bodies` replacing contents, `headers[i]` the
    raw header of old section i (offset and size are set here), the section name table
    renumbered and the program headers moved with their sections."""
    new_index = {old: new for new, old in enumerate(keep)}
    out = bytearray(c.image[: EHDR.size])
    new_off: dict[int, int] = {}
    new_size: dict[int, int] = {}
    for i in sorted(keep[1:], key=lambda i: c.secs[i].offset):
        s = c.secs[i]
        body = bodies.get(i, c.data(i)) if s.in_file else b""
        if body:
            out += bytes(-len(out) % max(1, s.align))
        new_off[i] = len(out)
        new_size[i] = len(body) if s.in_file else s.size
        out += body
    out += bytes(-len(out) % 8)
    shoff = len(out)
    for i in keep:
        raw = list(headers[i])
        if i:
            raw[4], raw[5] = new_off[i], new_size[i]
        out += SHDR.pack(*raw)
    out += bytes(-len(out) % 8)
    phoff = len(out) if c.phnum else 0
    for p in range(c.phnum):
        out += PHDR.pack(*segment(c, p, phoff, new_off, new_size))
    struct.pack_into("<QQ", out, 32, phoff, shoff)
    struct.pack_into("<HH", out, 60, len(keep), new_index[c.shstrndx])
    return bytes(out)


def segment(
    c: Cubin, p: int, phoff: int, new_off: dict[int, int], new_size: dict[int, int]
) -> tuple[int, ...]:
    """Program header `p` moved with the sections it covers."""
    ptype, flags, off, vaddr, paddr, filesz, memsz, align = PHDR.unpack_from(
        c.image, c.phoff + p * PHDR.size
    )
    if ptype == 6 or (off == c.phoff and filesz == c.phnum * PHDR.size):  # the header table
        return ptype, flags, phoff, vaddr, paddr, filesz, memsz, align
    extra = memsz - filesz
    if extra < 0:
        raise PruneRefused(f"segment {p} holds more file bytes than memory")
    inside = []
    for i, s in enumerate(c.secs):
        if i == 0 or not s.in_file or s.size == 0:
            continue
        starts_in = off <= s.offset < off + filesz
        if starts_in != (off < s.offset + s.size <= off + filesz):
            raise PruneRefused(f"section {s.name!r} straddles segment {p}")
        if starts_in:
            inside.append(i)
    live = [i for i in inside if new_size.get(i)]  # sections left out have none
    if live:
        start = min(new_off[i] for i in live)
        end = max(new_off[i] + new_size[i] for i in live)
        return ptype, flags, start, vaddr, paddr, end - start, end - start + extra, align
    nobits = [
        i
        for i, s in enumerate(c.secs)
        if i in new_off and not s.in_file and off <= s.offset <= off + memsz
    ]
    start = new_off[nobits[0]] if nobits else 0
    return ptype, flags, start, vaddr, paddr, 0, extra, align
