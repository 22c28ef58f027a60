"""The SAVE lock, and the pass-through behaviour outside `kiln run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln import lifecycle
from kiln.archive import archive_lock
from kiln.errors import ArchiveLocked
from kiln.lifecycle import RunMode, StageFailed, WarmupPhase
from kiln.lifecycle.archive_io import archive_file
from kiln.lifecycle.environment import ENABLE, FALLBACK_REASON
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import Recorder, kiln_environ


def test_a_concurrent_save_of_the_same_archive_is_refused(tmp_path: Path, toy_adapter) -> None:
    path = archive_file(tmp_path / "archive")
    path.parent.mkdir(parents=True)
    with archive_lock(path), pytest.raises(StageFailed) as raised:
        ToyEngine(environ=kiln_environ(tmp_path)).start()
    assert isinstance(raised.value.cause, ArchiveLocked)
    assert raised.value.stage == "device_bound"


def test_a_concurrent_save_falls_back_without_touching_the_archive(
    tmp_path: Path, toy_adapter
) -> None:
    path = archive_file(tmp_path / "archive")
    path.parent.mkdir(parents=True)
    with archive_lock(path):
        summary = ToyEngine(environ=kiln_environ(tmp_path, policy="fallback")).start()
    assert summary["report"]["outcome"] == "fallback"
    assert "locked" in summary["report"]["fallback_reason"]
    assert not path.exists()


def test_the_lock_is_held_from_device_bound_until_commit(tmp_path: Path) -> None:
    driver = lifecycle.start("toy", environ=kiln_environ(tmp_path), runtime=FakeRuntime())
    driver.device_bound(0)
    path = archive_file(tmp_path / "archive")
    with pytest.raises(ArchiveLocked), archive_lock(path):
        pass
    driver.region_close()
    driver.ready()
    with archive_lock(path):
        pass


def test_outside_kiln_run_everything_passes_through(tmp_path: Path, toy_adapter) -> None:
    recorder = Recorder()
    runtime = FakeRuntime()
    summary = ToyEngine(
        {"graph_mode": "piecewise"},  # no pin conflict: nothing is pinned
        environ={"XDG_CONFIG_HOME": str(tmp_path)},
        runtime=runtime,
        plugins=[recorder.plugin],
    ).start()
    assert summary["mode"] == "off"
    assert summary["report"] is None
    assert summary["warmups"] == ["profile_run", "compile"]
    assert all(graph.startswith("native:") for graph in summary["graphs"].values())
    assert recorder.calls == [] and runtime.calls == []
    assert list(tmp_path.iterdir()) == []


def test_a_launcher_fallback_starts_natively_and_reports_why(tmp_path: Path, toy_adapter) -> None:
    environ = {
        ENABLE: "0",
        FALLBACK_REASON: "interposer library missing",
        "KILN_ARCHIVE": str(tmp_path / "archive"),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    runtime = FakeRuntime()
    summary = ToyEngine(environ=environ, runtime=runtime).start()
    report = summary["report"]
    assert summary["mode"] == RunMode.NATIVE
    assert report["outcome"] == "fallback"
    assert report["fallback_reason"] == "launcher: interposer library missing"
    assert runtime.calls == []
    assert (tmp_path / "archive" / "startup-report.json").is_file()


def test_suspended_is_a_no_op_when_kiln_is_inactive(tmp_path: Path) -> None:
    driver = lifecycle.start("toy", environ={}, runtime=FakeRuntime())
    with driver.suspended():
        pass
    assert driver.warmup(WarmupPhase("x"), lambda: 7) == 7
