"""LOAD of an archive whose lifecycle record was rewritten: under fallback the engine starts
natively and says why, under strict it stops naming the cause; never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kiln.archive import ArchiveReader, write_archive
from kiln.lifecycle import StageFailed
from kiln.lifecycle.archive_io import archive_file
from kiln_test_adapter.engine import ToyEngine

from tests.lifecycle.helpers import close_current_driver, kiln_environ


def saved_with_record(tmp_path: Path, **changes: Any) -> None:
    ToyEngine(environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    path = archive_file(tmp_path / "archive")
    with ArchiveReader(path) as reader:
        sections = {name: bytes(reader.section(name)) for name in reader.names}
    record = json.loads(sections["lifecycle"])
    record.update(changes)
    # ASCII escapes, as a hostile writer may use them (a lone surrogate included)
    sections["lifecycle"] = json.dumps(record).encode()
    write_archive(path, sections)


HOSTILE_KV = {
    "negative": {"num_blocks": -1},
    "beyond 64 bits": {"num_blocks": 10**30},
    "a boolean": {"num_blocks": True},
    "a string": {"num_blocks": "1000"},
    "empty": {},
    "a list": [1000],
}


@pytest.mark.parametrize("kv", HOSTILE_KV.values(), ids=HOSTILE_KV.keys())
def test_an_archived_kv_capacity_out_of_range_falls_back_under_fallback(
    tmp_path: Path, kv: object, toy_adapter
) -> None:
    saved_with_record(tmp_path, kv_capacity=kv)
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load", "fallback")).start()
    assert summary["mode"] == "native"
    assert summary["kv"] == {"num_blocks": 1000}  # measured natively
    reason = summary["report"]["fallback_reason"]
    assert reason.startswith("device_bound: ") and "$.kv_capacity" in reason


@pytest.mark.parametrize("kv", HOSTILE_KV.values(), ids=HOSTILE_KV.keys())
def test_an_archived_kv_capacity_out_of_range_stops_under_strict(
    tmp_path: Path, kv: object, toy_adapter
) -> None:
    saved_with_record(tmp_path, kv_capacity=kv)
    with pytest.raises(StageFailed, match=r"section 'lifecycle'.*\$\.kv_capacity"):
        ToyEngine(environ=kiln_environ(tmp_path, "load", "strict")).start()


def test_a_record_of_the_wrong_shape_falls_back(tmp_path: Path, toy_adapter) -> None:
    saved_with_record(tmp_path, warmup=["run"], graphs="all")
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load", "fallback")).start()
    assert summary["mode"] == "native"
    assert "section 'lifecycle'" in summary["report"]["fallback_reason"]


def test_a_lone_surrogate_in_the_record_falls_back_instead_of_unicode_error(
    tmp_path: Path, toy_adapter
) -> None:
    saved_with_record(tmp_path, kv_capacity="\udc80")
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load", "fallback")).start()
    assert summary["mode"] == "native"
    assert "lone surrogate" in summary["report"]["fallback_reason"]


def test_an_archived_kv_capacity_with_other_fields_falls_back_before_the_engine_reads_it(
    tmp_path: Path, toy_adapter
) -> None:
    saved_with_record(tmp_path, kv_capacity={"kv_cache_bytes": 1 << 30})
    summary = ToyEngine(environ=kiln_environ(tmp_path, "load", "fallback")).start()
    assert summary["mode"] == "native" and summary["kv"] == {"num_blocks": 1000}
    assert summary["report"]["fallback_reason"].startswith("kv_capacity: ")
    assert "the engine reads ['num_blocks']" in summary["report"]["fallback_reason"]
