"""kiln verify's pointer audit: a kernel argument the manifest records as a pointer into a
communication library's mapping is checked against that record, not against the engine's
trajectory; any other argument outside the trajectory is still a problem."""

from __future__ import annotations

from kiln.archive.library_memory import LibraryMapping, LibraryMemory, LibraryPointer, LibrarySlot
from kiln.inspection.allocations import Allocations
from kiln.inspection.audit import audit_graph
from kiln.inspection.problems import Problems

BASE = 0x7F0000000000
GRAN = 2 << 20
SLOT_AT = 64 * GRAN


def _node(address: int) -> dict:
    return {"type": "kernel", "kernel": {"entry": "k", "region_pointers": [(0, address)]}}


def _library() -> LibraryMemory:
    slot = LibrarySlot("nccl", SLOT_AT, GRAN * 8, ((0, GRAN, 2),))
    mapping = LibraryMapping("nccl", "local", "nccl", 0, GRAN)
    return LibraryMemory(GRAN * 8, (slot,), (mapping,), (LibraryPointer(0, 0, 0, "nccl", 0, 64),))


def _problems(address: int) -> list[str]:
    problems = Problems()
    allocations = Allocations(BASE, 128 * GRAN, [(0, GRAN, 0)])
    library = _library().pointer_addresses(0, BASE)
    audit_graph("g", [_node(address)], [], [], allocations, problems, library)
    return problems.messages()


def test_a_recorded_library_pointer_is_not_a_trajectory_problem():
    assert _problems(BASE + SLOT_AT + 64) == []


def test_an_unrecorded_pointer_into_a_library_slot_is_a_problem():
    assert _problems(BASE + SLOT_AT + 128)
