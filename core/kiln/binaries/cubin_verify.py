"""SAVE's structural check of a compacted cubin (kiln.binaries.cubin_compact) against its original.

Compaction renumbers every section and symbol and rewrites every reference to them. A
renumbering slip that points a call, a constant-bank relocation or an .nv.info entry at
another kept symbol changes no attribute or parameter layout the driver reports, so the
driver comparison (kiln.binaries.pruned_binaries) cannot see it. This check reads the result back
and compares it with the original by name, independent of indices:

- every kept function's code (its text section's bytes, flags, alignment and register
  count) and symbol (binding, visibility, value, size, section) are the original's;
- every other section the result keeps (constant banks, globals) holds the original's bytes;
- every relocation section lists the original's entries in order, each by (offset, type,
  addend, symbol name), against the same target section;
- every .nv.info entry is the original's, with the symbols it names compared by name
  (the shared .nv.info may only lose the entries of removed functions);
- every .nv.callgraph edge is the original's (only edges of removed callers may go).

The first difference is returned as text; SAVE then stores the cubin whole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from kiln.binaries.cubin_compact import SYMBOL_FIRST, SYMBOL_LIST
from kiln.binaries.cubin_elf import (
    EIFMT_SVAL,
    SHT_NV_CALLGRAPH,
    SHT_NV_INFO,
    SHT_RELA,
    SHT_STRTAB,
    SHT_SYMTAB,
    STT_FUNC,
    Cubin,
    PruneRefused,
    info_entries,
    is_debug,
    owner,
)

__all__ = ["compacted_code_difference"]

# A section's or symbol's identity across the two images: names, never indices.
_Key = tuple[object, ...]


def compacted_code_difference(original: bytes, compacted: bytes) -> str | None:
    """What the compacted image changes of the code it keeps, or None when nothing."""
    try:
        return _difference(Cubin(original), Cubin(compacted))
    except PruneRefused as e:
        return f"it cannot be read back ({e})"
    except (struct.error, IndexError, KeyError, OverflowError) as e:
        return f"it cannot be read back ({e!r})"


def _difference(a: Cubin, b: Cubin) -> str | None:
    by_name_a = _sections_by_name(a)
    by_name_b = _sections_by_name(b)
    if by_name_a is None or by_name_b is None:
        return "two sections share a name"
    for check in (_functions, _data, _relocations, _infos, _callgraph):
        why = check(a, b, by_name_a, by_name_b)
        if why is not None:
            return why
    return None


def _sections_by_name(c: Cubin) -> dict[str, int] | None:
    out: dict[str, int] = {}
    for i, s in enumerate(c.secs[1:], 1):
        if s.name in out:
            return None
        out[s.name] = i
    return out


def _symbol(c: Cubin, k: int) -> str:
    """A symbol by name; an unnamed (section) symbol by its section's name."""
    if c.sym_names[k]:
        return c.sym_names[k]
    shndx = c.syms[k][3]
    if 0 < shndx < len(c.secs):
        return f"section {c.secs[shndx].name}"
    return f"unnamed symbol of section {shndx}"


def _section_name(c: Cubin, i: int) -> str:
    return c.secs[i].name if 0 < i < len(c.secs) else f"#{i}"


def _functions(a: Cubin, b: Cubin, in_a: dict[str, int], _in_b: dict[str, int]) -> str | None:
    for i in sorted(b.text):
        s = b.secs[i]
        j = in_a.get(s.name)
        if j is None or j not in a.text:
            return f"function section {s.name} is not in the original"
        o = a.secs[j]
        code_a, code_b = a.data(j), b.data(i)
        if code_a != code_b:
            at = next((n for n, (x, y) in enumerate(zip(code_a, code_b)) if x != y), None)
            where = f"at byte {at}" if at is not None else f"in length ({len(code_b)})"
            return f"{s.name}: the code differs from the original's {where}"
        if (o.flags, o.align, o.info >> 24) != (s.flags, s.align, s.info >> 24):
            return f"{s.name}: flags, alignment or register count differ from the original's"
        if _symbol(a, o.info & 0xFFFFFF) != _symbol(b, s.info & 0xFFFFFF):
            return f"{s.name}: names another function symbol than the original"
    functions_a = {
        c: k for k, c in enumerate(a.sym_names) if c and (a.syms[k][1] & 0xF) == STT_FUNC
    }
    for k, name in enumerate(b.sym_names):
        if not name or (b.syms[k][1] & 0xF) != STT_FUNC:
            continue
        if name not in functions_a:
            return f"function symbol {name} is not in the original"
        sa, sb = a.syms[functions_a[name]], b.syms[k]
        if (sa[1], sa[2], sa[4], sa[5]) != (sb[1], sb[2], sb[4], sb[5]) or _section_name(
            a, sa[3]
        ) != _section_name(b, sb[3]):
            return f"function symbol {name} differs from the original's"
    return None


def _rewritten(c: Cubin, i: int) -> bool:
    """Sections compaction rewrites (checked entry by entry below) or empties (debug)."""
    s = c.secs[i]
    return (
        s.is_rel
        or s.type in (SHT_NV_INFO, SHT_NV_CALLGRAPH, SHT_SYMTAB, SHT_STRTAB)
        or is_debug(c, i)
    )


def _data(a: Cubin, b: Cubin, in_a: dict[str, int], _in_b: dict[str, int]) -> str | None:
    for i, s in enumerate(b.secs[1:], 1):
        if i in b.text or _rewritten(b, i):
            continue
        j = in_a.get(s.name)
        if j is None:
            return f"section {s.name} is not in the original"
        o = a.secs[j]
        if a.data(j) != b.data(i) or (o.type, o.flags, o.size) != (s.type, s.flags, s.size):
            return f"section {s.name} differs from the original's"
    return None


def _relocation_entries(c: Cubin, i: int) -> Iterator[_Key]:
    s = c.secs[i]
    size = 24 if s.type == SHT_RELA else 16
    data = c.data(i)
    for e, k in enumerate(c.relocated_symbols(i)):
        offset, info = struct.unpack_from("<QQ", data, e * size)
        addend = struct.unpack_from("<q", data, e * size + 16)[0] if size == 24 else 0
        yield (offset, info & 0xFFFFFFFF, addend, _symbol(c, k))


def _relocations(a: Cubin, b: Cubin, in_a: dict[str, int], in_b: dict[str, int]) -> str | None:
    for i, s in enumerate(b.secs[1:], 1):
        if not s.is_rel or is_debug(b, i):
            continue
        j = in_a.get(s.name)
        if j is None:
            return f"relocation section {s.name} is not in the original"
        if _section_name(a, a.secs[j].info) != _section_name(b, s.info):
            return f"relocation section {s.name} applies to another section than the original"
        got, want = list(_relocation_entries(b, i)), list(_relocation_entries(a, j))
        if got != want:
            n = next(
                (e for e, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want))
            )
            return (
                f"relocation {n} of {s.name} differs from the original's: "
                f"{got[n] if n < len(got) else 'missing'} against "
                f"{want[n] if n < len(want) else 'none'} (offset, type, addend, symbol)"
            )
    # A relocation section of a kept section that the result lost.
    for j, o in enumerate(a.secs[1:], 1):
        kept_target = _section_name(a, o.info) in in_b
        if o.is_rel and not is_debug(a, j) and o.name not in in_b and kept_target:
            return f"relocation section {o.name} of a kept section is missing"
    return None


def _info_entries(c: Cubin, i: int) -> list[_Key]:
    out: list[_Key] = []
    for attr, entry in info_entries(c.data(i), c.secs[i].name):
        payload = entry[4:]
        if entry[0] != EIFMT_SVAL:
            out.append((attr, entry))
        elif attr in SYMBOL_FIRST and len(payload) >= 4:
            (k,) = struct.unpack_from("<I", payload)
            out.append((attr, _symbol_or_index(c, k), payload[4:]))
        elif attr in SYMBOL_LIST and len(payload) % 4 == 0:
            ks = struct.unpack(f"<{len(payload) // 4}I", payload)
            out.append((attr, tuple(_symbol_or_index(c, k) for k in ks)))
        else:
            out.append((attr, entry))
    return out


def _symbol_or_index(c: Cubin, k: int) -> str:
    return _symbol(c, k) if k < len(c.syms) else f"symbol index {k} (out of range)"


def _infos(a: Cubin, b: Cubin, in_a: dict[str, int], _in_b: dict[str, int]) -> str | None:
    kept = {_symbol(b, k) for k in range(len(b.syms))}
    for i, s in enumerate(b.secs[1:], 1):
        if s.type != SHT_NV_INFO:
            continue
        j = in_a.get(s.name)
        if j is None:
            return f"section {s.name} is not in the original"
        want = _info_entries(a, j)
        if owner(b, i) is None:  # the shared one: entries of removed functions go
            want = [e for e in want if e[0] not in SYMBOL_FIRST or len(e) < 3 or e[1] in kept]
        got = _info_entries(b, i)
        if got != want:
            n = next(
                (e for e, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want))
            )
            return f"entry {n} of {s.name} differs from the original's (symbols compared by name)"
    return None


def _edges(c: Cubin) -> list[tuple[str, str] | tuple[int, int]]:
    out: list[tuple[str, str] | tuple[int, int]] = []
    for i, s in enumerate(c.secs):
        if s.type != SHT_NV_CALLGRAPH:
            continue
        for caller, callee in struct.iter_unpack("<Ii", c.data(i)):
            if caller == 0 and callee < 0:
                out.append((caller, callee))
            else:
                out.append((_symbol_or_index(c, caller), _symbol_or_index(c, callee)))
    return out


def _callgraph(a: Cubin, b: Cubin, _in_a: dict[str, int], _in_b: dict[str, int]) -> str | None:
    kept = {_symbol(b, k) for k in range(len(b.syms))}
    want = [e for e in _edges(a) if isinstance(e[0], int) or e[0] in kept]
    if _edges(b) != want:
        return ".nv.callgraph differs from the original's (callers and callees compared by name)"
    return None
