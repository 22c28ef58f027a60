"""A LOAD with several ranks restores only from one SAVE's archives: every rank's archive
must exist and record the same `kiln run` launch, checked before anything allocates."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.lifecycle import StageFailed
from kiln_test_adapter.engine import ToyEngine

from tests.lifecycle.helpers import close_current_driver, kiln_environ, save_other_ranks


def _save_rank0(tmp_path: Path, **extra: str) -> None:
    ToyEngine(world_size=2, environ=kiln_environ(tmp_path, "save", **extra)).start()
    close_current_driver()


def _load_rank0(tmp_path: Path, policy: str = "strict") -> dict:
    try:
        return ToyEngine(world_size=2, environ=kiln_environ(tmp_path, "load", policy)).start()
    finally:
        close_current_driver()


def test_every_rank_of_one_save_loads(tmp_path: Path, toy_adapter) -> None:
    _save_rank0(tmp_path)
    save_other_ranks(tmp_path, 2)
    assert _load_rank0(tmp_path)["mode"] == "load"


def test_a_missing_rank_is_refused_by_name_before_anything_allocates(
    tmp_path: Path, toy_adapter
) -> None:
    _save_rank0(tmp_path)
    with pytest.raises(StageFailed, match="rank 1 has no archive") as raised:
        _load_rank0(tmp_path)
    assert raised.value.stage == "device_bound"


def test_ranks_from_different_saves_are_refused_by_name(tmp_path: Path, toy_adapter) -> None:
    _save_rank0(tmp_path)
    save_other_ranks(tmp_path, 2)
    _save_rank0(tmp_path, KILN_JOB="a-later-launch")  # rank 0 saved again, alone
    with pytest.raises(StageFailed, match="rank 1's archive comes from another SAVE"):
        _load_rank0(tmp_path)


def test_a_multi_rank_archive_without_a_launch_id_is_refused(tmp_path: Path, toy_adapter) -> None:
    _save_rank0(tmp_path, KILN_JOB="")
    save_other_ranks(tmp_path, 2)
    with pytest.raises(StageFailed, match="records no SAVE launch"):
        _load_rank0(tmp_path)


def test_under_fallback_a_missing_rank_starts_natively(tmp_path: Path, toy_adapter) -> None:
    _save_rank0(tmp_path)
    summary = _load_rank0(tmp_path, "fallback")
    assert summary["mode"] == "native"
    assert "rank 1 has no archive" in summary["report"]["fallback_reason"]
