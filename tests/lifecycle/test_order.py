"""Hooks fire in the documented order; calls out of order are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln import lifecycle
from kiln.lifecycle.errors import DuplicateGraph, LifecycleOrderError
from kiln.lifecycle.types import WarmupPhase
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import Recorder, close_current_driver, kiln_environ, save_other_ranks

CAPTURES = ["kiln_capture_graph"] * 4
SAVE_ORDER = [
    "kiln_process_init",
    "kiln_pin_settings",
    "kiln_fingerprint",
    "kiln_device_bound",
    "kiln_communicators_ready",
    "kiln_weights_loaded",
    "kiln_collectives_bootstrapped",
    "kiln_kv_capacity",
    "kiln_warmup_policy",  # profile_run, inside the engine's measure()
    "kiln_warmup_policy",  # compile
    "kiln_capture_begin",
    *CAPTURES,
    "kiln_capture_end",
    "kiln_region_close",
    "kiln_ready",
]
# LOAD reuses the recorded KV capacity: measure(), and the profiling warmup in it, never run.
LOAD_ORDER = [name for name in SAVE_ORDER if name != "kiln_warmup_policy"]
LOAD_ORDER.insert(LOAD_ORDER.index("kiln_capture_begin"), "kiln_warmup_policy")


def run_toy(tmp_path: Path, mode: str) -> Recorder:
    recorder = Recorder()
    ToyEngine(
        world_size=2,
        nvshmem=True,
        environ=kiln_environ(tmp_path, mode),
        plugins=[recorder.plugin],
    ).start()
    close_current_driver()
    return recorder


def test_save_fires_every_hook_in_the_documented_order(tmp_path: Path, toy_adapter) -> None:
    assert run_toy(tmp_path, "save").names == SAVE_ORDER


def test_load_fires_every_hook_in_the_documented_order(tmp_path: Path, toy_adapter) -> None:
    run_toy(tmp_path, "save")
    save_other_ranks(tmp_path, 2, nvshmem=True)
    recorder = run_toy(tmp_path, "load")
    assert recorder.names == LOAD_ORDER
    assert {str(args["mode"]) for _, args in recorder.calls} == {"load"}


def test_hooks_receive_the_documented_arguments(tmp_path: Path, toy_adapter) -> None:
    recorder = run_toy(tmp_path, "save")
    (bound,) = recorder.args("kiln_device_bound")
    assert bound["device"] == 0 and bound["ctx"].device == 0
    (begin,) = recorder.args("kiln_capture_begin")
    assert begin["keys"] == ("full/bs=1", "full/bs=2", "full/bs=4", "full/bs=8")
    assert [a["key"] for a in recorder.args("kiln_capture_graph")] == list(begin["keys"])
    phases = [a["phase"].name for a in recorder.args("kiln_warmup_policy")]
    assert phases == ["profile_run", "compile"]
    (ready,) = recorder.args("kiln_ready")
    assert ready["report"].outcome == "saved"


def start(tmp_path: Path, **options) -> lifecycle.Driver:
    return lifecycle.start("toy", environ=kiln_environ(tmp_path), runtime=FakeRuntime(), **options)


def test_a_stage_before_device_bound_is_refused(tmp_path: Path) -> None:
    driver = start(tmp_path)
    with pytest.raises(LifecycleOrderError, match="'weights_loaded'.*'process_init'"):
        driver.weights_loaded()


def test_going_back_to_an_earlier_stage_is_refused(tmp_path: Path) -> None:
    driver = start(tmp_path)
    driver.device_bound(0)
    driver.weights_loaded()
    with pytest.raises(LifecycleOrderError, match="'communicators_ready' called after"):
        driver.communicators_ready()


def test_capture_graph_outside_a_capture_set_is_refused(tmp_path: Path) -> None:
    driver = start(tmp_path)
    driver.device_bound(0)
    with pytest.raises(LifecycleOrderError, match="between capture_begin and capture_end"):
        driver.capture_graph("g", lambda: "native")


def test_warmup_after_the_region_closed_is_refused(tmp_path: Path) -> None:
    driver = start(tmp_path)
    driver.device_bound(0)
    driver.region_close()
    with pytest.raises(LifecycleOrderError, match="warmups run between"):
        driver.warmup(WarmupPhase("late"), lambda: None)


def test_order_errors_are_raised_under_the_fallback_policy_too(tmp_path: Path) -> None:
    driver = lifecycle.start(
        "toy", environ=kiln_environ(tmp_path, policy="fallback"), runtime=FakeRuntime()
    )
    with pytest.raises(LifecycleOrderError):
        driver.capture_end()


def test_optional_stages_may_be_skipped_and_capture_sets_repeat(tmp_path: Path) -> None:
    recorder = Recorder()
    driver = start(tmp_path, plugins=[recorder.plugin])
    driver.device_bound(0)
    driver.kv_capacity(lambda: {"blocks": 10})
    for graph_set in ("target", "draft"):
        driver.capture_begin([f"{graph_set}/1"])
        driver.capture_graph(f"{graph_set}/1", lambda: "native")
        driver.capture_end()
    driver.region_close()
    report = driver.ready()
    assert report is not None and report.graphs_captured == 2
    assert recorder.names.count("kiln_capture_begin") == 2


def test_a_graph_key_may_be_captured_once(tmp_path: Path) -> None:
    driver = start(tmp_path)
    driver.device_bound(0)
    driver.capture_begin()
    driver.capture_graph("g", lambda: "native")
    with pytest.raises(DuplicateGraph, match="'g'"):
        driver.capture_graph("g", lambda: "native")


def test_starting_twice_returns_the_same_driver_but_not_for_another_engine(
    tmp_path: Path,
) -> None:
    driver = start(tmp_path)
    assert lifecycle.start("toy") is driver
    assert lifecycle.current() is driver
    with pytest.raises(lifecycle.UsageError, match="'toy'.*not 'vllm'"):
        lifecycle.start("vllm")
