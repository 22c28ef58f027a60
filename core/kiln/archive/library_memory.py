"""The communication libraries' memory an archive records: each library's slot of the region
(where it lies, its requests in order) and the mappings the libraries made (class, slot,
offset, size). SAVE writes it into the manifest (``library_memory``); LOAD checks it before
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


class LibraryMemoryDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot_size: Count
    slots: Annotated[list[SlotDoc], msgspec.Meta(max_length=len(LIBRARIES))]
    mappings: Annotated[list[MappingDoc], msgspec.Meta(max_length=_MAX_ENTRIES)]


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
class LibraryMemory:
    slot_size: int  # bytes of each library slot (0: the region had none)
    slots: tuple[LibrarySlot, ...]
    mappings: tuple[LibraryMapping, ...]

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
        return cls(doc.slot_size, tuple(slots), tuple(mappings))


def _fail(what: str) -> ArchiveCorrupt:
    return ArchiveCorrupt(f"manifest: library_memory: {what}")
