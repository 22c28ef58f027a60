"""SAVE's audit of kernel arguments that point into communication libraries' memory.

The native walk records every kernel argument word that lies in a live range of the region
as a region pointer. A word in a library's slot points into memory the library mapped
itself, which kiln neither backs nor copies: LOAD can only rely on the library mapping it
again at the same address, which LOAD's mapping check proves for the mappings SAVE
recorded. So each such pointer is recorded with the mapping it falls in, and refused by
name when that mapping is not one kiln can restore:

- no mapping covers it (a reservation the library has not mapped, or mapped by another
  library): nothing LOAD could check;
- a ``peer`` mapping: the memory belongs to another process, and which peer was imported
  at that address is not recorded, so LOAD could not tell the right peer's memory from
  another's;
- a ``multicast`` mapping, or memory bound to a multicast object: refused by
  :func:`refuse_multicast` with the setting that turns multicast off;
- an ``unknown`` mapping (a handle made before kiln was enabled): no class to check.

``local`` and ``host`` mappings (memory of this process that the library re-creates at
initialisation) are recorded."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

from kiln.archive.library_memory import POINTER_CLASSES, LibraryPointer, LibrarySlot
from kiln.errors import LibraryPointerError, MulticastMemoryError
from kiln.native import native

LABELS = {"nccl": "NCCL", "nvshmem": "NVSHMEM", "engine": "the engine"}

#: What turns multicast off, by who mapped or bound the memory.
MULTICAST_OFF = {
    "nccl": "set NCCL_NVLS_ENABLE=0 (NCCL's NVLink SHARP buffers)",
    "nvshmem": "set NVSHMEM_DISABLE_NVLS=1",
    "engine": (
        "turn the engine's multicast off (TORCH_SYMM_MEM_DISABLE_MULTICAST=1; vLLM: "
        "VLLM_ALLREDUCE_USE_SYMM_MEM=0)"
    ),
}

_WHY = {
    "peer": (
        "memory another process exported: which peer's memory was imported at that address "
        "is not recorded, so LOAD could not check it is the same peer's"
    ),
    "multicast": "a multicast object, shared by several devices",
    "unknown": "a handle made before kiln was enabled, of a class kiln cannot check",
}


def _where(graph: Any, node: int, arg_offset: int, entry: str) -> str:
    return f"graph {graph.name!r}: kernel {entry} (graph node {node}) argument byte {arg_offset}"


def classify(
    graphs: Sequence[Any],
    base: int,
    slots: Sequence[LibrarySlot],
    live: Sequence[dict[str, Any]],
) -> tuple[LibraryPointer, ...]:
    """Every kernel argument of `graphs` pointing into a library slot of the region at
    `base`, with the mapping of `live` (native.library_mappings(), in that order) it falls
    in; :class:`LibraryPointerError` naming the library and the node for one kiln cannot
    restore."""
    starts = [m["address"] for m in live]
    order = sorted(range(len(live)), key=lambda i: starts[i])
    sorted_starts = [starts[i] for i in order]
    out: list[LibraryPointer] = []
    for gi, graph in enumerate(graphs):
        for slot in slots:
            begin = base + slot.offset
            for node, arg_offset, address, entry in graph.desc.pointers_between(
                begin, begin + slot.size
            ):
                k = bisect.bisect_right(sorted_starts, address) - 1
                index = order[k] if k >= 0 else -1
                m = live[index] if index >= 0 else None
                where = _where(graph, node, arg_offset, entry)
                label = LABELS[slot.library]
                if m is None or address >= m["address"] + m["size"] or m["slot"] != slot.library:
                    raise LibraryPointerError(
                        f"{where} holds 0x{address:x}, in {label}'s slot of the kiln region, "
                        f"where {label} mapped no memory kiln saw: LOAD could not check what "
                        "the graph reads there"
                    )
                if m["library"] != slot.library or m["class"] not in POINTER_CLASSES:
                    why = _WHY.get(m["class"], f"{LABELS[m['library']]}'s memory")
                    raise LibraryPointerError(
                        f"{where} holds 0x{address:x}, in {label}'s {m['class']} mapping "
                        f"({why}); kiln restores pointers into {label}'s local and host "
                        "mappings only"
                    )
                out.append(
                    LibraryPointer(
                        gi, node, arg_offset, slot.library, index, address - m["address"]
                    )
                )
    return tuple(out)


def _reached(graphs: Sequence[Any]) -> Iterator[tuple[str, Any, tuple[int, int, int, str]]]:
    for who, address, size in native().multicast_ranges():
        for graph in graphs:
            for pointer in graph.desc.pointers_between(address, address + size):
                yield who, graph, pointer


def refuse_multicast(graphs: Sequence[Any]) -> None:
    """:class:`MulticastMemoryError` when a kernel argument of `graphs` points into memory a
    multicast object reaches: a multicast mapping, or memory bound to a multicast object.
    A multicast object spans devices and processes that LOAD does not re-create together
    with the graph; the message names the setting that turns multicast off."""
    for who, graph, (node, arg_offset, address, entry) in _reached(graphs):
        raise MulticastMemoryError(
            f"{_where(graph, node, arg_offset, entry)} holds 0x{address:x}, in memory "
            f"{LABELS[who]} bound to or mapped from a multicast object (NVLink SHARP): kiln "
            f"cannot restore multicast memory; {MULTICAST_OFF[who]}"
        )
