"""The deterministic region's logic, driven through the stand-in driver kiln_testing.testing.

No GPU and no libcuda: the fake driver implements the virtual memory management calls the
region uses and counts what is live, so leaks and double frees are visible.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from kiln.errors import KilnError, RegionBaseNotHonoured, RegionError
from kiln_testing import testing

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

DEV = 0
GRAN = 2 << 20  # 2 MiB, the usual granularity
BASE = 0x7F0000000000
SIZE = 256 * GRAN


def _cleanup() -> None:
    for dev in range(4):
        native.region_close(dev)
    testing.uninstall_fake_driver()


@pytest.fixture
def fake():
    """Install a fresh fake driver; always close every region and uninstall it afterwards."""
    installed = []

    def install(**kwargs):
        kwargs.setdefault("granularity", GRAN)
        _cleanup()
        testing.install_fake_driver(**kwargs)
        installed.append(kwargs)
        return testing

    try:
        yield install
    finally:
        _cleanup()


@pytest.fixture
def region(fake):
    """An open region at BASE on DEV with the default fake driver."""
    fake()
    assert native.region_open(DEV, BASE, SIZE, 0) == GRAN
    return native


def stats():
    return testing.fake_driver_stats()


# --- behaviour ---------------------------------------------------------------------------


def test_open_returns_granularity_and_reports_info(region):
    info = native.region_info(DEV)
    assert info["device"] == DEV
    assert info["base"] == BASE
    assert info["size"] == SIZE
    assert info["granularity"] == GRAN
    assert info["cursor"] == 0
    assert info["active"] is True
    assert info["allocations"] == 0
    assert info["bytes_backed"] == 0
    assert native.region_exists(DEV)
    assert stats()["reservations"] == 1


def test_bump_allocation_at_granularity_rounds_sizes_up(region):
    sizes = [1, GRAN, GRAN + 1, 3 * GRAN - 5, 17]
    addrs = [native.region_allocate(DEV, s) for s in sizes]
    expected_k = [0, 1, 2, 4, 7]
    assert addrs == [BASE + k * GRAN for k in expected_k]
    assert native.region_info(DEV)["cursor"] == 8 * GRAN
    assert native.region_info(DEV)["bytes_backed"] == 8 * GRAN
    # The trajectory records the bytes requested (not rounded), kind 3 = kiln's own.
    assert native.region_trajectory(DEV) == [(k * GRAN, s, 3) for k, s in zip(expected_k, sizes)]
    s = stats()
    assert s["live_handles"] == 5 and s["live_mappings"] == 5
    assert s["physical_bytes"] == 8 * GRAN


def test_same_requests_give_same_addresses_in_fresh_regions(fake):
    requests = [5, GRAN * 3, 1, GRAN, GRAN + 7, 12345]
    runs = []
    for _ in range(2):
        fake()
        native.region_open(DEV, BASE, SIZE, 0)
        addrs = [native.region_allocate(DEV, r) for r in requests]
        native.region_release(DEV, addrs[2])
        addrs.append(native.region_allocate(DEV, 99))
        runs.append((addrs, native.region_trajectory(DEV)))
        native.region_close(DEV)
    assert runs[0] == runs[1]
    assert len(set(runs[0][0])) == len(runs[0][0])


def test_release_unmaps_and_releases(region):
    a = native.region_allocate(DEV, 3 * GRAN)
    b = native.region_allocate(DEV, GRAN)
    assert stats()["live_handles"] == 2
    assert native.region_release(DEV, a) is True
    s = stats()
    assert s["live_handles"] == 1 and s["live_mappings"] == 1
    assert s["physical_bytes"] == GRAN
    assert native.region_info(DEV)["bytes_backed"] == GRAN
    # The trajectory keeps every allocation ever made.
    assert len(native.region_trajectory(DEV)) == 2
    # Releasing again, an interior address or one outside the region is refused, not fatal.
    assert native.region_release(DEV, a) is False
    assert native.region_release(DEV, b + 1) is False
    assert native.region_release(DEV, BASE + SIZE + GRAN) is False
    assert native.region_release(DEV, b) is True
    assert stats()["live_handles"] == 0 and stats()["physical_bytes"] == 0


def test_addresses_are_never_reused_after_release(region):
    seen = set()
    for i in range(20):
        a = native.region_allocate(DEV, GRAN // 2 + i)
        assert a not in seen
        seen.add(a)
        native.region_release(DEV, a)
    assert sorted(seen) == [BASE + k * GRAN for k in range(20)]


def test_set_cursor_forward_moves_next_allocation(region):
    native.region_allocate(DEV, GRAN)
    native.region_set_cursor(DEV, 10 * GRAN)
    assert native.region_info(DEV)["cursor"] == 10 * GRAN
    assert native.region_allocate(DEV, 1) == BASE + 10 * GRAN
    # An unaligned cursor is rounded up to the granularity by the next allocation.
    native.region_set_cursor(DEV, 12 * GRAN + 1)
    assert native.region_allocate(DEV, 1) == BASE + 13 * GRAN


def test_set_cursor_back_over_released_space_is_refused_so_addresses_are_never_reused(region):
    a = native.region_allocate(DEV, GRAN)
    native.region_allocate(DEV, GRAN)
    native.region_release(DEV, a + GRAN)
    with pytest.raises(RegionError):
        native.region_set_cursor(DEV, GRAN)
    assert native.region_allocate(DEV, 1) == BASE + 2 * GRAN


def test_compare_prefix_identical_is_none(region):
    for s in (1, GRAN, 7):
        native.region_allocate(DEV, s)
    assert native.region_compare_prefix(DEV, native.region_trajectory(DEV)) is None
    assert native.region_compare_prefix(DEV, [(0, 1, 3), (GRAN, GRAN, 3), (2 * GRAN, 7, 3)]) is None


def test_compare_prefix_extra_allocation_has_no_expected(region):
    native.region_allocate(DEV, 1)
    native.region_allocate(DEV, 2)
    d = native.region_compare_prefix(DEV, [(0, 1, 3)])
    assert d == {"index": 1, "expected": None, "actual": (GRAN, 2, 3)}


def test_compare_prefix_missing_allocation_has_no_actual(region):
    native.region_allocate(DEV, 1)
    d = native.region_compare_prefix(DEV, [(0, 1, 3), (GRAN, 5, 0)])
    assert d == {"index": 1, "expected": (GRAN, 5, 0), "actual": None}


def test_compare_prefix_empty_region_against_recording(region):
    d = native.region_compare_prefix(DEV, [(0, 1, 0)])
    assert d == {"index": 0, "expected": (0, 1, 0), "actual": None}
    assert native.region_compare_prefix(DEV, []) is None


@pytest.mark.parametrize(
    "expected, index",
    [
        ([(0, 1, 3), (GRAN, 9, 3)], 1),  # different size
        ([(0, 1, 3), (2 * GRAN, 8, 3)], 1),  # different offset
        ([(0, 1, 0), (GRAN, 8, 3)], 0),  # different kind
        ([(0, 2, 3), (GRAN, 9, 3)], 0),  # the first of two differences
    ],
)
def test_compare_prefix_reports_first_divergence(region, expected, index):
    native.region_allocate(DEV, 1)
    native.region_allocate(DEV, 8)
    d = native.region_compare_prefix(DEV, expected)
    actual = native.region_trajectory(DEV)
    assert d == {"index": index, "expected": expected[index], "actual": actual[index]}


def test_is_backed_within_and_across_adjacent_allocations(region):
    a = native.region_allocate(DEV, GRAN)
    b = native.region_allocate(DEV, 2 * GRAN)
    assert native.region_is_backed(DEV, a, 1)
    assert native.region_is_backed(DEV, a, GRAN)
    assert native.region_is_backed(DEV, a + GRAN - 4, 8)  # spans both
    assert native.region_is_backed(DEV, a, 3 * GRAN)
    assert native.region_is_backed(DEV, b + 5, 2 * GRAN - 5)
    assert not native.region_is_backed(DEV, a, 3 * GRAN + 1)  # past the last allocation


def test_is_live_only_where_an_allocation_covers_the_address_now(region):
    # The graph walker records a kernel argument word as a region pointer only when it is
    # live: a value past the cursor or inside freed memory cannot be an address the graph
    # reads (vLLM qwen3-8b's FlashAttention 3 parameters held 0x601200000001).
    a = native.region_allocate(DEV, GRAN)
    b = native.region_allocate(DEV, GRAN + 1)
    native.region_release(DEV, a)
    assert native.region_is_live(DEV, b) and native.region_is_live(DEV, b + 2 * GRAN - 1)
    assert not native.region_is_live(DEV, a + 1)  # freed
    assert not native.region_is_live(DEV, b + 2 * GRAN)  # past the cursor
    assert not native.region_is_live(DEV, BASE + SIZE)  # outside the region
    assert not native.region_is_live(DEV, BASE - 1)


def test_is_backed_false_for_freed_gap_and_outside(region):
    a = native.region_allocate(DEV, GRAN)
    b = native.region_allocate(DEV, GRAN)
    c = native.region_allocate(DEV, GRAN)
    native.region_release(DEV, b)
    assert native.region_is_backed(DEV, a, GRAN)
    assert native.region_is_backed(DEV, c, GRAN)
    assert not native.region_is_backed(DEV, b, 1)
    assert not native.region_is_backed(DEV, a, 3 * GRAN)  # spans the freed one
    assert not native.region_is_backed(DEV, a + GRAN - 1, 2)
    assert not native.region_is_backed(DEV, BASE - 8, 4)  # below the region
    assert not native.region_is_backed(DEV, BASE + SIZE, 4)  # above the region
    assert not native.region_is_backed(DEV, c, SIZE)  # runs off the end
    assert not native.region_is_backed(DEV, c + GRAN, 1)  # never allocated


def test_preallocation_fast_path_makes_no_create_calls(fake):
    fake()
    native.region_open(DEV, BASE, SIZE, 4 * GRAN - 100)  # rounded up to 4 granules
    s = stats()
    assert s["create_calls"] == 1 and s["physical_bytes"] == 4 * GRAN
    assert native.region_info(DEV)["bytes_backed"] == 4 * GRAN
    a = native.region_allocate(DEV, GRAN)
    b = native.region_allocate(DEV, 2 * GRAN)
    assert (a, b) == (BASE, BASE + GRAN)
    assert stats()["create_calls"] == 1
    assert stats()["live_mappings"] == 1
    assert native.region_is_backed(DEV, a, 3 * GRAN)
    # A straddling allocation maps only the part past the prefix.
    c = native.region_allocate(DEV, 3 * GRAN)
    assert c == BASE + 3 * GRAN
    s = stats()
    assert s["create_calls"] == 2
    assert s["physical_bytes"] == 4 * GRAN + 2 * GRAN
    assert s["live_mappings"] == 2
    assert native.region_info(DEV)["bytes_backed"] == 6 * GRAN
    assert native.region_is_backed(DEV, a, 6 * GRAN)
    # Releasing it unmaps only the tail; the prefix stays.
    assert native.region_release(DEV, c)
    s = stats()
    assert s["physical_bytes"] == 4 * GRAN and s["live_handles"] == 1 and s["live_mappings"] == 1
    assert native.region_info(DEV)["bytes_backed"] == 4 * GRAN
    # Releasing one inside the prefix unmaps nothing.
    assert native.region_release(DEV, b)
    assert stats()["physical_bytes"] == 4 * GRAN
    native.region_close(DEV)
    assert stats() | {"create_calls": 0} == {
        "reservations": 0,
        "live_handles": 0,
        "live_mappings": 0,
        "physical_bytes": 0,
        "create_calls": 0,
        "busy_unmaps": 0,
    }


def test_close_releases_everything(fake):
    fake()
    native.region_open(DEV, BASE, SIZE, 2 * GRAN)
    addrs = [native.region_allocate(DEV, s) for s in (1, GRAN * 3, 5, GRAN)]
    native.region_release(DEV, addrs[2])
    native.region_close(DEV)
    s = stats()
    assert (s["reservations"], s["live_handles"], s["live_mappings"], s["physical_bytes"]) == (
        0,
        0,
        0,
        0,
    )
    assert not native.region_exists(DEV)
    # Closing again, or a device that never had one, is harmless.
    native.region_close(DEV)
    native.region_close(3)


def test_reopen_after_close_gives_same_addresses(fake):
    fake()
    native.region_open(DEV, BASE, SIZE)
    first = [native.region_allocate(DEV, 10) for _ in range(3)]
    native.region_close(DEV)
    native.region_open(DEV, BASE, SIZE)
    assert [native.region_allocate(DEV, 10) for _ in range(3)] == first


def test_suspend_and_resume_toggle_active(region):
    native.region_suspend(DEV)
    assert native.region_info(DEV)["active"] is False
    native.region_resume(DEV)
    assert native.region_info(DEV)["active"] is True


def test_regions_on_two_devices_are_independent(fake):
    fake()
    native.region_open(0, BASE, SIZE)
    native.region_open(1, BASE + SIZE, SIZE)
    assert native.region_allocate(1, 1) == BASE + SIZE
    assert native.region_allocate(0, 1) == BASE
    assert native.region_trajectory(0) == [(0, 1, 3)]
    assert native.region_trajectory(1) == [(0, 1, 3)]


def test_concurrent_allocations_are_distinct_and_recorded_once(region):
    n_threads, per_thread = 8, 25
    results: list[list[tuple[int, int]]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(per_thread):
                size = 1 + (i * per_thread + j) % (2 * GRAN)
                results[i].append((native.region_allocate(DEV, size), size))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    allocs = sorted(a for r in results for a in r)
    assert len(allocs) == n_threads * per_thread
    assert len({a for a, _ in allocs}) == len(allocs)
    for (a, size), (nxt, _) in itertools.pairwise(allocs):
        assert a + size <= nxt, "allocations overlap"
        assert (a - BASE) % GRAN == 0
    traj = native.region_trajectory(DEV)
    assert sorted((BASE + o, s) for o, s, _ in traj) == allocs
    assert [o for o, _, _ in traj] == sorted(o for o, _, _ in traj)  # recorded in carve order
    s = stats()
    assert s["live_handles"] == len(allocs) == s["live_mappings"]


# --- errors ------------------------------------------------------------------------------


def test_base_not_honoured_names_both_addresses_and_leaks_nothing(fake):
    fake(honour_base=False)
    with pytest.raises(RegionBaseNotHonoured) as ei:
        native.region_open(DEV, BASE, SIZE)
    msg = str(ei.value)
    assert hex(BASE) in msg
    assert "0x100000000000" in msg  # where the fake driver put it
    assert stats()["reservations"] == 0
    assert not native.region_exists(DEV)
    assert isinstance(ei.value, RegionError)


@pytest.mark.parametrize(
    "base, size",
    [
        (BASE + 4096, SIZE),  # base not a multiple
        (BASE, SIZE + 4096),  # size not a multiple
        (0, SIZE),  # no base
        (BASE, 0),  # no size
    ],
)
def test_misaligned_or_zero_base_or_size_is_region_error(fake, base, size):
    fake()
    with pytest.raises(RegionError):
        native.region_open(DEV, base, size)
    assert stats()["reservations"] == 0
    assert not native.region_exists(DEV)


def test_preallocation_larger_than_region_is_refused_without_leak(fake):
    fake()
    with pytest.raises(RegionError):
        native.region_open(DEV, BASE, 4 * GRAN, 5 * GRAN)
    s = stats()
    assert (s["reservations"], s["live_handles"], s["live_mappings"]) == (0, 0, 0)


def test_device_out_of_range_is_region_error(fake):
    fake()
    with pytest.raises(RegionError):
        native.region_open(-1, BASE, SIZE)
    with pytest.raises(RegionError):
        native.region_open(10_000, BASE, SIZE)


def test_second_open_on_same_device_is_refused(region):
    with pytest.raises(RegionError, match="already"):
        native.region_open(DEV, BASE + SIZE, SIZE)
    # The first one is untouched.
    assert native.region_info(DEV)["base"] == BASE
    assert stats()["reservations"] == 1


def test_calls_without_a_region_raise_region_error(fake):
    fake()
    for call in (
        lambda: native.region_info(DEV),
        lambda: native.region_allocate(DEV, 1),
        lambda: native.region_release(DEV, BASE),
        lambda: native.region_trajectory(DEV),
        lambda: native.region_set_cursor(DEV, 0),
        lambda: native.region_is_backed(DEV, BASE, 1),
        lambda: native.region_compare_prefix(DEV, []),
        lambda: native.region_suspend(DEV),
    ):
        with pytest.raises(RegionError):
            call()


def test_exhaustion_is_region_error_and_changes_nothing(fake):
    fake()
    native.region_open(DEV, BASE, 4 * GRAN)
    native.region_allocate(DEV, 3 * GRAN)
    with pytest.raises(RegionError, match="exhausted"):
        native.region_allocate(DEV, GRAN + 1)
    assert native.region_info(DEV)["cursor"] == 3 * GRAN
    assert len(native.region_trajectory(DEV)) == 1
    assert native.region_allocate(DEV, GRAN) == BASE + 3 * GRAN
    with pytest.raises(RegionError):
        native.region_allocate(DEV, 1)


@pytest.mark.parametrize("bytes_", [0, 2**64 - 1, 2**63])
def test_zero_or_huge_request_is_region_error(region, bytes_):
    with pytest.raises(RegionError):
        native.region_allocate(DEV, bytes_)
    assert native.region_trajectory(DEV) == []
    assert stats()["create_calls"] == 0


def test_create_failure_raises_and_leaks_no_handle(fake):
    fake(fail_create_after=2)
    native.region_open(DEV, BASE, SIZE)
    native.region_allocate(DEV, 1)
    native.region_allocate(DEV, 1)
    with pytest.raises(RegionError, match="cuMemCreate"):
        native.region_allocate(DEV, 1)
    s = stats()
    assert s["live_handles"] == 2 and s["live_mappings"] == 2
    assert len(native.region_trajectory(DEV)) == 2
    assert native.region_info(DEV)["cursor"] == 2 * GRAN
    assert native.region_info(DEV)["bytes_backed"] == 2 * GRAN


def test_map_failure_releases_the_created_handle(fake):
    fake(fail_map_after=1)
    native.region_open(DEV, BASE, SIZE)
    native.region_allocate(DEV, 1)
    with pytest.raises(RegionError, match="cuMemMap"):
        native.region_allocate(DEV, 1)
    s = stats()
    assert s["live_handles"] == 1 and s["live_mappings"] == 1 and s["physical_bytes"] == GRAN
    assert len(native.region_trajectory(DEV)) == 1


def test_preallocation_create_failure_leaks_no_reservation(fake):
    fake(fail_create_after=0)
    with pytest.raises(RegionError):
        native.region_open(DEV, BASE, SIZE, GRAN)
    s = stats()
    assert (s["reservations"], s["live_handles"]) == (0, 0)
    assert not native.region_exists(DEV)


def test_physical_memory_exhaustion_is_region_error(fake):
    fake(device_memory=3 * GRAN)
    native.region_open(DEV, BASE, SIZE)
    native.region_allocate(DEV, 2 * GRAN)
    with pytest.raises(RegionError):
        native.region_allocate(DEV, 2 * GRAN)
    assert native.region_allocate(DEV, GRAN) == BASE + 2 * GRAN


def test_set_cursor_back_over_live_allocation_is_refused(region):
    native.region_allocate(DEV, GRAN)
    native.region_allocate(DEV, GRAN)
    with pytest.raises(RegionError):
        native.region_set_cursor(DEV, GRAN)
    with pytest.raises(RegionError):
        native.region_set_cursor(DEV, 0)
    assert native.region_info(DEV)["cursor"] == 2 * GRAN


def test_set_cursor_past_the_end_is_refused(region):
    with pytest.raises(RegionError):
        native.region_set_cursor(DEV, SIZE + 1)
    native.region_set_cursor(DEV, SIZE)
    with pytest.raises(RegionError):
        native.region_allocate(DEV, 1)


def test_compare_prefix_unknown_kind_is_an_error(region):
    with pytest.raises(KilnError):
        native.region_compare_prefix(DEV, [(0, 1, 4)])
