"""All ranks restore, or none (kiln.lifecycle.agreement): one rank capturing natively while
the others restore deadlocks the engine's first collective.

Each rank runs in its own forked process with its own lifecycle driver, as engine workers
do. torch is not installed in the CI venv, so the ranks' CPU group is an honest stand-in for
gloo's all-gather: a shared-memory array of one block per rank and a barrier (with a
timeout) before and after the blocks are read. tests/lifecycle/test_agreement_gloo.py runs
the same agreement over a real gloo group where torch is installed.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kiln.errors import AgreementFailed, PeerRankFailed
from kiln.lifecycle import StageFailed, agreement
from kiln.lifecycle.agreement import BLOCK, Verdict
from kiln_test_adapter.engine import ToyEngine
from kiln_test_adapter.fake_runtime import FakeRuntime

from tests.lifecycle.helpers import close_current_driver, kiln_environ, save_other_ranks

_FORK = multiprocessing.get_context("fork")


class StandInGroup:
    """An all-gather of fixed-size blocks between forked processes (the stand-in for the
    engine's gloo CPU group). ``calls`` counts the gathers each rank made."""

    def __init__(self, world_size: int, timeout_s: float = 20.0) -> None:
        self.world_size = world_size
        self.timeout_s = timeout_s
        self._blocks = _FORK.Array("B", world_size * BLOCK, lock=False)
        self._barrier = _FORK.Barrier(world_size)

    def gather_for(self, position: int):
        def gather(block: bytes) -> Sequence[bytes]:
            start = position * BLOCK
            self._blocks[start : start + BLOCK] = block
            self._barrier.wait(self.timeout_s)  # every block written
            blocks = [
                bytes(self._blocks[i * BLOCK : (i + 1) * BLOCK]) for i in range(self.world_size)
            ]
            self._barrier.wait(self.timeout_s)  # every block read before the next gather
            return blocks

        return gather


def _rank_main(tmp_path: Path, rank: int, world: int, policy: str, group, fail_at, queue) -> None:
    try:
        engine = ToyEngine(
            world_size=world,
            rank=rank,
            environ=kiln_environ(tmp_path, "load", policy),
            runtime=FakeRuntime(fail_at=fail_at),
            gather=group.gather_for(rank),
        )
        summary = engine.start()
        report = summary["report"]
        queue.put((rank, "ok", summary["mode"], report["fallback_reason"], summary["graphs"]))
    except StageFailed as err:
        queue.put((rank, "stopped", type(err.cause).__name__, str(err), None))
    except BaseException:  # noqa: BLE001 (the parent reports any crash with its traceback)
        queue.put((rank, "crashed", traceback.format_exc(), None, None))


def _run_ranks(
    tmp_path: Path, world: int, policy: str, fail_at: dict[int, str]
) -> dict[int, tuple[Any, ...]]:
    """Start `world` ranks of the toy engine in LOAD, each in its own process."""
    group = StandInGroup(world)
    queue = _FORK.Queue()
    procs = [
        _FORK.Process(
            target=_rank_main,
            args=(tmp_path, rank, world, policy, group, fail_at.get(rank, ""), queue),
        )
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    results = {}
    for _ in procs:
        rank, *rest = queue.get(timeout=60)
        results[rank] = tuple(rest)
    for proc in procs:
        proc.join(timeout=30)
    for rank, result in results.items():
        assert result[0] != "crashed", f"rank {rank}: {result[1]}"
    return results


def _save_all(tmp_path: Path, world: int) -> None:
    ToyEngine(world_size=world, environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    save_other_ranks(tmp_path, world)


def test_every_rank_restores_when_every_rank_can(tmp_path: Path, toy_adapter) -> None:
    _save_all(tmp_path, 3)
    results = _run_ranks(tmp_path, 3, "strict", {})
    for status, mode, _reason, graphs in results.values():
        assert (status, mode) == ("ok", "load")
        assert all(str(graph).startswith("restored:") for graph in graphs.values())


def test_a_rank_refused_at_device_bound_makes_every_rank_start_natively(
    tmp_path: Path, toy_adapter
) -> None:
    # Rank 2 falls back where no CPU group exists yet; the others learn it at the first
    # agreement and capture natively too, instead of restoring while rank 2 captures.
    _save_all(tmp_path, 3)
    results = _run_ranks(tmp_path, 3, "fallback", {2: "bind"})
    for rank, (status, mode, reason, graphs) in results.items():
        assert (status, mode) == ("ok", "native"), rank
        assert all(str(graph).startswith("native:") for graph in graphs.values()), rank
        if rank != 2:
            assert reason.startswith("communicators_ready: rank 2 cannot restore")
            assert "injected failure in bind" in reason


def test_a_rank_failing_its_first_restore_makes_every_rank_capture_natively(
    tmp_path: Path, toy_adapter
) -> None:
    _save_all(tmp_path, 2)
    results = _run_ranks(tmp_path, 2, "fallback", {1: "restore"})
    for rank, (status, mode, reason, graphs) in results.items():
        assert (status, mode) == ("ok", "native"), rank
        assert all(str(graph).startswith("native:") for graph in graphs.values()), rank
    assert results[0][2].startswith("capture_graph: rank 1 cannot restore")


def test_under_strict_every_rank_stops_naming_the_rank_that_failed(
    tmp_path: Path, toy_adapter
) -> None:
    _save_all(tmp_path, 2)
    results = _run_ranks(tmp_path, 2, "strict", {1: "restore"})
    assert results[1][:2] == ("stopped", "DriverError")
    assert results[0][:2] == ("stopped", "PeerRankFailed")
    assert "rank 1 cannot restore (capture_graph: injected failure in restore)" in results[0][2]


def _raising_gather(block: bytes) -> Sequence[bytes]:
    raise RuntimeError("[gloo] Timed out waiting 300000ms for recv operation to complete")


def _load_rank0(tmp_path: Path, policy: str, world: int, gather) -> dict:
    try:
        return ToyEngine(
            world_size=world, environ=kiln_environ(tmp_path, "load", policy), gather=gather
        ).start()
    finally:
        close_current_driver()


def test_a_failing_collective_is_a_named_error_under_strict(tmp_path: Path, toy_adapter) -> None:
    _save_all(tmp_path, 2)
    with pytest.raises(StageFailed, match="could not agree on restoring") as raised:
        _load_rank0(tmp_path, "strict", 2, _raising_gather)
    assert isinstance(raised.value.cause, AgreementFailed)
    assert raised.value.stage == "communicators_ready"
    assert "Timed out" in str(raised.value)


def test_a_failing_collective_falls_back_under_fallback(tmp_path: Path, toy_adapter) -> None:
    _save_all(tmp_path, 2)
    summary = _load_rank0(tmp_path, "fallback", 2, _raising_gather)
    assert summary["mode"] == "native"
    assert "could not agree on restoring" in summary["report"]["fallback_reason"]


def test_one_rank_never_reaches_the_collective(tmp_path: Path, toy_adapter) -> None:
    ToyEngine(world_size=1, environ=kiln_environ(tmp_path, "save")).start()
    close_current_driver()
    engine = ToyEngine(world_size=1, environ=kiln_environ(tmp_path, "load"), gather=_raising_gather)
    try:
        summary = engine.start()
    finally:
        close_current_driver()
    assert summary["mode"] == "load"


def test_agree_with_one_rank_does_not_call_the_gather() -> None:
    own = Verdict(0, True)
    assert agreement.agree(own, 1, _raising_gather) == [own]


def test_the_lowest_refusing_rank_is_named() -> None:
    verdicts = [
        Verdict(0, True),
        Verdict(3, False, "kv_capacity", "KV capacity differs"),
        Verdict(1, False, "device_bound", "rank 1 has no archive"),
    ]
    refusal = agreement.first_refusal(verdicts)
    assert isinstance(refusal, PeerRankFailed)
    assert refusal.rank == 1
    assert str(refusal) == (
        "rank 1 cannot restore (device_bound: rank 1 has no archive); restoring is all ranks "
        "or none"
    )


def test_a_long_cause_still_fits_one_block() -> None:
    own = Verdict(0, False, "device_bound", "\u00e9" * 5000)
    block = own.encode()
    assert len(block) == BLOCK
    cause = agreement.decode(block, 0).cause
    assert cause and own.cause.startswith(cause)


@pytest.mark.parametrize(
    "block",
    [
        b"short",
        bytes(BLOCK),
        (5000).to_bytes(4, "little") + bytes(BLOCK - 4),
        (3).to_bytes(4, "little") + b"{x}" + bytes(BLOCK - 7),
        (2).to_bytes(4, "little") + b"[]" + bytes(BLOCK - 6),
        Verdict(0, True).encode().replace(b'"rank": 0', b'"rank":-1'),
        Verdict(0, True).encode().replace(b"true", b'"y" '),
    ],
)
def test_a_block_that_is_no_verdict_is_a_named_agreement_failure(block: bytes) -> None:
    own = Verdict(0, True)

    def gather(mine: bytes) -> list[bytes]:
        return [mine, block]

    with pytest.raises(AgreementFailed, match="block 1"):
        agreement.agree(own, 2, gather)


def test_an_answer_without_this_ranks_verdict_is_refused() -> None:
    def gather(mine: bytes) -> list[bytes]:
        return [Verdict(5, True).encode(), Verdict(6, True).encode()]

    with pytest.raises(AgreementFailed, match="lacks this rank's verdict"):
        agreement.agree(Verdict(0, True), 2, gather)


def test_more_verdicts_than_ranks_are_refused() -> None:
    def gather(mine: bytes) -> list[bytes]:
        return [mine, Verdict(1, True).encode(), Verdict(2, True).encode()]

    with pytest.raises(AgreementFailed, match="3 verdicts for 2 ranks"):
        agreement.agree(Verdict(0, True), 2, gather)
