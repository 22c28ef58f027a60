"""LOAD refuses to restore when this process's allocations before the capture window differ
from SAVE's: the graphs' pointers into that memory would name other buffers. Driven on the
fake driver (no GPU): a region at BASE, the manifest's trajectory written by hand."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.manifest import Manifest
from kiln.errors import AllocationDriftError
from kiln.graphs import store
from kiln_testing import testing

BASE = 0x6000_0000_0000
GRAN = 2 << 20
KIND = 3  # allocations kiln made itself (region_allocate), as these tests do


@pytest.fixture
def native() -> Iterator[Any]:
    n = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")
    n.region_close(0)
    testing.install_fake_driver(granularity=GRAN)
    n.region_open(0, BASE, 256 * GRAN, 0)
    try:
        yield n
    finally:
        n.region_close(0)
        testing.uninstall_fake_driver()


def materialize(
    prefix: list[tuple[int, int, int]], window: list[tuple[int, int, int]]
) -> list[int]:
    """Runs LOAD's window step for a manifest whose trajectory is `prefix` then `window`;
    returns the window allocations it made."""
    manifest = Manifest(0, prefix + window, (len(prefix), len(prefix) + len(window)), [], [])
    region: Any = SimpleNamespace(device=0, config=SimpleNamespace(base=BASE))
    owned: list[int] = []
    store.materialize_window(manifest, region, SimpleNamespace(own_allocation=owned.append))
    return owned


# SAVE allocated weights (1 MiB, one granule) then a 3 MiB buffer before the window; the
# window holds one 2 MiB allocation.
SAVE_PREFIX = [(0, 1 << 20, KIND), (GRAN, 3 << 20, KIND)]
SAVE_WINDOW = [(3 * GRAN, GRAN, KIND)]


def test_identical_allocations_before_the_window_restore_it_at_its_addresses(native) -> None:
    native.region_allocate(0, 1 << 20)
    native.region_allocate(0, 3 << 20)
    assert materialize(SAVE_PREFIX, SAVE_WINDOW) == [BASE + 3 * GRAN]


def test_one_extra_allocation_before_load_is_drift_naming_its_index(native) -> None:
    native.region_allocate(0, 1 << 20)
    native.region_allocate(0, 3 << 20)
    native.region_allocate(0, 4096)  # e.g. a warmup SAVE ran with the region suspended
    with pytest.raises(AllocationDriftError) as err:
        materialize(SAVE_PREFIX, SAVE_WINDOW)
    assert str(err.value).startswith(
        f"allocation #2 (offset 0x{3 * GRAN:x}, 4096 bytes (kiln)) has no counterpart at SAVE"
    ), err.value
    assert testing.fake_driver_stats()["create_calls"] == 3  # the window was not backed


def test_a_differently_sized_allocation_before_load_is_drift_naming_its_index(native) -> None:
    native.region_allocate(0, 1 << 20)
    native.region_allocate(0, 5 << 20)  # SAVE had 3 MiB here
    with pytest.raises(
        AllocationDriftError, match="allocation #1 differs from SAVE: expected offset"
    ):
        materialize(SAVE_PREFIX, SAVE_WINDOW)


def test_a_missing_allocation_before_load_is_drift_naming_its_index(native) -> None:
    native.region_allocate(0, 1 << 20)
    with pytest.raises(AllocationDriftError, match="made only 1 allocations .* allocation #1"):
        materialize(SAVE_PREFIX, SAVE_WINDOW)


def test_a_window_allocation_landing_elsewhere_is_drift_naming_its_index(native) -> None:
    # The prefix agrees, but the manifest places the window allocation where this region's
    # bump cursor cannot put it.
    native.region_allocate(0, 1 << 20)
    native.region_allocate(0, 3 << 20)
    window = [(5 * GRAN, GRAN, KIND)]
    with pytest.raises(
        AllocationDriftError,
        match=f"capture-window allocation #2 landed at offset 0x{3 * GRAN:x}, SAVE had 0x{5 * GRAN:x}",
    ):
        materialize(SAVE_PREFIX, window)
