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
compares every launched kernel (kiln.graphs.store), so a driver that reads the pruned image
differently also leaves it whole.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass

from kiln.binaries.cubin_elf import (
    EIFMT_SVAL,
    SHT_NV_INFO,
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

__all__ = ["PruneRefused", "PrunedCubin", "prune_cubin"]

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
_INSTRUCTION = 16
# An unpredicated EXIT's low bytes on Volta through Hopper; a function whose last EXIT
# reads otherwise is kept whole rather than stubbed with bytes of unknown meaning.
_EXIT_OPCODE = b"\x4d\x79"
_STUB_BYTES = 128


@dataclass(frozen=True)
class PrunedCubin:
    image: bytes
    kept: int  # functions left whole
    stubbed: int  # functions reduced to a stub
    removed: int = 0  # functions left out entirely (kiln.binaries.cubin_compact)


def _stub(c: Cubin, text: int, info: int | None) -> tuple[bytes, bytes] | None:
    """(text, .nv.info) of a function reduced to its last EXIT, or None to keep it whole."""
    if info is None:
        return None
    name = c.secs[info].name
    exits: list[int] = []
    kept_attrs = bytearray()
    for attr, entry in info_entries(c.data(info), name):
        if (
            attr == _EIATTR_EXIT_INSTR_OFFSETS
            and entry[0] == EIFMT_SVAL
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
    exit_at_zero = struct.pack("<BBHI", EIFMT_SVAL, _EIATTR_EXIT_INSTR_OFFSETS, 4, 0)
    return body[last : last + size], bytes(kept_attrs) + exit_at_zero


@refuse_malformed
def prune_cubin(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    """`image` with every function that `kernels` cannot reach reduced to a stub.
    PruneRefused when the image is not one this module understands or names no such
    function."""
    return _prune(image, kernels)


def _prune(image: bytes, kernels: Collection[str]) -> PrunedCubin:
    c = Cubin(image)
    owners = [owner(c, i) for i in range(len(c.secs))]
    infos = {
        owners[i]: i
        for i, s in enumerate(c.secs)
        if s.type == SHT_NV_INFO and owners[i] is not None
    }
    stubs = {t: _stub(c, t, infos.get(t)) for t in c.text}
    kept = reached_functions(c, kernels, {t for t, st in stubs.items() if st is None}, owners)
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
            sym[4], sym[5] = 0, len(stub[0]) if (sym[1] & 0xF) == STT_FUNC else 0
    for i, s in enumerate(c.secs):
        if not s.in_file or i in bodies:
            continue
        if is_debug(c, i) or owners[i] is not None and owners[i] not in kept:
            bodies[i] = b""
    if not gone:
        raise PruneRefused("every function is launched or reachable")
    # The symbol table keeps its size; stubbed functions' symbols changed.
    bodies[c.symtab] = b"".join(SYM.pack(*sym) for sym in c.syms)
    keep = list(range(len(c.secs)))
    return PrunedCubin(layout(c, keep, bodies, [s.raw for s in c.secs]), len(kept), len(gone))
