"""SAVE and LOAD of the communication libraries' memory, through the stand-in driver and the
stand-in libraries: SAVE refuses library memory made during a capture (naming the setting
that avoids it) and records each library's slot and mappings in the manifest; LOAD, before
the first replay, refuses any difference naming the library; a hostile record is refused as
a corrupt archive."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.jsonsec import dump_json, load_json
from kiln.archive.library_memory import LibraryMemory, LibraryMemoryDoc
from kiln.errors import ArchiveCorrupt, CommStateMismatch, LibraryStateInCapture
from kiln.graphs import library_memory, store
from kiln.schema import SchemaViolation, validated

from tests.native._library_standin import (
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


def _nccl_init(*, channel_bytes: int = 2 * GRAN, host: bool = False) -> None:
    """What a communicator's initialisation does with memory: reserve, create, map."""
    nccl = Caller("nccl")
    va = nccl.reserve(channel_bytes)
    nccl.map(va, GRAN, nccl.create(GRAN, host=host))
    engine_alloc(GRAN)


def _saved() -> LibraryMemory:
    """The record SAVE writes, through the manifest's JSON and its validation."""
    recorded = library_memory.current(REGION)
    assert recorded is not None
    doc = validated(load_json(dump_json(recorded.to_json()), "manifest"), LibraryMemoryDoc)
    return LibraryMemory.from_doc(doc)


# --- SAVE ----------------------------------------------------------------------------------


def test_save_refuses_a_library_mapping_made_during_capture_naming_nccl_runtime_connect(process):
    nccl = Caller("nccl")
    va = nccl.reserve(GRAN)
    native.set_capture_open(True)
    try:
        nccl.map(va, GRAN, nccl.create(GRAN))  # a channel connected lazily inside the capture
    finally:
        native.set_capture_open(False)
    session = SimpleNamespace(window=(0, 0), graphs=[object()], region=REGION)
    with pytest.raises(LibraryStateInCapture, match="NCCL called cuMemMap.*NCCL_RUNTIME_CONNECT=0"):
        store.archive_sections(session)


def test_save_refuses_an_nvshmem_reservation_during_capture_naming_the_bootstrap_order(process):
    native.set_capture_open(True)
    try:
        Caller("nvshmem").reserve(GRAN)
    finally:
        native.set_capture_open(False)
    with pytest.raises(LibraryStateInCapture, match="NVSHMEM.*before graphs are captured"):
        library_memory.refuse_capture_state()


def test_save_records_each_librarys_slot_requests_and_mappings(process):
    _nccl_init()
    saved = _saved()
    assert saved.slot_size == SLOT
    nccl = saved.slot("nccl")
    assert nccl is not None and nccl.trajectory == ((0, 2 * GRAN, 2),)
    assert [(m.library, m.cls, m.slot, m.offset, m.size) for m in saved.mappings] == [
        ("nccl", "local", "nccl", 0, GRAN)
    ]


# --- LOAD ----------------------------------------------------------------------------------


def test_load_accepts_the_same_library_memory(process):
    _nccl_init()
    saved = _saved()
    process()
    _nccl_init()
    library_memory.check(saved, REGION)


def test_load_refuses_a_different_library_reservation_naming_the_library(process):
    _nccl_init(channel_bytes=2 * GRAN)
    saved = _saved()
    process()
    _nccl_init(channel_bytes=4 * GRAN)  # e.g. another channel count
    with pytest.raises(CommStateMismatch, match="NCCL's request #0 in its region slot"):
        library_memory.check(saved, REGION)


def test_load_refuses_a_missing_library_mapping_naming_the_library(process):
    _nccl_init()
    saved = _saved()
    process()
    Caller("nccl").reserve(2 * GRAN)  # same reservation, never mapped
    engine_alloc(GRAN)
    with pytest.raises(CommStateMismatch, match="NCCL's local mapping .* is not mapped"):
        library_memory.check(saved, REGION)


def test_load_refuses_a_library_mapping_of_another_class(process):
    _nccl_init()
    saved = _saved()
    process()
    _nccl_init(host=True)
    with pytest.raises(CommStateMismatch, match="this process has a host mapping"):
        library_memory.check(saved, REGION)


def test_load_refuses_a_library_mapping_save_did_not_have(process):
    _nccl_init()
    saved = _saved()
    process()
    _nccl_init()
    Caller("nvshmem").ipc_open()
    with pytest.raises(CommStateMismatch, match="NVSHMEM holds a peer mapping"):
        library_memory.check(saved, REGION)


def test_load_refuses_library_slots_of_another_size(process):
    _nccl_init()
    saved = _saved()
    process(SLOT // 2)
    with pytest.raises(CommStateMismatch, match="KILN_REGION_LIBRARY_SLOT"):
        library_memory.check(saved, REGION)


# --- hostile records -----------------------------------------------------------------------


def _record(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "slot_size": SLOT,
        "slots": [
            {"library": "nccl", "offset": 1 << 30, "size": SLOT, "trajectory": [[0, GRAN, 2]]}
        ],
        "mappings": [
            {"library": "nccl", "class": "local", "slot": "nccl", "offset": 0, "size": GRAN}
        ],
    }
    doc.update(changes)
    return doc


def _read(doc: dict[str, Any]) -> LibraryMemory:
    return LibraryMemory.from_doc(validated(doc, LibraryMemoryDoc))


def test_a_well_formed_record_reads_back():
    assert _read(_record()).slot("nccl") is not None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            {
                "slots": [
                    {"library": "nccl", "offset": 0, "size": SLOT, "trajectory": [[SLOT, GRAN, 2]]}
                ]
            },
            "outside its slot",
        ),
        (
            {"slots": [{"library": "nccl", "offset": 0, "size": GRAN, "trajectory": []}]},
            "differs from slot_size",
        ),
        (
            {
                "slots": [
                    {"library": "nccl", "offset": 0, "size": SLOT, "trajectory": []},
                    {"library": "nvshmem", "offset": GRAN, "size": SLOT, "trajectory": []},
                ]
            },
            "overlap",
        ),
        (
            {
                "mappings": [
                    {
                        "library": "nccl",
                        "class": "local",
                        "slot": "nvshmem",
                        "offset": 0,
                        "size": GRAN,
                    }
                ]
            },
            "not recorded",
        ),
        (
            {
                "mappings": [
                    {
                        "library": "nccl",
                        "class": "local",
                        "slot": "nccl",
                        "offset": SLOT - GRAN,
                        "size": 2 * GRAN,
                    }
                ]
            },
            "past the end",
        ),
    ],
)
def test_an_inconsistent_record_is_refused_as_corrupt(change, why):
    with pytest.raises(ArchiveCorrupt, match=why):
        _read(_record(**change))


@pytest.mark.parametrize(
    "change",
    [
        {
            "mappings": [
                {"library": "nccl", "class": "teleported", "slot": "nccl", "offset": 0, "size": 1}
            ]
        },
        {
            "mappings": [
                {"library": "mpi", "class": "local", "slot": "nccl", "offset": 0, "size": 1}
            ]
        },
        {"slot_size": -1},
        {"slots": [{"library": "nccl", "offset": 0, "size": SLOT, "trajectory": [[0, 0, 2]]}]},
        {"extra": 1},
    ],
)
def test_a_record_outside_its_schema_is_refused(change):
    with pytest.raises(SchemaViolation):
        _read(_record(**change))
