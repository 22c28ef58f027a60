"""kiln_vllm.workspace: the MoE workspace's size as SAVE's profiling left it, and the
refusals around placing it inside the region. (Placing it allocates a CUDA tensor: the
vLLM GPU test covers that.)"""

from __future__ import annotations

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.workspace import place_workspace, slot_bytes, workspace_bytes


class _Buffer:
    """A uint8 buffer as vLLM's WorkspaceManager keeps one per slot."""

    def __init__(self, nbytes: int) -> None:
        self._n = nbytes

    def numel(self) -> int:
        return self._n

    def element_size(self) -> int:
        return 1


class _Manager:
    def __init__(self, *sizes: int | None, locked: bool = False) -> None:
        self._current_workspaces = [None if s is None else _Buffer(s) for s in sizes]
        self._device = "cuda:0"
        self._locked = locked

    def is_locked(self) -> bool:
        return self._locked


def test_the_size_is_the_first_slots_bytes() -> None:
    assert workspace_bytes(_Manager(64 << 20)) == 64 << 20
    assert slot_bytes(_Manager(8, None)) == [8, 0]


def test_a_workspace_never_grown_has_size_zero() -> None:
    assert workspace_bytes(_Manager(None)) == 0


def test_a_second_micro_batch_slot_in_use_is_refused_by_name() -> None:
    with pytest.raises(KilnError, match="2 micro-batch slots in use"):
        workspace_bytes(_Manager(1 << 20, 1 << 20))


def test_placing_no_workspace_touches_nothing() -> None:
    manager = _Manager(4096)
    before = manager._current_workspaces[0]
    place_workspace(0, manager)
    assert manager._current_workspaces[0] is before


def test_a_locked_workspace_is_not_replaced() -> None:
    manager = _Manager(4096, locked=True)
    with pytest.raises(KilnError, match="already locked"):
        place_workspace(4096, manager)
