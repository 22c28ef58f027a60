"""Communication libraries' memory at SAVE and LOAD.

NCCL's and NVSHMEM's reservations and allocations land in slots of the region of their own
(native region/owner.h), and the interposer records every mapping the libraries make
(region/mappings.h). SAVE refuses graphs when a library reserved or mapped memory while a
graph was being captured (state LOAD cannot re-create before the replay), then records each
slot's requests, the libraries' mappings and every kernel argument pointing into a library
slot (:mod:`kiln.graphs.library_pointers` classifies them). LOAD, before the first replay,
checks that the libraries made the same requests in their slots and hold the same mappings
(class, slot, offset, size): a difference raises :class:`CommStateMismatch` naming the
library. The mappings SAVE's pointers point into are then handed to the native graph
builder, which accepts pointers into a library slot only inside them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from kiln.archive.library_memory import (
    LIBRARIES,
    LibraryMapping,
    LibraryMemory,
    LibrarySlot,
)
from kiln.errors import CommStateMismatch, LibraryStateInCapture
from kiln.graphs import library_pointers
from kiln.native import native
from kiln.region import Region

LABELS = {"nccl": "NCCL", "nvshmem": "NVSHMEM"}
_KINDS = {0: "allocated", 1: "allocated", 2: "reserved", 3: "allocated"}

#: What avoids a library's memory calls during capture.
AVOID_IN_CAPTURE = {
    "nccl": (
        "set NCCL_RUNTIME_CONNECT=0 (NCCL then connects every channel at initialisation, "
        "not lazily inside a capture) and NCCL_GRAPH_REGISTER=0 and NCCL_LOCAL_REGISTER=0 "
        "(no buffer registration during capture)"
    ),
    "nvshmem": (
        "bootstrap NVSHMEM and allocate its symmetric memory (e.g. the engine's DeepEP "
        "buffer) before graphs are captured"
    ),
}


def capture_window(open_: bool) -> None:
    """Marks a graph capture in progress (or over): library memory calls made meanwhile are
    refused by :func:`refuse_capture_state`."""
    native().set_capture_open(open_)


def refuse_capture_state() -> None:
    """:class:`LibraryStateInCapture` when a communication library reserved, allocated or
    mapped memory while a graph was being captured."""
    events = native().library_capture_events()
    if not events:
        return
    library, call, size = events[0]
    more = f" (and {len(events) - 1} more such calls)" if len(events) > 1 else ""
    raise LibraryStateInCapture(
        f"{LABELS[library]} called {call} for {size} bytes while a graph was being captured"
        f"{more}: LOAD cannot re-create memory a library sets up inside a capture before the "
        f"graph replays; {AVOID_IN_CAPTURE[library]}"
    )


def current(region: Region, graphs: Sequence[Any] = ()) -> LibraryMemory | None:
    """The libraries' slots of `region` with their requests so far, the libraries' live
    mappings and the kernel arguments of `graphs` (each with `name` and `desc`) pointing
    into library slots; None when the region has no library slots and no library mapped
    anything. A pointer kiln cannot restore is refused (:mod:`kiln.graphs.library_pointers`)."""
    n = native()
    dev = region.device
    slots = tuple(
        LibrarySlot(lib, off, size, tuple(tuple(e) for e in n.region_library_trajectory(dev, lib)))  # type: ignore[misc]
        for lib, off, size in n.region_library_slots(dev)
    )
    live = n.library_mappings()
    mappings = tuple(
        LibraryMapping(m["library"], m["class"], m["slot"], m["offset"], m["size"]) for m in live
    )
    if not slots and not mappings:
        return None
    base = int(n.region_info(dev)["base"])
    pointers = library_pointers.classify(graphs, base, slots, live)
    return LibraryMemory(int(n.region_info(dev)["library_slot"]), slots, mappings, pointers)


def check(recorded: LibraryMemory | None, region: Region) -> None:
    """Before the first replay at LOAD: the libraries' slots, their requests and their
    mappings equal SAVE's (`recorded`); :class:`CommStateMismatch` naming the library and
    the first difference otherwise."""
    native().set_verified_library_ranges([])
    if recorded is None:
        return
    now = current(region) or LibraryMemory(0, (), ())
    if now.slot_size != recorded.slot_size:
        raise CommStateMismatch(
            f"the region's library slots hold {now.slot_size} bytes each, SAVE's held "
            f"{recorded.slot_size} (KILN_REGION_LIBRARY_SLOT must be the same at SAVE and LOAD)"
        )
    for slot in recorded.slots:
        _check_slot(slot, now.slot(slot.library))
    _check_mappings(recorded.mappings, now.mappings)
    native().set_verified_library_ranges(_pointed_into(recorded, now, region))


def _pointed_into(
    recorded: LibraryMemory, now: LibraryMemory, region: Region
) -> list[tuple[str, int, int]]:
    """(library, address, size) in this process of each mapping SAVE's pointers point into,
    all of them verified by now (same library, class, slot, offset and size)."""
    base = int(native().region_info(region.device)["base"])
    out = []
    for i in sorted({p.mapping for p in recorded.pointers}):
        m = recorded.mappings[i]
        slot = now.slot(m.slot)
        if m.slot not in LIBRARIES or slot is None:  # the record's reader and _check_slot refuse it
            raise CommStateMismatch(
                f"SAVE's pointers point into the {m.slot} slot, which is missing"
            )
        out.append((m.library, base + slot.offset + m.offset, m.size))
    return out


def _request(entry: tuple[int, int, int]) -> str:
    off, size, kind = entry
    return f"{_KINDS.get(kind, 'allocated')} {size} bytes at offset 0x{off:x} of its slot"


def _check_slot(saved: LibrarySlot, now: LibrarySlot | None) -> None:
    label = LABELS[saved.library]
    if now is None or now.offset != saved.offset or now.size != saved.size:
        raise CommStateMismatch(f"{label}'s slot of the region is not where SAVE had it")
    for i in range(max(len(saved.trajectory), len(now.trajectory))):
        want = saved.trajectory[i] if i < len(saved.trajectory) else None
        got = now.trajectory[i] if i < len(now.trajectory) else None
        if want == got:
            continue
        if got is None:
            assert want is not None
            found = f"made only {len(now.trajectory)} requests so far"
        else:
            found = _request(got)
        expected = _request(want) if want is not None else "made no such request"
        raise CommStateMismatch(
            f"{label}'s request #{i} in its region slot differs from SAVE's: SAVE {expected}, "
            f"this process {found} ({label}'s initialisation changed: another version, "
            "topology, rank count or setting)"
        )


def _key(m: LibraryMapping) -> tuple[str, str, int, int, str]:
    return (m.library, m.slot, m.offset, m.size, m.cls)


def _check_mappings(saved: tuple[LibraryMapping, ...], now: tuple[LibraryMapping, ...]) -> None:
    # Threads may map in either order: compare as multisets, reporting SAVE's order.
    have = Counter(map(_key, now))
    for m in saved:
        if have[_key(m)] > 0:
            have[_key(m)] -= 1
            continue
        there = [
            o for o in now if o.library == m.library and o.slot == m.slot and o.offset == m.offset
        ]
        found = f"; this process has a {there[0].describe()} there" if there else ""
        raise CommStateMismatch(
            f"{LABELS[m.library]}'s {m.describe()}, recorded at SAVE, is not mapped in this "
            f"process{found}"
        )
    extra = [o for o in now if have[_key(o)] > 0]
    if extra:
        raise CommStateMismatch(
            f"{LABELS[extra[0].library]} holds a {extra[0].describe()} that SAVE did not "
            f"({len(extra)} mapping{'s' if len(extra) > 1 else ''} more than SAVE)"
        )
