"""The engine lifecycle: the driver adapters call, and the types they exchange with it.

Typical adapter use (one engine process)::

    from kiln import lifecycle
    from kiln.lifecycle import WarmupPhase

    driver = lifecycle.start("vllm", adapter=plugin, rank=rank, world_size=world_size)
    driver.device_bound(local_rank)
    ...                                   # communicators
    driver.communicators_ready()
    ...                                   # load weights
    driver.weights_loaded()
    kv = driver.kv_capacity(lambda: {"num_gpu_blocks": profile()})
    driver.warmup(WarmupPhase("compile", skippable_on_load=False), compile_warmup)
    driver.capture_begin(keys)
    for key, fn in graphs:
        handles[key] = driver.capture_graph(key, fn)
    driver.capture_end()
    driver.region_close()
    driver.ready()

See ``docs/lifecycle.md`` and :mod:`kiln.hookspecs`.
"""

from __future__ import annotations

from kiln.lifecycle.context import KilnContext
from kiln.lifecycle.driver import Driver
from kiln.lifecycle.errors import (
    PinConflict,
    StageFailed,
    UsageError,
)
from kiln.lifecycle.process import current, reset, start
from kiln.lifecycle.report import StartupReport
from kiln.lifecycle.runtime import RestoredGraphLike
from kiln.lifecycle.stages import ORDER, Stage
from kiln.lifecycle.types import (
    FailureAction,
    KvCapacity,
    Pin,
    RunMode,
    WarmupAction,
    WarmupPhase,
)

__all__ = [
    "ORDER",
    "Driver",
    "FailureAction",
    "KilnContext",
    "KvCapacity",
    "Pin",
    "PinConflict",
    "RestoredGraphLike",
    "RunMode",
    "Stage",
    "StageFailed",
    "StartupReport",
    "UsageError",
    "WarmupAction",
    "WarmupPhase",
    "current",
    "reset",
    "start",
]
