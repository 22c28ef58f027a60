"""Window allocations LOAD steps over instead of backing: SAVE lists those it had freed and
no graph points into; the manifest validates the list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.manifest import Manifest
from kiln.errors import ArchiveCorrupt
from kiln.graphs import store
from kiln_testing import testing

BASE = 0x6000_0000_0000
# 0: weights (before the window); 1..4 inside the window.
TRAJ = [
    (0, 0x1000, 0),
    (0x1000, 0x1000, 0),
    (0x2000, 0x1000, 0),
    (0x3000, 0x1000, 0),
    (0x4000, 0x1000, 0),
]


def session(pointers: list[int]) -> Any:
    graph = SimpleNamespace(desc=SimpleNamespace(region_pointers=lambda: pointers))
    region = SimpleNamespace(device=0, config=SimpleNamespace(base=BASE))
    return SimpleNamespace(window=(1, 5), region=region, graphs=[graph])


def test_freed_unreferenced_window_memory_is_left_unbacked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression (vLLM qwen3-8b LOAD ran out of memory): every capture's freed warmup
    # activations were backed at once. 2 and 4 are freed; a graph points into 4.
    live = {BASE + 0x1000, BASE + 0x3000}
    fake = SimpleNamespace(region_is_backed=lambda dev, addr, size: addr in live)
    monkeypatch.setattr(store, "native", lambda: fake)
    assert store._window_unbacked(session([BASE + 0x1010, BASE + 0x4800]), TRAJ) == [2]


def manifest(unbacked: list[int] | None) -> dict[str, Any]:
    return Manifest(0, TRAJ, (1, 5), [], [], window_unbacked=unbacked).to_json()


def test_the_list_round_trips() -> None:
    assert Manifest.from_json(manifest([2, 4]), set()).window_unbacked == [2, 4]
    assert Manifest.from_json(manifest(None), set()).window_unbacked is None


@pytest.mark.parametrize("bad", [[0], [5], [3, 2], [2, 2]])
def test_a_list_outside_the_window_or_out_of_order_is_corrupt(bad: list[int]) -> None:
    with pytest.raises(ArchiveCorrupt, match="window_unbacked"):
        Manifest.from_json(manifest(bad), set())


GRAN = 2 << 20


@pytest.fixture
def fake_region() -> Any:
    """A region at BASE on device 0 over kiln's stand-in driver (no GPU)."""
    native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")
    native.region_close(0)
    testing.install_fake_driver(granularity=GRAN)
    native.region_open(0, BASE, 256 * GRAN, 0)
    try:
        yield native
    finally:
        native.region_close(0)
        testing.uninstall_fake_driver()


@pytest.mark.parametrize("unbacked", [[2], [3]])
def test_load_steps_over_unbacked_window_memory_without_backing_it(
    fake_region: Any, unbacked: list[int]
) -> None:
    native = fake_region
    native.region_allocate(0, 1 << 20)  # before the window (weights)
    prefix = [tuple(e) for e in native.region_trajectory(0)]
    window = [(GRAN, GRAN, 0), (2 * GRAN, 3 * GRAN, 0), (5 * GRAN, GRAN, 0)]
    manifest = Manifest(0, prefix + window, (1, 4), [], [], window_unbacked=unbacked)
    owned: list[int] = []
    region: Any = SimpleNamespace(device=0, config=SimpleNamespace(base=BASE))
    store.materialize_window(manifest, region, SimpleNamespace(own_allocation=owned.append))
    skipped = {2: 3 * GRAN, 3: GRAN}[unbacked[0]]
    stats = testing.fake_driver_stats()
    assert stats["physical_bytes"] == 6 * GRAN - skipped
    assert stats["create_calls"] == 3  # the prefix and the two backed window allocations
    assert BASE + window[unbacked[0] - 1][0] not in owned and len(owned) == 2
    # The cursor ends where SAVE's allocations left it.
    assert native.region_allocate(0, 1) == BASE + 6 * GRAN
