"""The lifecycle stages, their documented order, and the check that adapters keep to it.

Keeping the order in code (not only in docs) is what makes the hook order a contract: an
adapter that reports "weights loaded" before "device bound" would otherwise load weights
outside the deterministic region and only fail much later, at LOAD, as allocation drift.
"""

from __future__ import annotations

import enum

from kiln.lifecycle.errors import LifecycleOrderError


class Stage(enum.StrEnum):
    """Lifecycle stages in firing order (``WARMUP`` may occur anywhere in its window)."""

    PROCESS_INIT = "process_init"
    PIN_SETTINGS = "pin_settings"
    DEVICE_BOUND = "device_bound"
    COMMUNICATORS_READY = "communicators_ready"
    WEIGHTS_LOADED = "weights_loaded"
    COLLECTIVES_BOOTSTRAPPED = "collectives_bootstrapped"
    KV_CAPACITY = "kv_capacity"
    CAPTURE_BEGIN = "capture_begin"
    CAPTURE_GRAPH = "capture_graph"
    CAPTURE_END = "capture_end"
    REGION_CLOSE = "region_close"
    # LOAD with load_builds = before-ready: ready waits for every restored graph's own
    # executable. The driver enters it itself (from ready()); no hook of its own fires.
    BUILDS_FINISHED = "builds_finished"
    READY = "ready"
    WARMUP = "warmup"


#: The ordered stages. Any of them after PROCESS_INIT may be skipped by an engine that has no
#: such point (a single-GPU engine has no communicators), but none may go backwards.
ORDER: tuple[Stage, ...] = (
    Stage.PROCESS_INIT,
    Stage.PIN_SETTINGS,
    Stage.DEVICE_BOUND,
    Stage.COMMUNICATORS_READY,
    Stage.WEIGHTS_LOADED,
    Stage.COLLECTIVES_BOOTSTRAPPED,
    Stage.KV_CAPACITY,
    Stage.CAPTURE_BEGIN,
    Stage.CAPTURE_GRAPH,
    Stage.CAPTURE_END,
    Stage.REGION_CLOSE,
    Stage.BUILDS_FINISHED,
    Stage.READY,
)
_RANK = {stage: index for index, stage in enumerate(ORDER)}
_IN_CAPTURE = (Stage.CAPTURE_BEGIN, Stage.CAPTURE_GRAPH)


class StageOrder:
    """Tracks the last stage entered in this process and rejects out-of-order calls."""

    def __init__(self) -> None:
        self.last: Stage | None = None

    def reached(self, stage: Stage) -> bool:
        return self.last is not None and _RANK[self.last] >= _RANK[stage]

    def enter(self, stage: Stage) -> None:
        self._check(stage)
        if stage is not Stage.WARMUP:
            self.last = stage

    def _check(self, stage: Stage) -> None:
        last = self.last
        if stage is Stage.WARMUP:
            # Warmups happen between binding the device and closing the region: before, the
            # region does not exist yet; after, suspending it would mean nothing.
            if not self.reached(Stage.DEVICE_BOUND) or self.reached(Stage.REGION_CLOSE):
                raise LifecycleOrderError(
                    stage, last, "warmups run between device_bound and region_close"
                )
            return
        if last is None:
            if stage is not Stage.PROCESS_INIT:
                raise LifecycleOrderError(stage, None, "start the driver first")
            return
        if _RANK[stage] > _RANK[Stage.DEVICE_BOUND] and not self.reached(Stage.DEVICE_BOUND):
            # Everything after binding allocates device memory, which must land in the region.
            raise LifecycleOrderError(stage, last, "device_bound must come first")
        if stage in (Stage.CAPTURE_GRAPH, Stage.CAPTURE_END):
            if last not in _IN_CAPTURE:
                raise LifecycleOrderError(stage, last, "only between capture_begin and capture_end")
            return
        if stage is Stage.CAPTURE_BEGIN and last is Stage.CAPTURE_END:
            return  # a second graph set (e.g. a speculative-decoding draft model)
        if last in _IN_CAPTURE:
            raise LifecycleOrderError(stage, last, "capture_end must close the capture first")
        if _RANK[stage] <= _RANK[last]:
            raise LifecycleOrderError(stage, last)
