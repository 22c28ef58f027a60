"""A cubin cut down to the kernels an archive's graphs launch, so that LOAD hands the
driver less code (SAVE side; see docs/restore.md, "Pruned cubins").

Loading an image costs the driver time in proportion to its bytes, and PyTorch's cubins
carry hundreds of kernels of which a decode graph launches one or two. Every function no
graph can reach becomes a stub: its text shrinks to its own last EXIT instruction and
what follows it (an EXIT and the branch-to-self after it), its .nv.info keeps only
attributes that name no code offset plus that one EXIT, and the sections it alone owns
(relocations, constant banks) are emptied. Debug sections are emptied too. Nothing is
renumbered: section and symbol indices stay as they are, and kept sections keep their
bytes. The driver refuses a function whose text is empty (CUDA_ERROR_INVALID_IMAGE when a
kernel of the image is first resolved), hence stubs.

Functions are kept when a graph launches them, when a kept function calls them
(.nv.callgraph) or relocates against them, or when anything but debug information
relocates against them (function pointers in constant banks or globals).

The input is this process's own loaded image; anything unexpected (another ELF flavour,
an unknown section kind, out-of-range offsets, a kernel that is not in the image) raises
PruneRefused, and the caller stores the image whole. SAVE then loads both images and
compares every launched kernel (kiln.store), so a driver that reads the pruned image
differently also leaves it whole.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass

__all__ = ["PruneRefused", "PrunedCubin", "prune_cubin"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_ET_EXEC, _EM_CUDA = 2, 190
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_NOTE, _SHT_NOBITS, _SHT_REL = (
    1,
    2,
    3,
    4,
    7,
    8,
    9,
)
_SHT_NV_INFO, _SHT_NV_CALLGRAPH, _SHT_NV_COMPAT = 0x70000000, 0x70000001, 0x70000086
_KNOWN_TYPES = {
    0,
    _SHT_PROGBITS,
    _SHT_SYMTAB,
    _SHT_STRTAB,
    _SHT_RELA,
    _SHT_NOTE,
    _SHT_NOBITS,
    _SHT_REL,
    _SHT_NV_INFO,
    _SHT_NV_CALLGRAPH,
    _SHT_NV_COMPAT,
}
# Every section kind seen in PyTorch's, cuBLAS's and Triton's sm_90 cubins; anything else
# (unified function tables, relocation actions, ...) may tie functions together in ways
# this module does not follow, so such an image is kept whole.
_KNOWN_PREFIXES = (
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
_SHF_EXECINSTR, _SHF_INFO_LINK = 0x4, 0x40
_STT_FUNC = 2
_SHN_LORESERVE = 0xFF00
# .nv.info attributes (EIATTR_*) that carry values only, never a code offset: a stub keeps
# these (parameter layout, register and stack figures, API version, externs).
_EIATTR_EXIT_INSTR_OFFSETS = 0x1C
_VALUE_ATTRIBUTES = {
    0x04,
    0x05,
    0x0A,
    0x0F,
    0x10,
    0x11,
    0x12,
    0x17,
    0x19,
    0x1B,
    0x1E,
    0x23,
    0x36,
    0x37,
    0x45,
    0x50,
}
_EIFMT_SVAL = 4
_INSTRUCTION = 16
# An unpredicated EXIT's low bytes on Volta through Hopper; a function whose last EXIT
# reads otherwise is kept whole rather than stubbed with bytes of unknown meaning.
_EXIT_OPCODE = b"\x4d\x79"
_STUB_BYTES = 128
_MAX_ALIGN = 1 << 16


class PruneRefused(ValueError):
    """This image is stored whole; the message says why."""


@dataclass(frozen=True)
class PrunedCubin:
    image: bytes
    kept: int  # functions left whole
    stubbed: int  # functions reduced to a stub


@dataclass
class _Section:
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
        return self.type != _SHT_NOBITS

    @property
    def is_rel(self) -> bool:
        return self.type in (_SHT_REL, _SHT_RELA)


def _cstr(table: bytes, off: int, what: str) -> str:
    end = table.find(b"\0", off)
    if off >= len(table) or end < 0:
        raise PruneRefused(f"{what}: name offset {off} is outside its string table")
    return table[off:end].decode("utf-8", "replace")


class _Cubin:
    def __init__(self, image: bytes) -> None:
        self.image = image
        if len(image) < _EHDR.size or image[:4] != b"\x7fELF":
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
        ) = _EHDR.unpack_from(image, 0)
        if ident[4] != 2 or ident[5] != 1 or etype != _ET_EXEC or machine != _EM_CUDA:
            raise PruneRefused("not a little-endian 64-bit CUDA executable")
        if shentsize != _SHDR.size or not 0 < shnum < _SHN_LORESERVE or shstrndx >= shnum:
            raise PruneRefused("unexpected section header table")
        if phnum and phentsize != _PHDR.size:
            raise PruneRefused("unexpected program header table")
        self._within(shoff, shnum * _SHDR.size, "section header table")
        self._within(phoff, phnum * _PHDR.size, "program header table")
        self.phoff, self.phnum = phoff, phnum
        raws = [list(_SHDR.unpack_from(image, shoff + i * _SHDR.size)) for i in range(shnum)]
        for i, r in enumerate(raws):
            if r[1] not in _KNOWN_TYPES:
                raise PruneRefused(f"section {i} has an unknown type 0x{r[1]:x}")
            if r[1] != _SHT_NOBITS:
                self._within(r[4], r[5], f"section {i}")
            if r[8] > _MAX_ALIGN or r[8] & (r[8] - 1):
                raise PruneRefused(f"section {i} has an implausible alignment {r[8]}")
        names = self._bytes(raws[shstrndx])
        self.secs = [
            _Section(
                _cstr(names, r[0], f"section {i}") if i else "",
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
            if not s.name.startswith(_KNOWN_PREFIXES):
                raise PruneRefused(f"section {s.name!r} is of a kind pruning does not follow")
            if s.is_rel and (s.info >= shnum or s.info == 0):
                raise PruneRefused(f"relocation section {s.name!r} targets no section")
        symtabs = [i for i, s in enumerate(self.secs) if s.type == _SHT_SYMTAB]
        if len(symtabs) != 1:
            raise PruneRefused(f"{len(symtabs)} symbol tables")
        self.symtab = symtabs[0]
        st = self.secs[self.symtab]
        if st.size % _SYM.size or not 0 < st.link < shnum or self.secs[st.link].type != _SHT_STRTAB:
            raise PruneRefused("malformed symbol table")
        strings = self._bytes(self.secs[st.link].raw)
        self.syms = [
            list(_SYM.unpack_from(image, st.offset + k * _SYM.size))
            for k in range(st.size // _SYM.size)
        ]
        self.sym_names = [_cstr(strings, s[0], f"symbol {k}") for k, s in enumerate(self.syms)]
        for k, sym in enumerate(self.syms):
            special = sym[3] >= _SHN_LORESERVE
            if special and sym[3] not in (0xFFF1, 0xFFF2) or not special and sym[3] >= shnum:
                raise PruneRefused(f"symbol {k} names section {sym[3]}")
        self.text = {
            i
            for i, s in enumerate(self.secs)
            if s.name.startswith(".text.") and s.type == _SHT_PROGBITS and s.flags & _SHF_EXECINSTR
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
        size = 24 if s.type == _SHT_RELA else 16
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
            if s.type != _SHT_NV_CALLGRAPH:
                continue
            d = self.data(i)
            if len(d) % 8:
                raise PruneRefused("malformed .nv.callgraph")
            for caller, callee in struct.iter_unpack("<Ii", d):
                if caller and callee > 0:
                    if caller >= len(self.syms) or callee >= len(self.syms):
                        raise PruneRefused(".nv.callgraph names a symbol that does not exist")
                    yield caller, callee


def _owner(c: _Cubin, i: int) -> int | None:
    """The function (text section) a section belongs to, or None for shared sections; a
    relocation section belongs to whatever its target belongs to."""
    if c.secs[i].is_rel:
        i = c.secs[i].info
        if c.secs[i].is_rel:
            return None
    s = c.secs[i]
    if i in c.text:
        return i
    if s.flags & _SHF_INFO_LINK and s.info in c.text:
        return s.info
    return None


def _is_debug(c: _Cubin, i: int) -> bool:
    s = c.secs[i]
    target = c.secs[s.info].name if s.is_rel else s.name
    return target.startswith((".debug", ".nv_debug"))


def _kept_functions(
    c: _Cubin, kernels: Collection[str], whole: set[int], owners: list[int | None]
) -> set[int]:
    """Functions left whole: the launched kernels, the functions in `whole` (those that
    cannot be stubbed), and everything these reach."""
    by_name = {n: k for k, n in enumerate(c.sym_names) if (c.syms[k][1] & 0xF) == _STT_FUNC}
    work: list[int] = list(whole)
    for name in kernels:
        k = by_name.get(name)
        if k is None or c.syms[k][3] not in c.text:
            raise PruneRefused(f"kernel {name} is not defined in this cubin")
        work.append(c.syms[k][3])
    rels_of: dict[int, list[int]] = {}
    for i, s in enumerate(c.secs):
        if not s.is_rel or _is_debug(c, i):
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


def _info_entries(d: bytes, name: str) -> Iterator[tuple[int, bytes]]:
    """(attribute, whole entry) of an .nv.info section."""
    p = 0
    while p < len(d):
        if len(d) - p < 4:
            raise PruneRefused(f"{name} ends inside an entry")
        fmt, attr = d[p], d[p + 1]
        n = 4 + struct.unpack_from("<H", d, p + 2)[0] if fmt == _EIFMT_SVAL else 4
        if n > len(d) - p:
            raise PruneRefused(f"{name} ends inside an entry")
        yield attr, d[p : p + n]
        p += n


def _stub(c: _Cubin, text: int, info: int | None) -> tuple[bytes, bytes] | None:
    """(text, .nv.info) of a function reduced to its last EXIT, or None to keep it whole."""
    if info is None:
        return None
    name = c.secs[info].name
    exits: list[int] = []
    kept_attrs = bytearray()
    for attr, entry in _info_entries(c.data(info), name):
        if (
            attr == _EIATTR_EXIT_INSTR_OFFSETS
            and entry[0] == _EIFMT_SVAL
            and (len(entry) - 4) % 4 == 0
        ):
            exits += struct.unpack_from(f"<{(len(entry) - 4) // 4}I", entry, 4)
        elif attr in _VALUE_ATTRIBUTES:
            kept_attrs += entry
    body = c.data(text)
    if not exits:
        return None
    last = max(exits)
    size = min(_STUB_BYTES, len(body) - last) // _INSTRUCTION * _INSTRUCTION
    if last % _INSTRUCTION or size < 2 * _INSTRUCTION or body[last : last + 2] != _EXIT_OPCODE:
        return None
    exit_at_zero = struct.pack("<BBHI", _EIFMT_SVAL, _EIATTR_EXIT_INSTR_OFFSETS, 4, 0)
    return body[last : last + size], bytes(kept_attrs) + exit_at_zero


def prune_cubin(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    """`image` with every function that `kernels` cannot reach reduced to a stub.
    PruneRefused when the image is not one this module understands or names no such
    function."""
    try:
        return _prune(image, kernels)
    except (struct.error, IndexError, KeyError, OverflowError) as e:  # checks above missed it
        raise PruneRefused(f"malformed image ({e!r})") from e


def _prune(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    c = _Cubin(image)
    owners = [_owner(c, i) for i in range(len(c.secs))]
    infos = {
        owners[i]: i
        for i, s in enumerate(c.secs)
        if s.type == _SHT_NV_INFO and owners[i] is not None
    }
    stubs = {t: _stub(c, t, infos.get(t)) for t in c.text}
    kept = _kept_functions(c, kernels, {t for t, st in stubs.items() if st is None}, owners)
    bodies: dict[int, bytes] = {}  # new contents; b"" empties a section
    syms_in: dict[int, list[list[int]]] = {}
    for sym in c.syms:
        syms_in.setdefault(sym[3], []).append(sym)
    gone = c.text - kept
    for t in gone:
        stub = stubs[t]
        assert stub is not None  # functions without a stub are kept
        bodies[t], bodies[infos[t]] = stub
        for sym in syms_in.get(t, ()):
            sym[4], sym[5] = 0, len(stub[0]) if (sym[1] & 0xF) == _STT_FUNC else 0
    for i, s in enumerate(c.secs):
        if not s.in_file or i in bodies:
            continue
        if _is_debug(c, i) or owners[i] is not None and owners[i] not in kept:
            bodies[i] = b""
    if not gone:
        raise PruneRefused("every function is launched or reachable")
    return PrunedCubin(_rewrite(c, bodies), len(kept), len(gone))


def _rewrite(c: _Cubin, bodies: dict[int, bytes]) -> bytes:
    order = sorted(range(1, len(c.secs)), key=lambda i: c.secs[i].offset)
    ehdr = _EHDR.size
    out = bytearray(c.image[:ehdr])
    new_off: dict[int, int] = {}
    new_size: dict[int, int] = {}
    for i in order:
        s = c.secs[i]
        body = bodies.get(i, c.data(i)) if s.in_file else b""
        if body:
            out += bytes(-len(out) % max(1, s.align))
        new_off[i] = len(out)
        new_size[i] = len(body) if s.in_file else s.size
        out += body
    # The symbol table keeps its size; stubbed functions' symbols changed.
    st = new_off[c.symtab]
    for k, sym in enumerate(c.syms):
        _SYM.pack_into(out, st + k * _SYM.size, *sym)
    out += bytes(-len(out) % 8)
    shoff = len(out)
    for i, s in enumerate(c.secs):
        raw = list(s.raw)
        if i:
            raw[4], raw[5] = new_off[i], new_size[i]
        out += _SHDR.pack(*raw)
    out += bytes(-len(out) % 8)
    phoff = len(out) if c.phnum else 0
    for p in range(c.phnum):
        out += _PHDR.pack(*_segment(c, p, phoff, new_off, new_size))
    struct.pack_into("<QQ", out, 32, phoff, shoff)
    return bytes(out)


def _segment(
    c: _Cubin, p: int, phoff: int, new_off: dict[int, int], new_size: dict[int, int]
) -> tuple[int, ...]:
    """Program header `p` moved with the sections it covers."""
    ptype, flags, off, vaddr, paddr, filesz, memsz, align = _PHDR.unpack_from(
        c.image, c.phoff + p * _PHDR.size
    )
    if ptype == 6 or (off == c.phoff and filesz == c.phnum * _PHDR.size):  # the header table
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
    live = [i for i in inside if new_size[i]]
    if live:
        start = min(new_off[i] for i in live)
        end = max(new_off[i] + new_size[i] for i in live)
        return ptype, flags, start, vaddr, paddr, end - start, end - start + extra, align
    nobits = [
        i for i, s in enumerate(c.secs) if i and not s.in_file and off <= s.offset <= off + memsz
    ]
    start = new_off[nobits[0]] if nobits else 0
    return ptype, flags, start, vaddr, paddr, 0, extra, align
