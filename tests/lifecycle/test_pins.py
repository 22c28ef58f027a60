"""Pins hold for a restore; an explicit user setting that contradicts one is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln import lifecycle
from kiln.lifecycle import Pin, PinConflict
from kiln.lifecycle.errors import ConflictingPins, InvalidHookResult
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import Recorder, kiln_environ, returning


def test_pins_are_applied_to_settings_the_user_left_at_default(tmp_path: Path, toy_adapter) -> None:
    summary = ToyEngine(environ=kiln_environ(tmp_path)).start()
    assert summary["settings"]["graph_mode"] == "full"  # the toy default is "piecewise"
    assert summary["settings"]["capture_sizes"] == [1, 2, 4, 8]


@pytest.mark.parametrize("policy", ["strict", "fallback"])
def test_an_explicit_conflicting_setting_raises_under_every_policy(
    tmp_path: Path, policy: str, toy_adapter
) -> None:
    recorder = Recorder()
    toy = ToyEngine(
        {"graph_mode": "piecewise"},
        environ=kiln_environ(tmp_path, policy=policy),
        plugins=[recorder.plugin],
    )
    with pytest.raises(PinConflict) as raised:
        toy.start()
    err = raised.value
    assert (err.key, err.pinned, err.actual) == ("graph_mode", "full", "piecewise")
    message = str(err)
    assert "'graph_mode'" in message and "'piecewise'" in message and "'full'" in message
    assert "kiln restores whole graphs" in message  # the pin's reason
    assert "kiln_device_bound" not in recorder.names


def test_an_explicit_setting_equal_to_the_pin_is_fine(tmp_path: Path, toy_adapter) -> None:
    summary = ToyEngine({"capture_sizes": [1, 2, 4, 8]}, environ=kiln_environ(tmp_path)).start()
    assert summary["report"]["outcome"] == "saved"


def start(tmp_path: Path, *plugins: object) -> lifecycle.Driver:
    return lifecycle.start(
        "toy", environ=kiln_environ(tmp_path), runtime=FakeRuntime(), plugins=list(plugins)
    )


def test_two_adapters_pinning_one_setting_differently_is_an_error(tmp_path: Path) -> None:
    first = returning("kiln_pin_settings", [Pin("seed", 0, "graphs bake in the RNG offset")])
    second = returning("kiln_pin_settings", [Pin("seed", 1, "another reason")])
    driver = start(tmp_path, first, second)
    with pytest.raises(ConflictingPins, match="'seed' is pinned to"):
        driver.resolve_pins({"seed": 0}, explicit=())


def test_a_pin_hook_must_return_pins(tmp_path: Path) -> None:
    driver = start(tmp_path, returning("kiln_pin_settings", {"seed": 0}))
    with pytest.raises(InvalidHookResult, match="kiln_pin_settings"):
        driver.resolve_pins({}, explicit=())


def test_a_pin_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        Pin("seed", 0, "  ")


def test_boolean_pins_do_not_equal_integers(tmp_path: Path) -> None:
    driver = start(tmp_path, returning("kiln_pin_settings", [Pin("eager", False, "graphs")]))
    with pytest.raises(PinConflict):
        driver.resolve_pins({"eager": 0}, explicit={"eager"})


def test_nothing_is_pinned_when_kiln_is_off(tmp_path: Path) -> None:
    recorder = Recorder()
    driver = lifecycle.start("toy", environ={}, runtime=FakeRuntime(), plugins=[recorder.plugin])
    assert driver.resolve_pins({"graph_mode": "piecewise"}, explicit={"graph_mode"}) == {}
    assert recorder.calls == []
