"""A failure in each stage follows each policy: strict stops, fallback starts natively."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.archive import archive_lock
from kiln.errors import DriverError, KilnError
from kiln.lifecycle import StageFailed
from kiln.lifecycle.archive_io import archive_file, report_file
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import (
    Recorder,
    close_current_driver,
    failing_in,
    kiln_environ,
    save_other_ranks,
)

# (mode, what fails, the stage that must be reported)
HOOK_FAILURES = [
    ("save", "kiln_process_init", "process_init"),
    ("save", "kiln_pin_settings", "pin_settings"),
    ("save", "kiln_fingerprint", "device_bound"),
    ("save", "kiln_device_bound", "device_bound"),
    ("save", "kiln_communicators_ready", "communicators_ready"),
    ("save", "kiln_weights_loaded", "weights_loaded"),
    ("save", "kiln_collectives_bootstrapped", "collectives_bootstrapped"),
    ("save", "kiln_kv_capacity", "kv_capacity"),
    ("save", "kiln_warmup_policy", "warmup"),
    ("save", "kiln_capture_begin", "capture_begin"),
    ("save", "kiln_capture_graph", "capture_graph"),
    ("save", "kiln_capture_end", "capture_end"),
    ("save", "kiln_region_close", "region_close"),
    ("load", "kiln_device_bound", "device_bound"),
    ("load", "kiln_weights_loaded", "weights_loaded"),
    ("load", "kiln_kv_capacity", "kv_capacity"),
    ("load", "kiln_warmup_policy", "warmup"),
    ("load", "kiln_capture_graph", "capture_graph"),
]
RUNTIME_FAILURES = [
    ("save", "fingerprint", "device_bound"),
    ("save", "bind", "device_bound"),
    ("save", "collectives_bootstrapped", "collectives_bootstrapped"),
    ("save", "suspended", "warmup"),
    ("save", "begin_graph", "capture_graph"),
    ("save", "end_graph", "capture_graph"),
    ("save", "close_region", "region_close"),
    ("save", "sections", "ready"),
    ("load", "bind", "device_bound"),
    ("load", "restore", "capture_graph"),
    ("load", "close_region", "region_close"),
]
CASES = [("hook", *case) for case in HOOK_FAILURES] + [
    ("runtime", *case) for case in RUNTIME_FAILURES
]
IDS = [f"{kind}-{mode}-{what}" for kind, mode, what, _ in CASES]


def saved_archive(tmp_path: Path) -> None:
    ToyEngine(world_size=2, nvshmem=True, environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    save_other_ranks(tmp_path, 2, nvshmem=True)


def engine(
    tmp_path: Path, kind: str, mode: str, what: str, policy: str
) -> tuple[ToyEngine, Recorder]:
    if mode == "load":
        saved_archive(tmp_path)
    recorder = Recorder()
    plugins = [recorder.plugin]
    runtime = FakeRuntime()
    if kind == "hook":
        plugins.append(failing_in(what, DriverError(f"injected failure in {what}")))
    else:
        runtime = FakeRuntime(fail_at=what)
    toy = ToyEngine(
        world_size=2,
        nvshmem=True,
        environ=kiln_environ(tmp_path, mode, policy),
        plugins=plugins,
        runtime=runtime,
    )
    return toy, recorder


@pytest.mark.parametrize(("kind", "mode", "what", "stage"), CASES, ids=IDS)
def test_strict_policy_stops_and_names_the_stage(
    tmp_path: Path, kind: str, mode: str, what: str, stage: str, toy_adapter
) -> None:
    toy, recorder = engine(tmp_path, kind, mode, what, "strict")
    with pytest.raises(StageFailed) as raised:
        toy.start()
    assert raised.value.stage == stage
    assert f"injected failure in {what}" in str(raised.value)
    assert isinstance(raised.value.cause, KilnError)
    (failure,) = recorder.args("kiln_failure")
    assert (failure["stage"], str(failure["action"]), str(failure["mode"])) == (stage, "stop", mode)
    assert "kiln_ready" not in recorder.names
    report = (tmp_path / "archive" / "startup-report.json").read_text()
    assert '"outcome": "failed"' in report and f'"stage": "{stage}"' in report
    with archive_lock(archive_file(tmp_path / "archive")):
        pass  # a stopped SAVE does not keep the archive locked


@pytest.mark.parametrize(("kind", "mode", "what", "stage"), CASES, ids=IDS)
def test_fallback_policy_starts_natively_and_says_why(
    tmp_path: Path, kind: str, mode: str, what: str, stage: str, toy_adapter
) -> None:
    toy, recorder = engine(tmp_path, kind, mode, what, "fallback")
    archive = archive_file(tmp_path / "archive")
    before = archive.read_bytes() if archive.exists() else None
    summary = toy.start()

    assert summary["mode"] == "native"
    report = summary["report"]
    assert report["outcome"] == "fallback"
    assert report["fallback_reason"].startswith(f"{stage}: ")
    assert f"injected failure in {what}" in report["fallback_reason"]
    assert report["error"]["stage"] == stage
    failure = recorder.args("kiln_failure")[0]  # a hook failing again later is noted too
    assert (failure["stage"], str(failure["action"]), str(failure["mode"])) == (
        stage,
        "fallback",
        mode,
    )
    after_failure = recorder.calls[recorder.names.index("kiln_failure") + 1 :]
    assert {str(args["mode"]) for _, args in after_failure} == {"native"}
    assert recorder.names[-1] == "kiln_ready"
    # Every graph the engine holds is usable: native, or restored before the failure.
    assert len(summary["graphs"]) == 4
    assert all(g.startswith(("native:", "restored:")) for g in summary["graphs"].values())
    if stage in ("process_init", "pin_settings", "device_bound", "weights_loaded", "kv_capacity"):
        assert all(g.startswith("native:") for g in summary["graphs"].values())
    # A failed SAVE commits nothing; a failed LOAD leaves the archive as it was.
    assert (archive.read_bytes() if archive.exists() else None) == before
    assert report_file(tmp_path / "archive").is_file()


def test_errors_that_are_not_kilns_propagate_under_fallback(tmp_path: Path, toy_adapter) -> None:
    recorder = Recorder()
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "save", "fallback"),
        plugins=[recorder.plugin, failing_in("kiln_weights_loaded", ZeroDivisionError("bug"))],
    )
    with pytest.raises(ZeroDivisionError, match="bug"):
        toy.start()
    (failure,) = recorder.args("kiln_failure")
    assert str(failure["action"]) == "stop"


def test_an_engine_capture_error_is_not_retried_natively(tmp_path: Path, toy_adapter) -> None:
    runtime = FakeRuntime()
    toy = ToyEngine(environ=kiln_environ(tmp_path, "save", "fallback"), runtime=runtime)

    def broken_capture(size: int) -> str:
        raise RuntimeError("CUDA error: out of memory")

    toy._capture = broken_capture  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="out of memory"):
        toy.start()
    assert runtime.calls.count("abort_graph") == 1


def test_a_failing_failure_hook_does_not_hide_the_original_error(
    tmp_path: Path, toy_adapter
) -> None:
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "save", "strict"),
        runtime=FakeRuntime(fail_at="bind"),
        plugins=[failing_in("kiln_failure", RuntimeError("observer bug"))],
    )
    with pytest.raises(StageFailed, match="injected failure in bind"):
        toy.start()


def test_fallback_keeps_a_graph_captured_before_recording_failed(
    tmp_path: Path, toy_adapter
) -> None:
    captured: list[int] = []
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "save", "fallback"), runtime=FakeRuntime(fail_at="end_graph")
    )
    original = toy._capture

    def counting(size: int) -> str:
        captured.append(size)
        return original(size)

    toy._capture = counting  # type: ignore[method-assign]
    toy.start()
    assert captured == [1, 2, 4, 8]  # the first graph was not captured a second time


REGION_FULL = "kiln region on device 0 is exhausted: 1048576 bytes requested"


def _capture_failing_once(toy: ToyEngine) -> None:
    original = toy._capture
    failed: list[int] = []

    def capture(size: int) -> str:
        if not failed:
            failed.append(size)
            raise RuntimeError("CUDA error: out of memory")  # what the engine sees
        return original(size)

    toy._capture = capture  # type: ignore[method-assign]


def test_region_exhaustion_seen_as_out_of_memory_falls_back_naming_kilns_cause(
    tmp_path: Path, toy_adapter
) -> None:
    # Regression: a region that ran out of room inside a driver-call wrapper reached the
    # engine as an out-of-memory error, which the driver treated as an engine bug, so the
    # fallback policy never applied; the wrapper's message was kept and never read.
    runtime = FakeRuntime()
    runtime.hook_error = REGION_FULL
    toy = ToyEngine(environ=kiln_environ(tmp_path, "save", "fallback"), runtime=runtime)
    _capture_failing_once(toy)
    summary = toy.start()
    assert summary["mode"] == "native"
    assert REGION_FULL in summary["report"]["fallback_reason"]
    assert summary["report"]["error"]["type"] == "RegionError"


def test_region_exhaustion_seen_as_out_of_memory_stops_under_strict_naming_kilns_cause(
    tmp_path: Path, toy_adapter
) -> None:
    runtime = FakeRuntime()
    runtime.hook_error = REGION_FULL
    toy = ToyEngine(environ=kiln_environ(tmp_path, "save", "strict"), runtime=runtime)
    _capture_failing_once(toy)
    with pytest.raises(StageFailed, match="exhausted") as raised:
        toy.start()
    assert type(raised.value.cause).__name__ == "RegionError"
    assert isinstance(raised.value.cause.__cause__, RuntimeError)
