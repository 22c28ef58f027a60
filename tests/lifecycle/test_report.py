"""The startup report: timings per stage, graph counts, bytes, fallback reason; JSON and log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from kiln.lifecycle.archive_io import report_file
from kiln.lifecycle.report import StartupReport
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import close_current_driver, kiln_environ

PHASES = ["process_start", "device_bound", "weights", "kv", "capture", "ready"]


def test_a_save_writes_the_report_next_to_the_archive(tmp_path: Path, toy_adapter) -> None:
    launched = time.time() - 2.5  # `kiln run` started 2.5 s before this process's driver
    ToyEngine(environ=kiln_environ(tmp_path, KILN_LAUNCH_TIME=repr(launched))).start()
    report = json.loads((tmp_path / "archive" / "startup-report.json").read_text())
    assert report["outcome"] == "saved"
    assert (report["graphs_captured"], report["graphs_restored"]) == (4, 0)
    assert report["bytes_mapped"] == 2 << 20
    assert report["kv_capacity"] == {"num_blocks": 1000}
    assert list(report["phases_s"]) == PHASES
    assert 2.4 < report["phases_s"]["process_start"] < 10
    assert report["total_s"] >= report["phases_s"]["process_start"]
    stage_names = [stage["name"] for stage in report["stages"]]
    assert stage_names[:3] == ["process_init", "pin_settings", "device_bound"]
    assert "warmup:profile_run" in stage_names and stage_names[-1] == "ready"
    assert report["fallback_reason"] is None and report["error"] is None


def test_a_load_reports_restored_graphs_and_a_restore_phase(tmp_path: Path, toy_adapter) -> None:
    ToyEngine(environ=kiln_environ(tmp_path)).start()
    close_current_driver()
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load")).start()
    report = summary["report"]
    assert (report["outcome"], report["graphs_restored"], report["graphs_captured"]) == (
        "restored",
        4,
        0,
    )
    assert "restore" in report["phases_s"] and "capture" not in report["phases_s"]


def test_the_report_is_logged_as_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, toy_adapter
) -> None:
    caplog.set_level(logging.INFO, logger="kiln")
    ToyEngine(
        environ=kiln_environ(tmp_path, policy="fallback"), runtime=FakeRuntime(fail_at="bind")
    ).start()
    (line,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("kiln: fallback")
    ]
    assert "4 graphs captured" in line
    assert "fell back: device_bound: injected failure in bind" in line


def test_each_rank_reports_in_its_own_directory(tmp_path: Path, toy_adapter) -> None:
    ToyEngine(environ=kiln_environ(tmp_path), rank=1, world_size=2).start()
    path = report_file(tmp_path / "archive", rank=1)
    assert path == tmp_path / "archive" / "rank1" / "startup-report.json"
    assert json.loads(path.read_text())["rank"] == 1
    assert (tmp_path / "archive" / "rank1" / "graphs.kiln").is_file()


def test_the_log_line_names_a_strict_failure() -> None:
    report = StartupReport(
        kiln_version="0",
        engine="toy",
        requested_mode="load",
        mode="load",
        policy="strict",
        load_builds="background",
        outcome="failed",
        archive=None,
        rank=0,
        world_size=1,
        pid=1,
        graphs_captured=0,
        graphs_restored=0,
        graphs_own_executable_at_ready=None,
        graphs_on_template_at_ready=None,
        bytes_mapped=0,
        kv_capacity=None,
        fallback_reason=None,
        error={"stage": "device_bound", "type": "X", "message": "boom"},
        phases_s={"device_bound": 0.5},
        total_s=None,
    )
    assert report.log_line().endswith("failed at device_bound: boom")
