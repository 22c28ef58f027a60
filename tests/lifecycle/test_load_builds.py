"""When LOAD's own executables must exist (``load_builds``): in the background (default) or
before the engine is ready; the report says how many restored graphs had theirs at ready."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kiln.config import ConfigError, LoadBuilds, load_config
from kiln.hooks import hookimpl
from kiln.lifecycle import StageFailed
from kiln.lifecycle.errors import BuildsFailed
from kiln.lifecycle.report import StartupReport
from kiln.lifecycle.types import RestoreProgress
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import Recorder, close_current_driver, kiln_environ

BEFORE_READY = {"KILN_LOAD_BUILDS": "before-ready"}


class RuntimeAtReady:
    """Remembers which runtime calls had happened when ``kiln_ready`` fired."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.calls: list[str] | None = None

    @hookimpl
    def kiln_ready(self, ctx: object, report: StartupReport) -> None:
        self.calls = list(self.runtime.calls)


def saved(tmp_path: Path) -> None:
    ToyEngine(environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()


def load(tmp_path: Path, runtime: FakeRuntime, policy: str = "strict", **extra: str) -> ToyEngine:
    saved(tmp_path)
    environ = kiln_environ(tmp_path, "load", policy, **extra)
    return ToyEngine(environ=environ, runtime=runtime, plugins=[RuntimeAtReady(runtime)])


def test_by_default_ready_does_not_wait_and_reports_graphs_still_on_templates(
    tmp_path: Path, toy_adapter
) -> None:
    runtime = FakeRuntime(built_before_ready=1)
    report = load(tmp_path, runtime).start()["report"]
    assert "finish_restores" not in runtime.calls
    assert report["load_builds"] == "background"
    assert (report["graphs_own_executable_at_ready"], report["graphs_on_template_at_ready"]) == (
        1,
        3,
    )
    assert "builds_finished" not in [stage["name"] for stage in report["stages"]]
    assert "builds" not in report["phases_s"]


def test_before_ready_waits_for_every_own_executable_before_the_engine_is_ready(
    tmp_path: Path, toy_adapter
) -> None:
    runtime = FakeRuntime(built_before_ready=1)
    toy = load(tmp_path, runtime, **BEFORE_READY)
    at_ready = toy.driver_options["plugins"][0]
    report = toy.start()["report"]
    assert at_ready.calls is not None and "finish_restores" in at_ready.calls
    assert at_ready.calls.index("close_region") < at_ready.calls.index("finish_restores")
    assert report["load_builds"] == "before-ready"
    assert (report["graphs_own_executable_at_ready"], report["graphs_on_template_at_ready"]) == (
        4,
        0,
    )
    names = [stage["name"] for stage in report["stages"]]
    assert names[-2:] == ["builds_finished", "ready"]
    phases = list(report["phases_s"])
    assert phases[-3:] == ["restore", "builds", "ready"] and report["phases_s"]["builds"] >= 0


def test_the_setting_changes_nothing_at_save(tmp_path: Path, toy_adapter) -> None:
    runtime = FakeRuntime()
    report = ToyEngine(
        environ=kiln_environ(tmp_path, "save", **BEFORE_READY), runtime=runtime
    ).start()["report"]
    assert report["outcome"] == "saved" and "finish_restores" not in runtime.calls
    assert report["graphs_own_executable_at_ready"] is None
    assert report["graphs_on_template_at_ready"] is None
    assert "builds" not in report["phases_s"]


def test_a_failed_background_build_stops_a_strict_start_naming_the_cause(
    tmp_path: Path, toy_adapter
) -> None:
    saved(tmp_path)
    recorder = Recorder()
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "load", "strict", **BEFORE_READY),
        runtime=FakeRuntime(fail_at="finish_restores"),
        plugins=[recorder.plugin],
    )
    with pytest.raises(StageFailed) as raised:
        toy.start()
    assert raised.value.stage == "builds_finished"
    assert isinstance(raised.value.cause, BuildsFailed)
    assert "injected failure in finish_restores" in str(raised.value)
    (failure,) = recorder.args("kiln_failure")
    assert (failure["stage"], str(failure["action"])) == ("builds_finished", "stop")
    assert "kiln_ready" not in recorder.names
    report = json.loads((tmp_path / "archive" / "startup-report.json").read_text())
    assert report["outcome"] == "failed" and report["error"]["stage"] == "builds_finished"
    assert report["error"]["type"] == "BuildsFailed"


def test_a_failed_background_build_under_fallback_keeps_the_restored_graphs_and_says_so(
    tmp_path: Path, toy_adapter
) -> None:
    runtime = FakeRuntime(fail_at="finish_restores", built_before_ready=2)
    summary = load(tmp_path, runtime, "fallback", **BEFORE_READY).start()
    report = summary["report"]
    assert summary["mode"] == "native" and report["outcome"] == "fallback"
    reason = report["fallback_reason"]
    assert reason.startswith("builds_finished: ")
    assert "injected failure in finish_restores" in reason
    assert "cannot capture them natively" in reason
    # Nothing is captured again: the engine keeps the graphs it was handed.
    assert all(graph.startswith("restored:") for graph in summary["graphs"].values())
    assert (report["graphs_own_executable_at_ready"], report["graphs_on_template_at_ready"]) == (
        2,
        2,
    )


def test_an_invalid_setting_is_refused_naming_the_variable_and_the_value(
    tmp_path: Path, toy_adapter
) -> None:
    environ = kiln_environ(tmp_path, "load", KILN_LOAD_BUILDS="eventually")
    with pytest.raises(ConfigError) as raised:
        ToyEngine(environ=environ).start()
    assert raised.value.key == "load_builds"
    message = str(raised.value)
    assert "environment KILN_LOAD_BUILDS" in message and "'eventually'" in message
    assert "expected one of background, before-ready" in message


def test_the_setting_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert load_config(environ=environ, cwd=tmp_path).load_builds is LoadBuilds.BACKGROUND
    (tmp_path / "kiln.toml").write_text('load_builds = "before-ready"\n')
    config = load_config(environ=environ, cwd=tmp_path)
    assert config.load_builds is LoadBuilds.BEFORE_READY
    assert config.to_environment()["KILN_LOAD_BUILDS"] == "before-ready"
    again = load_config(environ={**environ, "KILN_LOAD_BUILDS": "background"}, cwd=tmp_path)
    assert again.load_builds is LoadBuilds.BACKGROUND
    assert again.sources["load_builds"] == "environment KILN_LOAD_BUILDS"


def test_the_log_line_says_how_many_graphs_had_their_own_executable(
    tmp_path: Path, toy_adapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="kiln")
    load(tmp_path, FakeRuntime(built_before_ready=3)).start()
    (line,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("kiln: restored")
    ]
    assert "4 graphs restored (3 with their own executable at ready, 1 on templates)" in line


def test_restore_progress_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        RestoreProgress(own_executable=-1)
