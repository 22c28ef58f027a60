"""kiln_vllm.ranks: with data parallelism every worker is its own kiln rank, and kiln binds
the device vLLM is about to bind. Regression: the worker bound its local rank before vLLM
added the replica's offset, so replica 1's region sat on GPU 0 while vLLM ran on GPU 1, and
every replica wrote rank 0's archive."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln_vllm.ranks import device_index, global_rank


def config(dp: int = 1, index: int = 0, tp: int = 1, pp: int = 1, **extra: object):
    fields = {
        "world_size": tp * pp,
        "data_parallel_size": dp,
        "data_parallel_index": index,
        "data_parallel_rank_local": None,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "distributed_executor_backend": "mp",
        "data_parallel_backend": "mp",
        "nnodes_within_dp": 1,
    }
    fields.update(extra)
    return SimpleNamespace(**fields)


def test_one_replica_keeps_vllms_rank_and_device() -> None:
    assert global_rank(config(tp=2), 1) == (1, 2)
    assert device_index(config(tp=2), 1) == 1


def test_replicas_are_distinct_kiln_ranks() -> None:
    ranks = {global_rank(config(dp=2, index=i, tp=2), r) for i in range(2) for r in range(2)}
    assert ranks == {(0, 4), (1, 4), (2, 4), (3, 4)}


def test_a_replica_binds_the_device_vllm_offsets_it_to() -> None:
    assert device_index(config(dp=2, index=1, tp=2), 1) == 3
    assert device_index(config(dp=2, index=1, data_parallel_rank_local=0), 0) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"distributed_executor_backend": "ray"},
        {"data_parallel_backend": "ray"},
        {"nnodes_within_dp": 2},
    ],
)
def test_launchers_that_place_devices_themselves_keep_the_local_rank(extra) -> None:
    assert device_index(config(dp=2, index=1, **extra), 0) == 0
