"""The job manifest ties the rank archives of one SAVE together. LOAD checks, before anything
allocates, this start's layout and topology against SAVE's, and with several ranks that every
rank's archive exists and comes from the same SAVE; each deviation is a named error, and the
policy applies."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from kiln.errors import (
    ArchiveCorrupt,
    JobError,
    LayoutMismatch,
    MixedSaves,
    RankArchiveMissing,
    TopologyMismatch,
)
from kiln.lifecycle import StageFailed, archive_io, job
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import close_current_driver, kiln_environ, save_other_ranks

TP2 = {"tensor_parallel_size": 2, "pipeline_parallel_size": 1, "data_parallel_size": 1}
H100 = {"gpu_models": "NVIDIA H100 80GB HBM3;NVIDIA H100 80GB HBM3", "devices_per_node": 2}


def _topology(facts: dict[str, Any]) -> dict[str, Any]:
    return {"topology_reader": lambda: dict(facts)}


def _save(tmp_path: Path, world_size: int = 2, layout=TP2, topology=H100, **extra: str) -> None:
    ToyEngine(
        world_size=world_size,
        environ=kiln_environ(tmp_path, "save", **extra),
        layout=layout,
        **_topology(topology),
    ).start()
    close_current_driver()


def _save_others(tmp_path: Path, world_size: int = 2, layout=TP2, topology=H100) -> None:
    save_other_ranks(tmp_path, world_size, layout=layout, **_topology(topology))


def _load(
    tmp_path: Path,
    world_size: int = 2,
    policy: str = "strict",
    layout=TP2,
    topology=H100,
    runtime: FakeRuntime | None = None,
) -> dict:
    try:
        return ToyEngine(
            world_size=world_size,
            environ=kiln_environ(tmp_path, "load", policy),
            layout=layout,
            runtime=runtime or FakeRuntime(),
            **_topology(topology),
        ).start()
    finally:
        close_current_driver()


def _refused(tmp_path: Path, error: type[Exception], match: str, **load: Any) -> StageFailed:
    """LOAD is refused at device_bound with ``error``, before the runtime bound anything."""
    runtime = FakeRuntime()
    with pytest.raises(StageFailed, match=match) as raised:
        _load(tmp_path, runtime=runtime, **load)
    assert raised.value.stage == "device_bound"
    assert isinstance(raised.value.cause, error)
    assert "bind" not in runtime.calls  # nothing allocated
    return raised.value


def test_every_rank_of_one_save_loads(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    assert _load(tmp_path)["mode"] == "load"


def test_every_rank_archive_holds_the_job_manifest(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path, KILN_JOB="launch-7")
    _save_others(tmp_path)
    manifest = job.read(tmp_path / "archive", 0)
    assert manifest == job.JobManifest("launch-7", 0, 2, TP2, H100)
    assert job.read(tmp_path / "archive", 1).rank == 1


def test_a_missing_rank_is_refused_by_name_before_anything_allocates(
    tmp_path: Path, toy_adapter
) -> None:
    _save(tmp_path)
    _refused(tmp_path, RankArchiveMissing, "rank 1 has no archive")


def test_ranks_from_different_saves_are_refused_by_name(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    _save(tmp_path, KILN_JOB="a-later-launch")  # rank 0 saved again, alone
    _refused(tmp_path, MixedSaves, "rank 1's archive comes from another SAVE")


def test_a_multi_rank_archive_without_a_save_session_is_refused(
    tmp_path: Path, toy_adapter
) -> None:
    _save(tmp_path, KILN_JOB="")
    _save_others(tmp_path)
    _refused(tmp_path, JobError, "records no SAVE session")


def test_a_world_size_other_than_saves_is_a_layout_mismatch(tmp_path: Path, toy_adapter) -> None:
    # A TP=2 SAVE loaded by one rank alone: rank 0's archive exists, the layout does not fit.
    _save(tmp_path)
    _save_others(tmp_path)
    err = _refused(tmp_path, LayoutMismatch, "'world_size': archive has 2", world_size=1)
    assert "this start has 1" in str(err)


def test_the_same_world_size_split_otherwise_is_a_layout_mismatch(
    tmp_path: Path, toy_adapter
) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    pp2 = {**TP2, "tensor_parallel_size": 1, "pipeline_parallel_size": 2}
    _refused(tmp_path, LayoutMismatch, "'pipeline_parallel_size': archive has 1", layout=pp2)


def test_other_gpus_are_a_topology_mismatch(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    h200 = {**H100, "gpu_models": "NVIDIA H200;NVIDIA H200"}
    _refused(tmp_path, TopologyMismatch, "'gpu_models'", topology=h200)


def test_fewer_devices_per_node_are_a_topology_mismatch(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path, world_size=1, layout={})
    _refused(
        tmp_path,
        TopologyMismatch,
        "'devices_per_node': archive has 2, this node has 1",
        world_size=1,
        layout={},
        topology={**H100, "devices_per_node": 1},
    )


def test_an_archive_in_another_ranks_place_is_refused(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    archive = tmp_path / "archive"
    shutil.copy(archive_io.archive_file(archive, 0), archive_io.archive_file(archive, 1))
    _refused(tmp_path, ArchiveCorrupt, "sits in rank 1's place but was saved by rank 0")


def test_under_fallback_a_missing_rank_starts_natively(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    summary = _load(tmp_path, policy="fallback")
    assert summary["mode"] == "native"
    assert "rank 1 has no archive" in summary["report"]["fallback_reason"]


def test_under_fallback_a_layout_mismatch_starts_natively(tmp_path: Path, toy_adapter) -> None:
    _save(tmp_path)
    _save_others(tmp_path)
    summary = _load(tmp_path, policy="fallback", layout={**TP2, "expert_parallel_size": 2})
    assert summary["mode"] == "native"
    assert "'expert_parallel_size'" in summary["report"]["fallback_reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"world_size": 0}, "world_size"),
        ({"rank": 2}, "rank 2 of 2"),
        ({"rank": -1}, "rank"),
        ({"session": ""}, "session"),
        ({"session": "x" * 65}, "session"),
        ({"layout": {"tp": True}}, "layout"),
        ({"layout": {"tp": 1 << 40}}, "layout"),
        ({"layout": {"Not A Key": 1}}, "layout"),
        ({"topology": {"gpu_models": ["a"]}}, "topology"),
        ({"topology": {"gpu_models": "x" * 5000}}, "topology"),
        ({"version": 2}, "version 2"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_hostile_job_manifest_is_refused_by_field(change: dict, message: str) -> None:
    doc = job.JobManifest("s", 1, 2, {"tp": 2}, {"devices_per_node": 2}).as_json()
    doc.update(change)
    with pytest.raises(ArchiveCorrupt, match=message):
        job.JobManifest.from_json(doc, "rank1/graphs.kiln")
