"""Which rank and which GPU a vLLM worker is, as kiln must know them before vLLM binds.

With data parallelism each replica's workers are numbered 0..TP*PP-1 again, so kiln numbers
a worker across replicas (replica index x replica world size + rank): every worker gets its
own archive (`rank<N>/`). vLLM 0.24 adds the replica's offset to the worker's local rank
inside `Worker.init_device`, after kiln has to bind the region; `device_index` computes the
same device first (the seam contract pins the statement it follows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def global_rank(parallel_config: Any, rank: int) -> tuple[int, int]:
    """(rank, world size) across data-parallel replicas."""
    world = int(parallel_config.world_size)
    replicas = int(getattr(parallel_config, "data_parallel_size", 1) or 1)
    if replicas == 1:
        return rank, world
    index = int(parallel_config.data_parallel_index)
    return index * world + rank, replicas * world


def device_index(parallel_config: Any, local_rank: int) -> int:
    """The device ordinal vLLM's `Worker.init_device` binds for `local_rank`: unchanged with
    one replica; with several (and vLLM's own multiprocessing launch on one node), offset by
    the replica's local index times TP x PP, as vLLM does."""
    if int(getattr(parallel_config, "data_parallel_size", 1) or 1) == 1:
        return local_rank
    if (
        parallel_config.distributed_executor_backend in ("ray", "external_launcher")
        or parallel_config.data_parallel_backend == "ray"
        or parallel_config.nnodes_within_dp != 1
    ):
        return local_rank
    dp_local = parallel_config.data_parallel_rank_local
    if dp_local is None:
        dp_local = parallel_config.data_parallel_index
    per_replica = parallel_config.pipeline_parallel_size * parallel_config.tensor_parallel_size
    return local_rank + int(dp_local) * int(per_replica)


def layout(parallel_config: Any) -> dict[str, int]:
    """The parallel layout kiln's job manifest records (kiln.lifecycle.job): SAVE's must be
    this start's. Sizes as vLLM reports them; expert parallelism as 0 or 1 (its size follows
    from TP x DP)."""
    return {
        "tensor_parallel_size": int(parallel_config.tensor_parallel_size),
        "pipeline_parallel_size": int(parallel_config.pipeline_parallel_size),
        "data_parallel_size": int(getattr(parallel_config, "data_parallel_size", 1) or 1),
        "enable_expert_parallel": int(bool(getattr(parallel_config, "enable_expert_parallel", 0))),
    }


def world_gather(world_group: Any) -> Callable[[bytes], Sequence[bytes]] | None:
    """The agreement's gather over vLLM's world group (its gloo `cpu_group`), or None when
    the group has one rank: kiln then never calls a collective."""
    if int(world_group.world_size) <= 1:
        return None
    from kiln.lifecycle import agreement

    return agreement.torch_gather(world_group.cpu_group, agreement.timeout_s())
