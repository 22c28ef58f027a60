"""Communication libraries' memory apart from the engine's, through the stand-in driver.

Calls come from stand-in libraries named like NCCL's and NVSHMEM's (kiln identifies the caller
by the wrapper's return address) or from the test itself (the engine). A library's
reservations and allocations land in its own slot of the region with its own cursor, so
its drift never moves the engine's memory; every mapping a library makes is recorded with
its class (local, peer, host, multicast), slot and offset."""

from __future__ import annotations

import pytest
from kiln.errors import RegionError

from tests.native._library_standin import (
    BASE,
    GRAN,
    SIZE,
    SLOT,
    Caller,
    engine_alloc,
    engine_reserve,
    library_region,
)

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

ENGINE_END = SIZE - 2 * SLOT
NCCL_SLOT = BASE + ENGINE_END
NVSHMEM_SLOT = NCCL_SLOT + SLOT


@pytest.fixture
def region():
    with library_region() as fresh:
        yield fresh


# --- the split region ----------------------------------------------------------------------


def test_region_reports_one_slot_per_library_at_its_top(region):
    assert native.region_library_slots(0) == [
        ("nccl", ENGINE_END, SLOT),
        ("nvshmem", ENGINE_END + SLOT, SLOT),
    ]
    assert native.region_info(0)["library_slot"] == SLOT


def test_an_nccl_reservation_lands_in_its_slot_not_in_engine_memory(region):
    addr = Caller("nccl").reserve(3 * GRAN)
    assert addr == NCCL_SLOT
    assert native.region_trajectory(0) == []  # the engine's trajectory is untouched
    assert native.region_library_trajectory(0, "nccl") == [(0, 3 * GRAN, 2)]
    assert native.region_library_trajectory(0, "nvshmem") == []
    assert native.region_info(0)["cursor"] == 0


def test_an_nvshmem_reservation_lands_in_its_own_slot(region):
    Caller("nccl").reserve(GRAN)
    assert Caller("nvshmem").reserve(4 * GRAN) == NVSHMEM_SLOT
    assert native.region_library_trajectory(0, "nvshmem") == [(0, 4 * GRAN, 2)]


def test_a_library_allocation_goes_to_its_slot_and_the_engines_to_the_engine_part(region):
    lib = Caller("nccl").alloc(GRAN + 5)
    eng = engine_alloc(GRAN)
    assert lib == NCCL_SLOT
    assert eng == BASE
    assert native.region_library_trajectory(0, "nccl") == [(0, GRAN + 5, 0)]
    assert native.region_trajectory(0) == [(0, GRAN, 0)]
    assert native.region_is_backed(0, lib, GRAN + 5)


def test_engine_addresses_do_not_move_when_a_library_allocates_differently(region):
    def run(library_sizes: list[int]) -> list[int]:
        region()
        nccl = Caller("nccl")
        addrs = [engine_alloc(GRAN)]
        for size in library_sizes:
            nccl.reserve(size)
        addrs.append(engine_reserve(3 * GRAN))
        nccl.alloc(GRAN)
        addrs.append(engine_alloc(2 * GRAN))
        return addrs

    assert run([GRAN]) == run([5 * GRAN, GRAN, 7 * GRAN])


def test_a_library_that_outgrows_its_slot_is_refused_naming_the_library(region):
    native.take_last_hook_error()
    with pytest.raises(OSError, match="CUresult 2"):  # CUDA_ERROR_OUT_OF_MEMORY
        Caller("nvshmem").reserve(SLOT + GRAN)
    msg = native.take_last_hook_error()
    assert "NVSHMEM's slot" in msg and "KILN_REGION_LIBRARY_SLOT" in msg
    assert native.region_trajectory(0) == []  # nothing spilled into the engine's part


def test_without_library_slots_libraries_share_the_engine_part(region):
    region(0)
    assert native.region_library_slots(0) == []
    assert Caller("nccl").reserve(GRAN) == BASE


def test_library_slots_too_large_for_the_region_are_refused(region):
    native.region_close(0)
    with pytest.raises(RegionError, match="KILN_REGION_LIBRARY_SLOT"):
        native.region_open(0, BASE, SIZE, 0, SIZE // 2)


# --- mapping classes -------------------------------------------------------------------


def _only_mapping() -> dict:
    (m,) = native.library_mappings()
    return m


def test_a_library_mapping_of_its_own_device_memory_is_local_in_its_slot(region):
    nccl = Caller("nccl")
    va = nccl.reserve(4 * GRAN)
    handle = nccl.create(GRAN)
    nccl.map(va + GRAN, GRAN, handle)
    m = _only_mapping()
    assert (m["library"], m["class"], m["slot"], m["offset"], m["size"]) == (
        "nccl",
        "local",
        "nccl",
        GRAN,
        GRAN,
    )
    assert m["in_capture"] is False
    assert native.mappings_cover(va + GRAN, GRAN)
    nccl.unmap(va + GRAN, GRAN)
    assert native.library_mappings() == []


def test_host_memory_a_library_maps_is_classed_host(region):
    nvshmem = Caller("nvshmem")
    va = nvshmem.reserve(GRAN)
    nvshmem.map(va, GRAN, nvshmem.create(GRAN, host=True))
    m = _only_mapping()
    assert (m["library"], m["class"], m["slot"], m["offset"]) == ("nvshmem", "host", "nvshmem", 0)


def test_imported_memory_is_classed_peer_and_the_export_is_counted(region):
    nccl = Caller("nccl")
    fd = nccl.export(nccl.create(GRAN))
    assert native.library_mapping_exports() == 1
    va = nccl.reserve(GRAN)
    nccl.map(va, GRAN, nccl.import_(fd))
    assert _only_mapping()["class"] == "peer"


def test_a_multicast_object_mapped_by_a_library_is_classed_multicast(region):
    nccl = Caller("nccl")
    va = nccl.reserve(2 * GRAN)
    nccl.map(va, 2 * GRAN, nccl.multicast(2 * GRAN))
    m = _only_mapping()
    assert (m["class"], m["size"]) == ("multicast", 2 * GRAN)


def test_a_legacy_ipc_open_is_a_peer_mapping_outside_the_region(region):
    nccl = Caller("nccl")
    ptr = nccl.ipc_open()
    m = _only_mapping()
    assert (m["library"], m["class"], m["slot"], m["offset"], m["size"]) == (
        "nccl",
        "peer",
        "outside",
        0,
        GRAN,
    )
    nccl.ipc_close(ptr)
    assert native.library_mappings() == []


def test_the_engines_own_mappings_are_not_library_mappings(region):
    import ctypes

    from kiln._paths import preload_library

    kiln = ctypes.CDLL(str(preload_library()))
    kiln.cuMemCreate.argtypes = [
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_ulonglong,
    ]
    kiln.cuMemMap.argtypes = [
        ctypes.c_uint64,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_uint64,
        ctypes.c_ulonglong,
    ]
    va = engine_reserve(GRAN)
    handle = ctypes.c_uint64()
    prop = (ctypes.c_char * 64)()  # zeroed CUmemAllocationProp: device memory
    assert kiln.cuMemCreate(ctypes.byref(handle), GRAN, ctypes.cast(prop, ctypes.c_void_p), 0) == 0
    assert kiln.cuMemMap(va, GRAN, 0, handle.value, 0) == 0
    assert native.library_mappings() == []


def test_library_calls_during_a_capture_are_recorded_as_such(region):
    nccl = Caller("nccl")
    va = nccl.reserve(GRAN)
    native.set_capture_open(True)
    try:
        nccl.map(va, GRAN, nccl.create(GRAN))
        nccl.reserve(GRAN)
    finally:
        native.set_capture_open(False)
    engine_alloc(GRAN)  # the engine's calls are not the libraries'
    assert _only_mapping()["in_capture"] is True
    assert native.library_capture_events() == [
        ("nccl", "cuMemMap", GRAN),
        ("nccl", "cuMemAddressReserve", GRAN),
    ]
