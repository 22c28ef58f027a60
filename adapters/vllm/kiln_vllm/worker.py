"""`KilnWorker`: vLLM 0.24's GPU worker with kiln's lifecycle at each startup stage.

Selected through vLLM's own extension point, `worker_cls` (`LLM(..., worker_cls=...)`,
`vllm serve --worker-cls ...`; under `kiln run` the general plugin sets it). Each override
calls vLLM's method and tells kiln's driver where startup stands; outside `kiln run` the
driver passes everything through, so the worker behaves exactly like vLLM's.

Stages (docs/vllm/seams.md §6):
- init_device: bind the GPU and open the deterministic region before vLLM allocates.
- load_model: weights are in the region.
- determine_available_memory: SAVE profiles with the region suspended and records the KV
  bytes and the MoE workspace size; LOAD reuses them and only runs the profiling forward
  (suspended) for its side effect, the compiled model; both then place the workspace inside
  the region (kiln_vllm.workspace).
- initialize_from_config: KV cache allocated; kiln's capture loop is installed.
- compile_or_warm_up_model: graphs captured (SAVE) or restored (LOAD, FULL graphs), vLLM's
  `warmup_kernels` run suspended in both modes, then at LOAD a small prefill and a small
  mixed step (kiln_vllm.warmups: the eager kernels native's graph warmups loaded), region
  closed, ready.

Under kiln the heap is frozen from the worker's creation until vLLM's own
`freeze_gc_heap` (kiln_vllm.startup_gc), so startup's collections skip what imports made.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import importlib.metadata
import json
import os
import pstats
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from kiln import lifecycle
from kiln.env_settings import count_setting
from kiln.lifecycle import WarmupPhase
from vllm.distributed.parallel_state import get_world_group
from vllm.v1.worker import gpu_worker
from vllm.v1.worker.gpu_worker import Worker

from kiln_vllm.adapter import WARMUP_KERNELS_PHASE
from kiln_vllm.graphs import kiln_manager_class
from kiln_vllm.ranks import device_index, global_rank, layout, world_gather
from kiln_vllm.startup_gc import CollectionLog, StartupFreeze
from kiln_vllm.warmups import WorkerStep, then_warm_first_requests, warm_first_request_kernels
from kiln_vllm.workspace import WORKSPACE_BYTES, place_workspace, workspace_bytes

T = TypeVar("T")

STAGE_TIMES = "KILN_VLLM_STAGE_TIMES"  # a path ({rank} is replaced): per-stage seconds, JSON
# Diagnostics: a stage name; its cProfile (top functions by cumulative time) is written
# next to the stage times as <path>.<stage>.prof.txt.
PROFILE_STAGE = "KILN_VLLM_PROFILE_STAGE"
# Diagnostics: 1 adds every garbage collection until ready to the stage times.
GC_TIMES = "KILN_VLLM_GC_TIMES"
# Diagnostics: a count N; the first N engine steps after ready (execute_model and
# sample_tokens calls) are profiled together, written as <path>.first-steps.prof.txt.
PROFILE_STEPS = "KILN_VLLM_PROFILE_STEPS"

# vLLM's kernel_warmup (FlashInfer autotune) runs before capture and allocates in the
# region, so LOAD runs it too.
KERNEL_WARMUP = WarmupPhase("vllm/kernel_warmup", skippable_on_load=False)
# The V2 runner's dummy steps that JIT (or load from Triton's cache) the kernels it runs
# outside graphs: skipping them moves that cost to the first request, so both modes run
# them, suspended (kiln_vllm.adapter's warmup policy).
WARMUP_KERNELS = WarmupPhase(WARMUP_KERNELS_PHASE, skippable_on_load=True)
COMPILE_TOKENS = 16  # LOAD's first model call: it only needs to load the compiled model


class KilnWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from kiln_vllm import plugin

        plugin.bind_config(self.vllm_config)
        rank, world_size = global_rank(self.parallel_config, self.rank)
        self.kiln = lifecycle.start(
            "vllm",
            adapter=plugin,
            rank=rank,
            world_size=world_size,
            layout=layout(self.parallel_config),
        )
        self.kiln_times: dict[str, float] = {}
        self.kiln_stage_starts: dict[str, float] = {}
        self.kiln_t0 = time.perf_counter()
        self.kiln_collections = CollectionLog()
        if os.environ.get(GC_TIMES) == "1" and os.environ.get(STAGE_TIMES):
            self.kiln_collections.start()
        # Before the GPU is bound: no frozen object holds a CUDA tensor (startup_gc).
        self.kiln_startup_freeze = StartupFreeze()
        frozen_before = gc.get_freeze_count()
        began = self.kiln.mode.value in ("save", "load") and self.kiln_startup_freeze.begin()
        self.kiln_gc_facts: dict[str, Any] = {
            "mode_at_init": self.kiln.mode.value,
            "frozen_before": frozen_before,
            "froze": began,
            "frozen_after": gc.get_freeze_count(),
            "callbacks": [getattr(c, "__qualname__", repr(c)) for c in gc.callbacks],
        }

    def init_device(self) -> None:
        with self._timed("init_device"):
            # vLLM offsets local_rank by the data-parallel replica inside init_device; kiln
            # binds the device vLLM is about to use, first (kiln_vllm.ranks).
            self.kiln.device_bound(device_index(self.parallel_config, self.local_rank))
            super().init_device()
            # vLLM's world group (and its gloo CPU group) exists now: from here on the ranks
            # agree, stage by stage, that all of them restore or none does.
            self.kiln.communicators_ready(gather=world_gather(get_world_group()))

    def load_model(self, *, load_dummy_weights: bool = False) -> None:
        with self._timed("load_model"):
            super().load_model(load_dummy_weights=load_dummy_weights)
            self.kiln.weights_loaded()

    @torch.inference_mode()
    def determine_available_memory(self) -> int:
        with self._timed("determine_available_memory"):
            measured = False

            def measure() -> dict[str, int]:
                nonlocal measured
                measured = True
                with self.kiln.suspended():
                    kv_bytes = int(super(KilnWorker, self).determine_available_memory())
                    return {"kv_cache_bytes": kv_bytes, WORKSPACE_BYTES: workspace_bytes()}

            # The fields read below: an archive recording others is refused by the policy.
            kv = self.kiln.kv_capacity(measure, keys=("kv_cache_bytes", WORKSPACE_BYTES))
            if not measured:
                # LOAD: the bytes are SAVE's. The model's first call still loads the compiled
                # model (and builds its graph wrappers), as SAVE's profiling forward did: same
                # place, suspended, but a few tokens instead of max_num_batched_tokens.
                # One full collection, after the call: it frees what the compiled-model load
                # left in reference cycles before the cache is emptied. One before the call
                # (~0.4 s in a profile of 8B LOAD) had none of the call's garbage to free, and
                # vLLM collects fully again when it freezes the heap after start-up.
                runner = self.model_runner
                with self.kiln.suspended():
                    torch.accelerator.empty_cache()
                    runner._dummy_run(
                        min(COMPILE_TOKENS, runner.max_num_tokens), skip_attn=True, is_profile=True
                    )
                    torch.accelerator.synchronize()
                    gc.collect()
                    torch.accelerator.empty_cache()
            if self.kiln.mode.value in ("save", "load"):
                # The MoE workspace SAVE's profiling grew, now inside the region, at the same
                # point of both modes (kiln_vllm.workspace).
                place_workspace(int(kv[WORKSPACE_BYTES]))
            return int(kv["kv_cache_bytes"])

    def initialize_from_config(self, kv_cache_config: Any) -> None:
        with self._timed("initialize_from_config"):
            super().initialize_from_config(kv_cache_config)
            manager = getattr(self.model_runner, "cudagraph_manager", None)
            if manager is not None:
                manager.__class__ = kiln_manager_class(type(manager))
                manager._kiln_driver = self.kiln

    def compile_or_warm_up_model(self) -> Any:
        with self._timed("compile_or_warm_up_model"):
            runner = self.model_runner
            capture_model = runner.capture_model

            def timed_capture() -> int:
                with self._timed("capture_model"):
                    return int(capture_model())

            runner.capture_model = timed_capture
            try:
                with (
                    _module_global(gpu_worker, "kernel_warmup", self._phase(KERNEL_WARMUP)),
                    _module_global(gpu_worker, "warmup_kernels", self._warmup_kernels),
                    _module_global(
                        gpu_worker, "freeze_gc_heap", self.kiln_startup_freeze.ending_before
                    ),
                ):
                    result = super().compile_or_warm_up_model()
            finally:
                del runner.capture_model  # the instance attribute; the method shows again
                self.kiln_startup_freeze.end()  # vLLM failed before its own freeze
            # Closed after vLLM's last warmup (warmups run only while the region exists).
            self.kiln.region_close()
        self.kiln.ready()
        self._write_times()
        steps = count_setting(PROFILE_STEPS, 0, "engine steps to profile")
        if steps > 0 and os.environ.get(STAGE_TIMES):
            self._profile_first_steps(steps)
        return result

    # --- helpers ---------------------------------------------------------------------------

    def _warmup_kernels(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """vLLM's warmup_kernels as a kiln warmup phase, then the first-request warmup (SAVE
        and LOAD)."""
        return then_warm_first_requests(
            self._phase(WARMUP_KERNELS)(original),
            under_kiln=lambda: self.kiln.mode.value in ("save", "load"),
            warm=self._warm_first_requests,
        )

    def _warm_first_requests(
        self, runner: Any, execute_model: WorkerStep, sample_tokens: WorkerStep
    ) -> None:
        # Suspended like warmup_kernels: after every graph, so the region's layout is SAVE's.
        with self._timed("first_request_warmup"), self.kiln.suspended():
            warm_first_request_kernels(runner, execute_model, sample_tokens)

    def _phase(self, phase: WarmupPhase) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
        driver = self.kiln

        def wrap(original: Callable[..., T]) -> Callable[..., T | None]:
            def run(*args: Any, **kwargs: Any) -> T | None:
                with self._timed(phase.name.split("/")[-1]):
                    return driver.warmup(phase, lambda: original(*args, **kwargs))

            return run

        return wrap

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        profiling = os.environ.get(PROFILE_STAGE) == stage and os.environ.get(STAGE_TIMES)
        profile = cProfile.Profile() if profiling else None
        t0 = time.perf_counter()
        self.kiln_stage_starts[stage] = t0 - self.kiln_t0
        if profile is not None:
            profile.enable()
        try:
            yield
        finally:
            self.kiln_times[stage] = time.perf_counter() - t0
            if profile is not None:
                profile.disable()
                self._write_profile(stage, profile)

    def _profile_first_steps(self, steps: int) -> None:
        """Wrap execute_model and sample_tokens (instance attributes, so nothing wraps them
        unless asked) until `steps` calls ran under one cProfile, then write it."""
        profile = cProfile.Profile()
        left = [steps]
        durations: list[float] = []

        def wrap(name: str) -> None:
            original = getattr(self, name)

            def run(*args: Any, **kwargs: Any) -> Any:
                if left[0] <= 0:
                    return original(*args, **kwargs)
                t0 = time.perf_counter()
                profile.enable()
                try:
                    return original(*args, **kwargs)
                finally:
                    profile.disable()
                    durations.append(time.perf_counter() - t0)
                    left[0] -= 1
                    if left[0] == 0:
                        self.__dict__.pop("execute_model", None)
                        self.__dict__.pop("sample_tokens", None)
                        header = f"first {steps} steps, seconds each: {durations}"
                        self._write_profile("first-steps", profile, header)

            setattr(self, name, run)

        wrap("execute_model")
        wrap("sample_tokens")

    def _write_profile(self, name: str, profile: cProfile.Profile, header: str = "") -> None:
        path = os.environ[STAGE_TIMES].replace("{rank}", str(self.rank))
        with open(f"{path}.{name}.prof.txt", "w") as f:
            f.write(f"{header or name}\n")
            stats = pstats.Stats(profile, stream=f)
            stats.sort_stats("cumulative").print_stats(60)
            stats.sort_stats("tottime").print_stats(40)
        profile.dump_stats(f"{path}.{name}.prof")  # for callers and callees (pstats)

    def _write_times(self) -> None:
        path = os.environ.get(STAGE_TIMES)
        if not path:
            return
        self.kiln_collections.stop()
        record = {
            "rank": self.rank,
            "mode": self.kiln.mode.value,
            "stages": self.kiln_times,
            # Seconds from the worker's creation to each stage's start.
            "stage_starts_s": self.kiln_stage_starts,
            "collections": self.kiln_collections.records,
            "gc": self.kiln_gc_facts,
        }
        with open(path.replace("{rank}", str(self.rank)), "w") as f:
            json.dump(record, f, indent=1)


@contextlib.contextmanager
def _module_global(
    module: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Replace `module.name` (a function vLLM calls through its module global) by
    `wrap(original)` for the duration: the only way to time and skip a warmup vLLM calls
    from inside `compile_or_warm_up_model` without re-implementing that method."""
    original = getattr(module, name)
    setattr(module, name, wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def vllm_version() -> str:
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
