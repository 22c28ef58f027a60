"""All ranks restore, or none: the ranks of one engine agree before they act on a decision.

A rank that captures natively while the others restore runs warmup forwards and captures
whose collectives the restoring ranks never join: the engine deadlocks. So every rank sends
its local verdict (it can go on restoring, or why not) over the engine's CPU process group,
and each rank acts on the combined one: restore only if every rank can.

kiln has no communicator of its own. The adapter gives a :data:`Gather`: it sends this
rank's block of :data:`BLOCK` bytes and returns every rank's block, in group order (the
engine's gloo CPU group does this with one all-gather; :func:`torch_gather`). A gather that
raises, times out or returns blocks kiln cannot read is :class:`~kiln.errors.AgreementFailed`;
a peer that cannot restore is :class:`~kiln.errors.PeerRankFailed` naming it and its cause.
Both follow the policy like any other stage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kiln.env_settings import AGREEMENT_TIMEOUT, count_setting
from kiln.errors import AgreementFailed, PeerRankFailed

#: Every rank's block has this size (an all-gather needs equal sizes): 4 length bytes, then
#: the verdict as UTF-8 JSON, then zeros.
BLOCK = 2048
_CAUSE_CHARS = 1024

Gather = Callable[[bytes], Sequence[bytes]]


@dataclass(frozen=True)
class Verdict:
    """One rank's state at an agreement point: ``restoring`` unless it cannot (``cause``
    then says why, ``stage`` where it found out)."""

    rank: int
    restoring: bool
    stage: str = ""
    cause: str = ""

    def encode(self) -> bytes:
        cause = self.cause[:_CAUSE_CHARS]
        while True:
            doc = {
                "rank": self.rank,
                "restoring": self.restoring,
                "stage": self.stage[:64],
                "cause": cause,
            }
            text = json.dumps(doc, ensure_ascii=True).encode("ascii")
            if len(text) + 4 <= BLOCK:
                return len(text).to_bytes(4, "little") + text + bytes(BLOCK - 4 - len(text))
            cause = cause[: len(cause) // 2]  # escapes take up to 12 bytes a character


def decode(block: object, position: int) -> Verdict:
    """The verdict in the block at ``position`` of a gather; AgreementFailed naming it when
    the block is not one."""
    where = f"the agreement's block {position}"
    if not isinstance(block, (bytes, bytearray, memoryview)) or len(block) != BLOCK:
        raise AgreementFailed(f"{where} is not {BLOCK} bytes")
    data = bytes(block)
    size = int.from_bytes(data[:4], "little")
    if not 0 < size <= BLOCK - 4:
        raise AgreementFailed(f"{where} says it holds {size} bytes")
    try:
        doc = json.loads(data[4 : 4 + size].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise AgreementFailed(f"{where} is not a verdict") from None
    if not isinstance(doc, dict) or set(doc) != {"rank", "restoring", "stage", "cause"}:
        raise AgreementFailed(f"{where} is not a verdict")
    rank, restoring, stage, cause = doc["rank"], doc["restoring"], doc["stage"], doc["cause"]
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < 1 << 31:
        raise AgreementFailed(f"{where} names rank {rank!r}")
    if not isinstance(restoring, bool) or not isinstance(stage, str) or not isinstance(cause, str):
        raise AgreementFailed(f"{where} is not a verdict")
    return Verdict(rank, restoring, stage[:64], cause[:_CAUSE_CHARS])


def agree(own: Verdict, world_size: int, gather: Gather | None) -> list[Verdict]:
    """Every rank's verdict, this rank's included; the gather is called only with several
    ranks (with one, the answer is ``[own]``). Raises AgreementFailed when the gather fails
    or its answer does not hold this rank's own verdict exactly once."""
    if world_size <= 1 or gather is None:
        return [own]
    block = own.encode()
    try:
        blocks = list(gather(block))
    except Exception as err:  # gloo raises RuntimeError (a timeout, a peer that died)
        raise AgreementFailed(
            f"rank {own.rank}: the ranks could not agree on restoring ({type(err).__name__}: {err})"
        ) from err
    if not 1 <= len(blocks) <= world_size:
        raise AgreementFailed(
            f"rank {own.rank}: the agreement returned {len(blocks)} verdicts for {world_size} ranks"
        )
    verdicts = [decode(b, i) for i, b in enumerate(blocks)]
    if sum(1 for b in blocks if bytes(b) == block) < 1:
        raise AgreementFailed(f"rank {own.rank}: the agreement's answer lacks this rank's verdict")
    ranks = [v.rank for v in verdicts]
    if len(set(ranks)) != len(ranks):
        raise AgreementFailed(f"rank {own.rank}: two verdicts name the same rank ({ranks})")
    return verdicts


def first_refusal(verdicts: Sequence[Verdict]) -> PeerRankFailed | None:
    """The error naming the lowest rank that cannot restore, or None when all can."""
    for verdict in sorted(verdicts, key=lambda v: v.rank):
        if not verdict.restoring:
            return PeerRankFailed(verdict.rank, verdict.stage or "start", verdict.cause)
    return None


DEFAULT_TIMEOUT_S = 300


def timeout_s(environ: Mapping[str, str] | None = None) -> int:
    """How long a rank waits for the others to agree (KILN_AGREEMENT_TIMEOUT, seconds)."""
    return count_setting(AGREEMENT_TIMEOUT, DEFAULT_TIMEOUT_S, "seconds", environ=environ)


def torch_gather(group: Any, timeout_s: float) -> Gather:
    """A :data:`Gather` over a torch.distributed CPU (gloo) process group: one all-gather of
    uint8 blocks, waited for at most ``timeout_s`` seconds (a timeout raises, and
    :func:`agree` names it)."""

    def gather(block: bytes) -> Sequence[bytes]:
        import torch
        import torch.distributed as dist

        size = dist.get_world_size(group)
        mine = torch.frombuffer(bytearray(block), dtype=torch.uint8)
        blocks = [torch.empty(len(block), dtype=torch.uint8) for _ in range(size)]
        work = dist.all_gather(blocks, mine, group=group, async_op=True)
        if work is None or not work.wait(timeout=timedelta(seconds=timeout_s)):
            raise TimeoutError(f"no answer from every rank within {timeout_s:g} s")
        return [bytes(b.numpy().tobytes()) for b in blocks]

    return gather
