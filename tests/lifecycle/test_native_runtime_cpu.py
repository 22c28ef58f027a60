"""The native runtime's CPU-side pieces: the recipe `kiln run` passes, and which parts of
an engine's capture result become a restored graph's outputs."""

from __future__ import annotations

import json

import pytest
from kiln.lifecycle.environment import COMMAND
from kiln.lifecycle.native_runtime import NativeRuntime, _tensors, recipe_from_environment
from kiln.lifecycle.types import RestoreProgress


def test_the_launched_command_becomes_a_command_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMMAND, json.dumps(["python", "-m", "demo"]))
    assert recipe_from_environment() == {"kind": "command", "argv": ["python", "-m", "demo"]}


@pytest.mark.parametrize("raw", ["", "not json", json.dumps({"argv": 1}), json.dumps([1, 2])])
def test_a_missing_or_malformed_command_gives_no_recipe(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(COMMAND, raw)
    assert recipe_from_environment() is None


def test_non_tensor_results_have_no_outputs() -> None:
    assert _tensors(None) == []
    assert _tensors(("graph", 3)) == []


class _Graph:
    def __init__(self, own: bool) -> None:
        self.has_own_executable = own


class _Restored(dict):
    """Stands in for a RestoredSet whose background builds are under way."""

    started = True

    def __init__(self, own: list[bool]) -> None:
        super().__init__({f"g{i}": _Graph(o) for i, o in enumerate(own)})
        self.finished = False

    def finish(self) -> None:
        self.finished = True
        for graph in self.values():
            graph.has_own_executable = True


def test_nothing_restored_means_nothing_is_being_built() -> None:
    runtime = NativeRuntime()
    assert runtime.restore_progress() == RestoreProgress(0, 0)
    assert runtime.finish_restores() == RestoreProgress(0, 0)


def test_progress_counts_graphs_with_and_without_their_own_executable() -> None:
    runtime = NativeRuntime()
    restored = _Restored([True, False, False])
    runtime._restored = restored  # type: ignore[assignment]
    assert runtime.restore_progress() == RestoreProgress(own_executable=1, on_template=2)
    assert not restored.finished
    assert runtime.finish_restores() == RestoreProgress(own_executable=3, on_template=0)
    assert restored.finished
