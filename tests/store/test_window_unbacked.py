"""Window allocations LOAD steps over instead of backing: SAVE lists those it had freed and
no graph points into; the manifest validates the list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kiln import store
from kiln.errors import ArchiveCorrupt
from kiln.manifest import Manifest

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
