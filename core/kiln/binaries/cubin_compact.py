"""A cubin reduced to the functions an archive's graphs reach, with everything else
removed (SAVE side; see docs/restore.md, "Compacted cubins").

Stubbing unreached functions (kiln.binaries.cubin_prune) leaves their sections, symbols and names:
a PyTorch cubin of 1,278 functions still holds 3,928 sections and 5,067 symbols, and the
driver's load and first function lookup cost grows with those, not with code bytes (the
4.4 MB stubbed form of one cost 34 ms for a single kernel). Here the sections a removed
function owns, and the symbols defined in them, are left out entirely; sections and
symbols are renumbered, the string tables rebuilt, and every reference to a section or a
symbol is rewritten: section header links, relocation entries, text sections' symbol
field, .nv.callgraph edges and the .nv.info attributes that name symbols.

Anything that could name a removed symbol or section in a way this module does not
rewrite (an .nv.info attribute it does not know, a relocation or call against a removed
function, a string table shared by symbols and sections) raises PruneRefused, and SAVE
falls back to the stubbed form, then to the whole cubin. SAVE also reads the result back
and compares every kept function's code, relocations and .nv.info with the original's by
name (kiln.binaries.cubin_verify; any difference stores the cubin whole), then loads both and
compares every launched kernel (kiln.binaries.pruned_binaries).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection

from kiln.binaries.cubin_elf import (
    EIFMT_SVAL,
    SHF_INFO_LINK,
    SHN_LORESERVE,
    SHT_NV_CALLGRAPH,
    SHT_NV_INFO,
    SHT_REL,
    SHT_RELA,
    SHT_SYMTAB,
    STT_FUNC,
    SYM,
    Cubin,
    PruneRefused,
    info_entries,
    is_debug,
    layout,
    owner,
    reached_functions,
    refuse_malformed,
)
from kiln.binaries.cubin_prune import PrunedCubin

__all__ = ["SYMBOL_FIRST", "SYMBOL_LIST", "compact_cubin"]

# Renumbers a symbol; refuses one that was removed (the string says where it was named).
_Renumber = Callable[[int, str], int]

# .nv.info attributes (EIATTR_*) whose 4-byte-format payload names symbols: the first word
# (PARAM_CBANK: the constant bank's section symbol; FRAME_SIZE, MIN_STACK_SIZE,
# MAX_STACK_SIZE, REGCOUNT: the function) or every word (EXTERNS).
SYMBOL_FIRST = {0x0A, 0x11, 0x12, 0x23, 0x2F}
SYMBOL_LIST = {0x0F}
# Attributes whose payload holds values or code offsets only (never a symbol or section
# index); anything else in a kept function's .nv.info is refused. Entries of the 1- and
# 2-byte formats carry two bytes of value and are always kept.
_NO_SYMBOL = {
    0x05,  # MAX_THREADS
    0x10,  # REQNTID
    0x17,  # KPARAM_INFO
    0x1C,  # EXIT_INSTR_OFFSETS
    0x1D,  # S2RCTAID_INSTR_OFFSETS
    0x1E,  # CRS_STACK_SIZE
    0x28,  # COOP_GROUP_INSTR_OFFSETS
    0x29,  # COOP_GROUP_MAX_REGIDS
    0x31,  # INT_WARP_WIDE_INSTR_OFFSETS
    0x34,  # INDIRECT_BRANCH_TARGETS: (offset, flags, count, target offsets...)
    0x36,  # SW_WAR
    0x37,  # CUDA_API_VERSION
    0x39,  # MBARRIER_INSTR_OFFSETS
    0x44,  # UNUSED_LOAD_BYTE_OFFSET: (offset, mask) pairs
    0x46,  # SYSCALL_OFFSETS
    0x55,  # (kind, offset) pairs; every offset seen is an instruction of the function
}


@refuse_malformed
def compact_cubin(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    """`image` without the functions `kernels` cannot reach. PruneRefused when the image
    is not one this module understands, nothing can be removed, or a kernel is missing."""
    return _compact(image, kernels)


def _compact(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    c = Cubin(image)
    owners = [owner(c, i) for i in range(len(c.secs))]
    kept_functions = reached_functions(c, kernels, set(), owners)
    removed = c.text - kept_functions
    if not removed:
        raise PruneRefused("every function is launched or reachable")
    st = c.secs[c.symtab]
    if st.link == c.shstrndx:
        raise PruneRefused("symbols and sections share one string table")
    keep = [i for i in range(len(c.secs)) if owners[i] is None or owners[i] in kept_functions]
    section = {old: new for new, old in enumerate(keep)}
    kept_syms = [k for k, sym in enumerate(c.syms) if _defined_in(sym[3], section)]
    symbol = {old: new for new, old in enumerate(kept_syms)}

    def sym(old: int, what: str) -> int:
        if old not in symbol:
            raise PruneRefused(f"{what} names symbol {old}, which was removed")
        return symbol[old]

    bodies: dict[int, bytes] = {}
    for i in keep:
        s = c.secs[i]
        if not s.in_file or i == 0:
            continue
        if is_debug(c, i):
            bodies[i] = b""  # debug relocations name removed functions; the driver needs none
        elif s.is_rel:
            bodies[i] = _relocations(c, i, sym)
        elif s.type == SHT_NV_CALLGRAPH:
            bodies[i] = _callgraph(c, i, symbol, sym)
        elif s.type == SHT_NV_INFO:
            bodies[i] = _info(c, i, owners[i] is None, symbol, sym)
    names = _StringTable()
    sym_names = _StringTable()
    headers = [list(s.raw) for s in c.secs]
    for i in keep[1:]:
        headers[i] = _header(c, i, section, sym, names)
    bodies[c.shstrndx] = names.data()
    bodies[c.symtab] = _symbols(c, kept_syms, section, sym_names)
    bodies[st.link] = sym_names.data()
    headers[c.symtab][7] = sum(1 for k in kept_syms if k < st.info)  # locals come first
    return PrunedCubin(layout(c, keep, bodies, headers), len(kept_functions), 0, len(removed))


def _defined_in(shndx: int, section: dict[int, int]) -> bool:
    return shndx == 0 or shndx >= SHN_LORESERVE or shndx in section


class _StringTable:
    """A rebuilt ELF string table: each name once, offset 0 the empty name."""

    def __init__(self) -> None:
        self._bytes = bytearray(b"\0")
        self._at: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        if name not in self._at:
            self._at[name] = len(self._bytes)
            self._bytes += name.encode() + b"\0"
        return self._at[name]

    def data(self) -> bytes:
        return bytes(self._bytes)


def _header(
    c: Cubin, i: int, section: dict[int, int], sym: _Renumber, names: _StringTable
) -> list[int]:
    """Section i's raw header with its name, link and info renumbered."""
    s = c.secs[i]
    raw = list(s.raw)
    raw[0] = names.add(s.name)
    if s.link:
        if s.link not in section:
            raise PruneRefused(f"section {s.name!r} links to a removed section")
        raw[6] = section[s.link]
    if s.type == SHT_SYMTAB:
        return raw  # info: the count of local symbols, set by the caller
    if s.type in (SHT_REL, SHT_RELA) or s.flags & SHF_INFO_LINK:
        if s.info not in section:
            raise PruneRefused(f"section {s.name!r} refers to a removed section")
        raw[7] = section[s.info]
    elif i in c.text:
        # A function's text names its symbol in the low 24 bits (the register count above).
        k = s.info & 0xFFFFFF
        if k >= len(c.syms) or c.syms[k][3] != i or (c.syms[k][1] & 0xF) != STT_FUNC:
            raise PruneRefused(f"section {s.name!r} does not name its function's symbol")
        raw[7] = (s.info & ~0xFFFFFF) | sym(k, s.name)
    elif s.info:
        raise PruneRefused(f"section {s.name!r} has an info field compaction does not follow")
    return raw


def _symbols(c: Cubin, kept: list[int], section: dict[int, int], names: _StringTable) -> bytes:
    out = bytearray()
    for k in kept:
        name, info, other, shndx, value, size = c.syms[k]
        if 0 < shndx < SHN_LORESERVE:
            shndx = section[shndx]
        out += SYM.pack(names.add(c.sym_names[k]) if name else 0, info, other, shndx, value, size)
    return bytes(out)


def _relocations(c: Cubin, i: int, sym: _Renumber) -> bytes:
    s = c.secs[i]
    size = 24 if s.type == SHT_RELA else 16
    data = bytearray(c.data(i))
    for e, old in enumerate(c.relocated_symbols(i)):  # validated entries, in order
        (info,) = struct.unpack_from("<Q", data, e * size + 8)
        new = sym(old, f"relocation section {s.name!r}")
        struct.pack_into("<Q", data, e * size + 8, (new << 32) | (info & 0xFFFFFFFF))
    return bytes(data)


def _callgraph(c: Cubin, i: int, symbol: dict[int, int], sym: _Renumber) -> bytes:
    """Edges of removed callers go; a kept caller's edge to a removed callee is refused
    (what a kept function calls is kept); markers (caller 0, negative callee) stay."""
    d = c.data(i)
    if len(d) % 8:
        raise PruneRefused("malformed .nv.callgraph")
    out = bytearray()
    for caller, callee in struct.iter_unpack("<Ii", d):
        if caller == 0 and callee < 0:
            out += struct.pack("<Ii", caller, callee)
            continue
        if caller not in symbol:
            continue
        out += struct.pack("<Ii", sym(caller, ".nv.callgraph"), sym(callee, ".nv.callgraph"))
    return bytes(out)


def _info(c: Cubin, i: int, shared: bool, symbol: dict[int, int], sym: _Renumber) -> bytes:
    """An .nv.info section with symbols renumbered; in the shared one, the entries of
    removed functions go."""
    name = c.secs[i].name
    out = bytearray()
    for attr, entry in info_entries(c.data(i), name):
        if entry[0] != EIFMT_SVAL:
            out += entry
            continue
        payload = entry[4:]
        if attr in SYMBOL_FIRST:
            if len(payload) < 4:
                raise PruneRefused(f"{name}: attribute 0x{attr:x} is too short")
            (k,) = struct.unpack_from("<I", payload)
            if shared and k not in symbol:
                continue
            out += entry[:4] + struct.pack("<I", sym(k, name)) + payload[4:]
        elif attr in SYMBOL_LIST:
            if len(payload) % 4:
                raise PruneRefused(f"{name}: attribute 0x{attr:x} is malformed")
            ks = struct.unpack(f"<{len(payload) // 4}I", payload)
            out += entry[:4] + struct.pack(f"<{len(ks)}I", *(sym(k, name) for k in ks))
        elif attr in _NO_SYMBOL and not shared:
            out += entry
        else:
            raise PruneRefused(f"{name}: attribute 0x{attr:x} may name symbols")
    return bytes(out)
