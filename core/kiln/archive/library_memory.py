"""The communication libraries' memory an archive records: each library's slot of the region
(where it lies, its requests in order), the mappings the libraries made (class, slot,
offset, size) and the graphs' kernel arguments that point into those mappings (graph, node,
argument byte, library, mapping, offset into it). SAVE writes it into the manifest (``library_memory``); LOAD checks it before
the first replay (:mod:`kiln.graphs.library_memory`). Read from untrusted input: every value
is validated here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import msgspec

from kiln.errors import ArchiveCorrupt
from kiln.schema import Count

#: Communication libraries with a slot of their own (native region/owner.h).
LIBRARIES = ("nccl", "nvshmem")
#: What a mapping maps (native region/mappings.h).
CLASSES = ("local", "peer", "host", "multicast", "unknown")
#: Where a mapping lies: a library's slot, the engine's part of the region, or outside it.
SLOTS = (*LIBRARIES, "engine", "outside")
#: Mapping classes a graph argument may point into: memory of this process, which the
#: library re-creates at LOAD. Peer memory belongs to another process (which peer was
#: mapped there is not recorded, so LOAD could not tell one from another), multicast memory
#: is shared by several devices, and an unknown handle has no class to check.
POINTER_CLASSES = ("local", "host")

Library: TypeAlias = Literal["nccl", "nvshmem"]
MappingClass: TypeAlias = Literal["local", "peer", "host", "multicast", "unknown"]
Slot: TypeAlias = Literal["nccl", "nvshmem", "engine", "outside"]
Positive: TypeAlias = Annotated[int, msgspec.Meta(gt=0, le=(1 << 63) - 1)]
Kind: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=3)]
_MAX_ENTRIES = 1 << 20

Request = tuple[int, int, int]  # (offset from the slot's start, bytes, kind)


class SlotDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    library: Library
    offset: Count
    size: Positive
    trajectory: Annotated[list[tuple[Count, Positive, Kind]], msgspec.Meta(max_length=_MAX_ENTRIES)]


class MappingDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    library: Library
    cls: MappingClass = msgspec.field(name="class")
    slot: Slot
    offset: Count
    size: Count


class PointerDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    graph: Count
    node: Count
    arg_offset: Annotated[int, msgspec.Meta(ge=0, le=(1 << 32) - 1)]
    library: Library
    mapping: Count
    offset: Count


class LibraryMemoryDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot_size: Count
    slots: Annotated[list[SlotDoc], msgspec.Meta(max_length=len(LIBRARIES))]
    mappings: Annotated[list[MappingDoc], msgspec.Meta(max_length=_MAX_ENTRIES)]
    pointers: Annotated[list[PointerDoc], msgspec.Meta(max_length=_MAX_ENTRIES)] = []


@dataclass(frozen=True)
class LibrarySlot:
    library: str
    offset: int  # from the region base
    size: int
    trajectory: tuple[Request, ...]


@dataclass(frozen=True)
class LibraryMapping:
    library: str  # who mapped it
    cls: str
    slot: str
    offset: int  # from the slot's start (0 outside the region: the driver chose the address)
    size: int

    def describe(self) -> str:
        where = (
            "outside kiln's region"
            if self.slot == "outside"
            else (
                f"at offset 0x{self.offset:x} of the {self.slot} slot"
                if self.slot != "engine"
                else f"at offset 0x{self.offset:x} of the engine's part"
            )
        )
        return f"{self.cls} mapping of {self.size} bytes {where}"


@dataclass(frozen=True)
class LibraryPointer:
    """A kernel argument pointing into a library's mapping."""

    graph: int  # index into the manifest's graphs
    node: int
    arg_offset: int  # byte of the word in the kernel's arguments
    library: str
    mapping: int  # index into LibraryMemory.mappings
    offset: int  # from the mapping's start

    def describe(self, graph_name: str) -> str:
        return (
            f"graph {graph_name!r} node {self.node} argument byte {self.arg_offset}: "
            f"{self.library} mapping #{self.mapping} + 0x{self.offset:x}"
        )


@dataclass(frozen=True)
class LibraryMemory:
    slot_size: int  # bytes of each library slot (0: the region had none)
    slots: tuple[LibrarySlot, ...]
    mappings: tuple[LibraryMapping, ...]
    pointers: tuple[LibraryPointer, ...] = ()

    def slot(self, library: str) -> LibrarySlot | None:
        return next((s for s in self.slots if s.library == library), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "slot_size": self.slot_size,
            "slots": [
                {
                    "library": s.library,
                    "offset": s.offset,
                    "size": s.size,
                    "trajectory": [list(t) for t in s.trajectory],
                }
                for s in self.slots
            ],
            "mappings": [
                {
                    "library": m.library,
                    "class": m.cls,
                    "slot": m.slot,
                    "offset": m.offset,
                    "size": m.size,
                }
                for m in self.mappings
            ],
            "pointers": [
                {
                    "graph": p.graph,
                    "node": p.node,
                    "arg_offset": p.arg_offset,
                    "library": p.library,
                    "mapping": p.mapping,
                    "offset": p.offset,
                }
                for p in self.pointers
            ],
        }

    @classmethod
    def from_doc(cls, doc: LibraryMemoryDoc) -> LibraryMemory:
        """The recorded library memory, its fields consistent with each other;
        :class:`ArchiveCorrupt` naming the defect otherwise."""
        slots: list[LibrarySlot] = []
        for s in doc.slots:
            if s.size != doc.slot_size:
                raise _fail(f"the {s.library} slot's size differs from slot_size")
            if any(o.library == s.library for o in slots):
                raise _fail(f"the {s.library} slot appears twice")
            if s.offset > (1 << 63) - 1 - s.size:
                raise _fail(f"the {s.library} slot lies beyond the address space")
            for i, (off, size, _kind) in enumerate(s.trajectory):
                if off > s.size or size > s.size - off:
                    raise _fail(f"{s.library} request #{i} lies outside its slot")
            slots.append(LibrarySlot(s.library, s.offset, s.size, tuple(s.trajectory)))
        for a in slots:
            for b in slots:
                if a is not b and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                    raise _fail(f"the {a.library} and {b.library} slots overlap")
        mappings: list[LibraryMapping] = []
        for i, m in enumerate(doc.mappings):
            if m.slot in LIBRARIES:
                slot = next((s for s in slots if s.library == m.slot), None)
                if slot is None:
                    raise _fail(f"mapping #{i} lies in the {m.slot} slot, which is not recorded")
                if m.offset > slot.size or m.size > slot.size - m.offset:
                    raise _fail(f"mapping #{i} extends past the end of the {m.slot} slot")
            elif m.slot == "outside" and m.offset != 0:
                raise _fail(f"mapping #{i} lies outside the region but has an offset")
            mappings.append(LibraryMapping(m.library, m.cls, m.slot, m.offset, m.size))
        pointers = tuple(_pointer(i, p, mappings) for i, p in enumerate(doc.pointers))
        return cls(doc.slot_size, tuple(slots), tuple(mappings), pointers)

    def pointer_addresses(self, graph: int, base: int) -> set[tuple[int, int, int]]:
        """(node, argument byte, address) of graph #`graph`'s recorded pointers, for a
        region at `base`."""
        out = set()
        for p in self.pointers:
            if p.graph != graph:
                continue
            m = self.mappings[p.mapping]
            slot = self.slot(m.slot)
            assert slot is not None  # checked when the record was read
            out.add((p.node, p.arg_offset, base + slot.offset + m.offset + p.offset))
        return out

    def check_graphs(self, nodes: list[int]) -> None:
        """:class:`ArchiveCorrupt` unless every pointer names a node of the manifest's
        graphs, whose node counts are `nodes`."""
        for i, p in enumerate(self.pointers):
            if p.graph >= len(nodes):
                raise _fail(f"pointer #{i} names graph {p.graph}, which the manifest lacks")
            if p.node >= nodes[p.graph]:
                raise _fail(f"pointer #{i} names node {p.node} of a graph of {nodes[p.graph]}")


def _pointer(i: int, p: PointerDoc, mappings: list[LibraryMapping]) -> LibraryPointer:
    """A recorded pointer whose mapping is one a graph may point into; ArchiveCorrupt
    otherwise."""
    if p.mapping >= len(mappings):
        raise _fail(f"pointer #{i} names mapping {p.mapping}, which is not recorded")
    m = mappings[p.mapping]
    if m.library != p.library or m.slot != p.library:
        raise _fail(f"pointer #{i} into {p.library} memory names a mapping in the {m.slot} slot")
    if m.cls not in POINTER_CLASSES:
        raise _fail(f"pointer #{i} points into a {m.cls} mapping, which graphs may not")
    if p.offset >= m.size:
        raise _fail(f"pointer #{i} lies past the end of its mapping")
    return LibraryPointer(p.graph, p.node, p.arg_offset, p.library, p.mapping, p.offset)


def _fail(what: str) -> ArchiveCorrupt:
    return ArchiveCorrupt(f"manifest: library_memory: {what}")
