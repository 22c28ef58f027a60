"""SAVE refuses a graph that reads memory allocated inside the capture session but outside
every capture (LOAD would re-create it without its contents), unless it is a declared input."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kiln.errors import NonPersistableGraph
from kiln.graphs.store import _check_window_references

BASE = 0x6000_0000_0000
# 0: weights (before the window), 1: captured, 2: allocated in the window between captures,
# 3: captured.
TRAJ = [(0, 0x1000, 0), (0x1000, 0x1000, 0), (0x2000, 0x1000, 0), (0x3000, 0x1000, 0)]


def session(
    pointers: list[int],
    inputs: list[tuple[int, int]] = (),  # type: ignore[assignment]
    *,
    first_pointers: list[int] = (),  # type: ignore[assignment]
) -> SimpleNamespace:
    first = SimpleNamespace(
        name="f",
        desc=SimpleNamespace(region_pointers=lambda: first_pointers),
        trajectory_span=(1, 2),
        input_specs=[],
    )
    graph = SimpleNamespace(
        name="g",
        desc=SimpleNamespace(region_pointers=lambda: pointers),
        trajectory_span=(3, 4),
        input_specs=[SimpleNamespace(address=a, nbytes=n) for a, n in inputs],
    )
    return SimpleNamespace(
        window=(1, 4),
        region=SimpleNamespace(config=SimpleNamespace(base=BASE)),
        graphs=[first, graph],
    )


@pytest.mark.parametrize("addr", [BASE, BASE + 0xFFF, BASE + 0x1800, BASE + 0x3000, BASE + 0x5000])
def test_weights_captured_memory_and_other_addresses_are_fine(addr: int) -> None:
    _check_window_references(session([addr, addr]), TRAJ)


@pytest.mark.parametrize("addr", [BASE + 0x2000, BASE + 0x2FFF])
def test_memory_allocated_between_captures_is_refused(addr: int) -> None:
    with pytest.raises(NonPersistableGraph, match=f"0x{addr:x}"):
        _check_window_references(session([BASE + 0x1000, addr]), TRAJ)


def test_a_declared_input_there_is_fine() -> None:
    _check_window_references(session([BASE + 0x2010], inputs=[(BASE + 0x2000, 0x100)]), TRAJ)


def test_first_full_graph_pointing_one_past_its_memory_is_fine() -> None:
    # Regression (vLLM qwen3-8b, FULL graph t512, the first captured): a kernel argument
    # equal to the end of the graph's last allocation is the start of the next one, made
    # after the capture. It is not a read of that later allocation.
    _check_window_references(session([], first_pointers=[BASE + 0x2000]), TRAJ)
