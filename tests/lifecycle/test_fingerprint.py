"""Fingerprints: composed from every contributor, checked before weights load, auto re-saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kiln.archive import ArchiveReader, load_json
from kiln.errors import FingerprintMismatch
from kiln.lifecycle import StageFailed
from kiln.lifecycle.archive_io import archive_file
from kiln.lifecycle.errors import FingerprintConflict, InvalidHookResult
from kiln.lifecycle.fingerprint import check_subset, digest, merge
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import (
    Recorder,
    close_current_driver,
    kiln_environ,
    returning,
    save_other_ranks,
)


def save(tmp_path: Path, **environ: str) -> dict:
    summary = ToyEngine(environ=kiln_environ(tmp_path, "save", **environ)).start()
    close_current_driver()
    return summary


def archived_fingerprint(tmp_path: Path) -> dict:
    with ArchiveReader(archive_file(tmp_path / "archive")) as reader:
        return load_json(reader.section("fingerprint"), "fingerprint")


def test_the_archive_records_core_runtime_adapter_and_launch_fields(
    tmp_path: Path, toy_adapter
) -> None:
    launch = {"launch.command": "toy --model m", "toy.version": "1.4.0"}
    save(tmp_path, KILN_LAUNCH_FINGERPRINT=json.dumps(launch))
    fields = archived_fingerprint(tmp_path)
    assert fields["kiln_version"] and fields["format_version"] == 1
    assert fields["gpu_name"] == "Toy GPU"  # the runtime's
    assert fields["toy.version"] == "1.4.0"  # the adapter's
    assert fields["launch.command"] == "toy --model m"  # the launcher's
    assert (fields["kiln.rank"], fields["kiln.world_size"]) == (0, 1)


def test_load_on_another_gpu_stops_before_weights_naming_the_field(
    tmp_path: Path, toy_adapter
) -> None:
    save(tmp_path)
    recorder = Recorder()
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "load"),
        runtime=FakeRuntime(gpu="Other GPU"),
        plugins=[recorder.plugin],
    )
    with pytest.raises(StageFailed) as raised:
        toy.start()
    cause = raised.value.cause
    assert isinstance(cause, FingerprintMismatch)
    assert (cause.field, cause.expected, cause.actual) == ("gpu_name", "Toy GPU", "Other GPU")
    assert "kiln_weights_loaded" not in recorder.names


def test_auto_mode_saves_anew_when_the_full_fingerprint_differs(
    tmp_path: Path, toy_adapter
) -> None:
    save(tmp_path)
    summary = ToyEngine(
        environ=kiln_environ(tmp_path, "load", KILN_AUTO="1"), runtime=FakeRuntime(gpu="Other GPU")
    ).start()
    report = summary["report"]
    assert (report["requested_mode"], report["mode"], report["outcome"]) == (
        "load",
        "save",
        "saved",
    )
    assert any("'gpu_name'" in note for note in report["notes"])
    assert archived_fingerprint(tmp_path)["gpu_name"] == "Other GPU"


def test_auto_mode_saves_anew_over_a_corrupt_archive(tmp_path: Path, toy_adapter) -> None:
    save(tmp_path)
    path = archive_file(tmp_path / "archive")
    path.write_bytes(path.read_bytes()[:-10])
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load", KILN_AUTO="1")).start()
    assert summary["report"]["outcome"] == "saved"


def test_conflicting_contributions_are_an_error(tmp_path: Path, toy_adapter) -> None:
    plugin = returning("kiln_fingerprint", {"toy.version": "9.9"})
    toy = ToyEngine(environ=kiln_environ(tmp_path, policy="fallback"), plugins=[plugin])
    with pytest.raises(FingerprintConflict, match="'toy.version'"):
        toy.start()


def test_fields_must_be_json_scalars() -> None:
    with pytest.raises(InvalidHookResult, match="'model'.*list"):
        merge([{"model": ["a"]}], "kiln_fingerprint")


def test_digest_ignores_field_order_but_not_values() -> None:
    assert digest({"a": 1, "b": "x"}) == digest({"b": "x", "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_the_launcher_check_ignores_fields_only_the_engine_knows() -> None:
    archived = {"launch.command": "x", "gpu_name": "H100"}
    check_subset(archived, {"launch.command": "x"})
    with pytest.raises(FingerprintMismatch, match="'launch.command'"):
        check_subset(archived, {"launch.command": "y"})
    with pytest.raises(FingerprintMismatch, match="'toy.version'"):
        check_subset(archived, {"launch.command": "x", "toy.version": "1"})


def test_auto_mode_does_not_turn_one_rank_of_several_into_save(tmp_path: Path, toy_adapter) -> None:
    ToyEngine(world_size=2, environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    save_other_ranks(tmp_path, 2)
    toy = ToyEngine(
        world_size=2,
        environ=kiln_environ(tmp_path, "load", KILN_AUTO="1"),
        runtime=FakeRuntime(gpu="Other GPU"),
    )
    with pytest.raises(StageFailed, match="'gpu_name'"):
        toy.start()
