"""The native runtime's CPU-side pieces: the recipe `kiln run` passes, and which parts of
an engine's capture result become a restored graph's outputs."""

from __future__ import annotations

import json

import pytest
from kiln.lifecycle.environment import COMMAND
from kiln.native_runtime import _tensors, recipe_from_environment


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
