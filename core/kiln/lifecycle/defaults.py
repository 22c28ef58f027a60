"""kiln's own implementations of the decision hooks, registered by the driver as "kiln.core".

They run last (``trylast``), so an adapter overrides a decision by returning a value and
keeps the default by returning ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

from kiln import __version__
from kiln.archive import FORMAT_VERSION
from kiln.errors import ArchiveCorrupt, KilnError
from kiln.hooks import hookimpl
from kiln.lifecycle.context import KilnContext
from kiln.lifecycle.errors import GraphNotRecorded
from kiln.lifecycle.runtime import Runtime
from kiln.lifecycle.types import (
    FingerprintValue,
    KvCapacity,
    RunMode,
    WarmupAction,
    WarmupPhase,
)

CORE_PLUGIN_NAME = "kiln.core"


class CoreDefaults:
    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        # A callable, so that the native runtime is imported only when a GPU is bound.
        self._runtime = runtime

    @hookimpl(trylast=True)
    def kiln_fingerprint(self, ctx: KilnContext) -> dict[str, FingerprintValue]:
        fields: dict[str, FingerprintValue] = {
            "kiln_version": __version__,
            "format_version": FORMAT_VERSION,
            "kiln.engine": ctx.engine,
            "kiln.rank": ctx.rank,
            "kiln.world_size": ctx.world_size,
        }
        fields.update(ctx.launch_fingerprint)
        if ctx.device is not None:
            slot = ctx.region_slot if ctx.region_slot is not None else 0
            fields.update(self._runtime().fingerprint(ctx.device, slot=slot))
        return fields

    @hookimpl(trylast=True)
    def kiln_warmup_policy(self, ctx: KilnContext, phase: WarmupPhase) -> WarmupAction:
        if not phase.skippable_on_load or ctx.mode is RunMode.NATIVE:
            return WarmupAction.RUN
        # What LOAD skips, SAVE must run without touching the region: identical trajectories.
        return WarmupAction.SKIP if ctx.mode is RunMode.LOAD else WarmupAction.RUN_SUSPENDED

    @hookimpl(trylast=True)
    def kiln_kv_capacity(self, ctx: KilnContext, measure: Callable[[], KvCapacity]) -> KvCapacity:
        if ctx.mode is RunMode.LOAD:
            recorded = ctx.recorded.get("kv_capacity")
            if recorded is None:
                raise ArchiveCorrupt("the archive records no KV capacity")
            return dict(recorded)
        return measure()

    @hookimpl(trylast=True)
    def kiln_capture_graph(
        self, ctx: KilnContext, key: str, capture: Callable[[], object]
    ) -> object:
        if ctx.mode is RunMode.LOAD:
            return self._runtime().restore(key)
        if ctx.mode is not RunMode.SAVE:
            return capture()
        runtime = self._runtime()
        runtime.begin_graph(key)
        try:
            result = capture()
        except BaseException:
            runtime.abort_graph(key)
            raise
        try:
            runtime.end_graph(key, result)
        except KilnError as err:
            # The engine holds a valid native graph; the fallback policy can keep it.
            raise GraphNotRecorded(key, err, result) from err
        return result
