"""KV capacity and warmup decisions: SAVE records them, LOAD repeats them exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln import lifecycle
from kiln.lifecycle import StageFailed, WarmupAction, WarmupPhase
from kiln.lifecycle.errors import InvalidHookResult, KvCapacityMismatch, WarmupMismatch
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import close_current_driver, kiln_environ, returning


def save(tmp_path: Path) -> dict:
    summary = ToyEngine(environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    return summary


def test_load_reuses_the_recorded_kv_capacity_without_profiling(
    tmp_path: Path, toy_adapter
) -> None:
    saved = save(tmp_path)
    assert saved["warmups"] == ["profile_run", "compile"]
    loaded = ToyEngine(environ=kiln_environ(tmp_path, "load")).start()
    assert loaded["kv"] == saved["kv"] == {"num_blocks": 1000}
    assert loaded["warmups"] == ["compile"]  # the profiling pass was skipped
    assert loaded["graphs"]["full/bs=8"] == "restored:full/bs=8"


def test_a_different_kv_capacity_at_load_fails_the_stage(tmp_path: Path, toy_adapter) -> None:
    save(tmp_path)
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "load"),
        plugins=[returning("kiln_kv_capacity", {"num_blocks": 999})],
    )
    with pytest.raises(StageFailed) as raised:
        toy.start()
    assert isinstance(raised.value.cause, KvCapacityMismatch)
    assert raised.value.stage == "kv_capacity"


def start(tmp_path: Path, mode: str = "save", **options) -> lifecycle.Driver:
    runtime = options.pop("runtime", FakeRuntime())
    driver = lifecycle.start(
        "toy", environ=kiln_environ(tmp_path, mode), runtime=runtime, **options
    )
    driver.device_bound(0)
    return driver


def test_measure_runs_at_most_once_even_if_an_override_calls_it_twice(tmp_path: Path) -> None:
    calls: list[int] = []

    def measure() -> dict[str, int]:
        calls.append(1)
        return {"blocks": 5}

    class Greedy:
        from kiln.hooks import hookimpl

        @hookimpl(tryfirst=True)
        def kiln_kv_capacity(self, measure):  # type: ignore[no-untyped-def]
            return {"blocks": measure()["blocks"] + measure()["blocks"]}

    driver = start(tmp_path, plugins=[Greedy()])
    assert driver.kv_capacity(measure) == {"blocks": 10}
    assert len(calls) == 1


@pytest.mark.parametrize("bad", [{}, {"blocks": -1}, {"blocks": True}, [("blocks", 1)]])
def test_a_kv_capacity_must_be_a_mapping_of_counts(tmp_path: Path, bad: object) -> None:
    driver = start(tmp_path)
    with pytest.raises(InvalidHookResult):
        driver.kv_capacity(lambda: bad)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize(
    ("mode", "skippable", "action"),
    [
        ("save", True, WarmupAction.RUN_SUSPENDED),
        ("save", False, WarmupAction.RUN),
        ("load", True, WarmupAction.SKIP),
        ("load", False, WarmupAction.RUN),
    ],
)
def test_default_warmup_policy(
    tmp_path: Path, mode: str, skippable: bool, action: WarmupAction, toy_adapter
) -> None:
    if mode == "load":
        save(tmp_path)
    driver = start(tmp_path, mode)
    phase = "profile_run" if skippable else "compile"
    assert driver.warmup_action(WarmupPhase(phase, skippable_on_load=skippable)) is action


def test_a_suspended_warmup_runs_inside_the_runtimes_suspension(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    driver = start(tmp_path, runtime=runtime)
    depth = driver.warmup(WarmupPhase("profile_run"), lambda: runtime.suspended_depth)
    assert depth == 1 and runtime.suspended_depth == 0


def test_a_skipped_warmup_does_not_run(tmp_path: Path, toy_adapter) -> None:
    save(tmp_path)
    driver = start(tmp_path, "load")
    ran: list[int] = []
    assert driver.warmup(WarmupPhase("profile_run"), lambda: ran.append(1)) is None
    assert ran == []


def test_a_load_warmup_that_would_allocate_differently_fails(tmp_path: Path, toy_adapter) -> None:
    save(tmp_path)  # profile_run was run-suspended at SAVE
    driver = start(tmp_path, "load", plugins=[returning("kiln_warmup_policy", WarmupAction.RUN)])
    with pytest.raises(StageFailed) as raised:
        driver.warmup(WarmupPhase("profile_run"), lambda: None)
    assert isinstance(raised.value.cause, WarmupMismatch)
    assert "'profile_run'" in str(raised.value)


def test_a_warmup_policy_must_return_an_action(tmp_path: Path) -> None:
    driver = start(tmp_path, plugins=[returning("kiln_warmup_policy", "sometimes")])
    with pytest.raises(InvalidHookResult, match="'sometimes'"):
        driver.warmup_action(WarmupPhase("x"))


def test_load_fails_early_when_the_archive_lacks_planned_graphs(
    tmp_path: Path, toy_adapter
) -> None:
    save(tmp_path)
    driver = start(tmp_path, "load")
    with pytest.raises(StageFailed, match="no graph for 'full/bs=16'"):
        driver.capture_begin(["full/bs=1", "full/bs=16"])
