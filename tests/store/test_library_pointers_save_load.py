"""Kernel arguments pointing into communication libraries' memory, through the stand-in
driver and the stand-in libraries. SAVE records a pointer into a library's local or host
mapping with its library and mapping, and refuses by name one into a library slot that no
mapping covers, into a peer mapping, or into memory a multicast object reaches. LOAD builds
a graph pointing into a library slot only inside a mapping SAVE recorded for such pointers
and LOAD's mapping check verified. A hostile pointer record is refused as corrupt."""

from __future__ import annotations

import struct
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.jsonsec import dump_json, load_json
from kiln.archive.library_memory import LibraryMemory, LibraryMemoryDoc, LibraryPointer
from kiln.errors import (
    ArchiveCorrupt,
    CommStateMismatch,
    LibraryPointerError,
    MulticastMemoryError,
    UnmappedRangeError,
)
from kiln.graphs import library_memory, store
from kiln.schema import SchemaViolation, validated
from kiln_testing import testing

from tests.native._library_standin import (
    BASE,
    GRAN,
    SLOT,
    Caller,
    engine_alloc,
    library_region,
)

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

REGION: Any = SimpleNamespace(device=0)


@pytest.fixture
def process():
    with library_region() as fresh:
        yield fresh


def _nccl_init() -> int:
    """A communicator's initialisation: reserve, create, map; returns the mapping."""
    nccl = Caller("nccl")
    va = nccl.reserve(2 * GRAN)
    nccl.map(va, GRAN, nccl.create(GRAN))
    engine_alloc(GRAN)
    return va


def _kernel(entry: str, pointer: int) -> dict[str, Any]:
    return {
        "type": "kernel",
        "kernel": {
            "binary": 0,
            "entry": entry,
            "grid": (1, 1, 1),
            "block": (32, 1, 1),
            "shared_mem": 0,
            "extra_buffer": False,
            "args": struct.pack("<QI4x", pointer, 1),
            "params": [(0, 8), (8, 4)],
            "region_pointers": [(0, pointer)],
            "attributes": [],
            "function_attributes": [],
        },
    }


def _desc(*pointers: int) -> dict[str, Any]:
    nodes = [_kernel(f"k{i}", p) for i, p in enumerate(pointers)]
    return {
        "nodes": nodes,
        "edges": [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)],
        "event_count": 0,
    }


def _graph(*pointers: int) -> Any:
    """A captured graph as SAVE sees it: its kernels' arguments hold `pointers`."""
    return SimpleNamespace(name="decode-1", desc=native.GraphDesc.from_dict(_desc(*pointers)))


def _saved(*graphs: Any) -> LibraryMemory:
    """The record SAVE writes, through the manifest's JSON and its validation."""
    recorded = library_memory.current(REGION, graphs)
    assert recorded is not None
    doc = validated(load_json(dump_json(recorded.to_json()), "manifest"), LibraryMemoryDoc)
    return LibraryMemory.from_doc(doc)


def _build(*pointers: int) -> None:
    """LOAD's build of a graph whose kernels' arguments hold `pointers`."""
    entries = [f"k{i}" for i in range(len(pointers))]
    lines = [f"//fake name x{uuid.uuid4().hex}"] + [f"//fake entry {e} 8,4" for e in entries]
    image = ("\n".join(lines) + "\n").encode() + b"\0"
    binary = testing.record_library(testing.load_library(image), image)
    kernels = native.make_kernel_table([image], [binary], device=-1)
    testing.build_kept_graph(native.GraphDesc.from_dict(_desc(*pointers)), kernels, 0)


def _session(graph: Any) -> Any:
    return SimpleNamespace(window=(0, 0), graphs=[graph], region=REGION)


# --- SAVE ----------------------------------------------------------------------------------


def test_save_records_a_kernel_argument_into_an_nccl_local_mapping_with_its_mapping(process):
    va = _nccl_init()
    saved = _saved(_graph(BASE, va + 64))
    assert saved.pointers == (LibraryPointer(0, 1, 0, "nccl", 0, 64),)


def test_save_refuses_a_kernel_argument_into_an_unmapped_library_reservation(process):
    va = _nccl_init()
    with pytest.raises(LibraryPointerError) as err:
        library_memory.current(REGION, [_graph(BASE, va + GRAN)])  # reserved, never mapped
    assert "kernel k1 (graph node 1) argument byte 0" in str(err.value)
    assert "in NCCL's slot of the kiln region, where NCCL mapped no memory" in str(err.value)


def test_save_refuses_a_kernel_argument_into_library_allocated_memory_no_mapping_covers(process):
    _nccl_init()
    buffer = Caller("nvshmem").alloc(GRAN)  # kiln-backed, in NVSHMEM's slot, not a mapping
    with pytest.raises(LibraryPointerError, match=r"graph node 0.*in NVSHMEM's slot"):
        library_memory.current(REGION, [_graph(buffer)])


def test_save_refuses_a_kernel_argument_into_a_peer_mapping_naming_the_library(process):
    _nccl_init()
    nvshmem = Caller("nvshmem")
    peer = nvshmem.reserve(GRAN)
    nvshmem.map(peer, GRAN, nvshmem.import_(nvshmem.export(nvshmem.create(GRAN))))
    with pytest.raises(LibraryPointerError, match=r"graph node 0.*NVSHMEM's peer mapping"):
        library_memory.current(REGION, [_graph(peer + 8)])


def test_save_refuses_memory_bound_to_a_multicast_object_naming_nccl_nvls_enable(process):
    nccl = Caller("nccl")
    va = nccl.reserve(GRAN)
    handle = nccl.create(GRAN)
    nccl.map(va, GRAN, handle)
    nccl.bind_mem(nccl.multicast(GRAN), handle, GRAN)  # NVLS: unicast memory behind a multicast
    with pytest.raises(MulticastMemoryError, match=r"graph node 0.*NCCL_NVLS_ENABLE=0"):
        store.archive_sections(_session(_graph(va)))


def test_save_refuses_engine_memory_a_library_bound_by_address_to_a_multicast_object(process):
    nccl = Caller("nccl")
    buffer = engine_alloc(GRAN)  # the engine's tensor, registered for NVLS by NCCL
    nccl.bind_addr(nccl.multicast(GRAN), buffer, GRAN)
    with pytest.raises(MulticastMemoryError, match=r"graph node 1.*NCCL_NVLS_ENABLE=0"):
        store.archive_sections(_session(_graph(BASE + 2 * GRAN, buffer + 128)))


def test_save_refuses_a_kernel_argument_into_a_multicast_mapping(process):
    nvshmem = Caller("nvshmem")
    va = nvshmem.reserve(GRAN)
    nvshmem.map(va, GRAN, nvshmem.multicast(GRAN))
    with pytest.raises(MulticastMemoryError, match="NVSHMEM_DISABLE_NVLS=1"):
        store.archive_sections(_session(_graph(va)))


# --- LOAD ----------------------------------------------------------------------------------


def test_load_builds_a_graph_pointing_into_a_verified_library_mapping(process):
    va = _nccl_init()
    saved = _saved(_graph(va + 64))
    process()
    _nccl_init()
    library_memory.check(saved, REGION)
    _build(va + 64)


def test_load_refuses_a_library_pointer_save_did_not_record(process):
    # The blob points into NCCL's mapping, the manifest records no such pointer (a
    # hand-made or damaged archive): nothing was verified for it.
    va = _nccl_init()
    saved = _saved()
    process()
    _nccl_init()
    library_memory.check(saved, REGION)
    with pytest.raises(UnmappedRangeError, match="in NCCL's slot of the region"):
        _build(va + 64)


def test_load_refuses_a_pointer_into_library_allocated_memory_kiln_backs(process):
    # kiln backs a library's cuMemAlloc in its slot, but no mapping SAVE recorded and LOAD
    # verified lies there: the library's contents are not proven.
    _nccl_init()
    buffer = Caller("nccl").alloc(GRAN)
    assert native.region_is_backed(0, buffer, GRAN)
    library_memory.check(_saved(), REGION)
    with pytest.raises(UnmappedRangeError, match="in NCCL's slot of the region"):
        _build(buffer)


def test_load_verifies_nothing_when_the_mapping_check_fails(process):
    va = _nccl_init()
    saved = _saved(_graph(va))
    process()
    nccl = Caller("nccl")
    at = nccl.reserve(2 * GRAN)
    nccl.map(at, GRAN, nccl.create(GRAN, host=True))  # same address, another class
    engine_alloc(GRAN)
    with pytest.raises(CommStateMismatch, match="this process has a host mapping"):
        library_memory.check(saved, REGION)
    with pytest.raises(UnmappedRangeError, match="NCCL"):
        _build(va)


def test_load_forgets_the_verified_mappings_of_an_earlier_archive(process):
    va = _nccl_init()
    saved = _saved(_graph(va))
    process()
    _nccl_init()
    library_memory.check(saved, REGION)
    library_memory.check(None, REGION)  # another archive, without library memory
    with pytest.raises(UnmappedRangeError, match="NCCL"):
        _build(va)


def test_load_refuses_a_library_pointer_once_its_mapping_is_gone(process):
    va = _nccl_init()
    saved = _saved(_graph(va))
    process()
    _nccl_init()
    library_memory.check(saved, REGION)
    Caller("nccl").unmap(va, GRAN)
    with pytest.raises(UnmappedRangeError, match="NCCL"):
        _build(va)


# --- hostile records -----------------------------------------------------------------------


def _record(**pointer: Any) -> dict[str, Any]:
    p = {"graph": 0, "node": 0, "arg_offset": 0, "library": "nccl", "mapping": 0, "offset": 8}
    p.update(pointer)
    return {
        "slot_size": SLOT,
        "slots": [
            {"library": "nccl", "offset": 1 << 30, "size": SLOT, "trajectory": [[0, GRAN, 2]]},
            {
                "library": "nvshmem",
                "offset": (1 << 30) + SLOT,
                "size": SLOT,
                "trajectory": [[0, GRAN, 2]],
            },
        ],
        "mappings": [
            {"library": "nccl", "class": "local", "slot": "nccl", "offset": 0, "size": GRAN},
            {"library": "nccl", "class": "peer", "slot": "nccl", "offset": GRAN, "size": GRAN},
            {"library": "nvshmem", "class": "local", "slot": "nvshmem", "offset": 0, "size": GRAN},
        ],
        "pointers": [p],
    }


def _read(doc: dict[str, Any]) -> LibraryMemory:
    return LibraryMemory.from_doc(validated(doc, LibraryMemoryDoc))


def test_a_well_formed_pointer_record_reads_back():
    assert _read(_record()).pointers == (LibraryPointer(0, 0, 0, "nccl", 0, 8),)


def test_a_record_without_pointers_reads_back():
    doc = _record()
    del doc["pointers"]
    assert _read(doc).pointers == ()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"mapping": 3}, "names mapping 3, which is not recorded"),
        ({"mapping": 1}, "points into a peer mapping, which graphs may not"),
        ({"mapping": 2}, "into nccl memory names a mapping in the nvshmem slot"),
        ({"offset": GRAN}, "past the end of its mapping"),
    ],
)
def test_an_inconsistent_pointer_record_is_refused_as_corrupt(change, why):
    with pytest.raises(ArchiveCorrupt, match=why):
        _read(_record(**change))


@pytest.mark.parametrize(
    "change",
    [
        {"arg_offset": -1},
        {"arg_offset": 1 << 32},
        {"library": "mpi"},
        {"node": -1},
        {"offset": "8"},
        {"extra": 1},
    ],
)
def test_a_pointer_record_outside_its_schema_is_refused(change):
    with pytest.raises(SchemaViolation):
        _read(_record(**change))


@pytest.mark.parametrize(
    ("pointer", "why"),
    [({"graph": 1}, "names graph 1, which the manifest lacks"), ({"node": 5}, "node 5 of a graph")],
)
def test_a_pointer_naming_a_graph_or_node_the_manifest_lacks_is_refused(pointer, why):
    with pytest.raises(ArchiveCorrupt, match=why):
        _read(_record(**pointer)).check_graphs([5])
