"""The functions kiln registers in SGLang's HookRegistry (sglang_plugin.TARGETS), one per
SGLang 0.5.16 symbol. Each takes what the registry passes (AROUND: the original first;
AFTER: the result first; BEFORE: the call's arguments) and tells kiln's lifecycle driver
where startup stands. They import SGLang and torch only inside their bodies, and act only
while this process's driver is active; otherwise they call SGLang's original.

Main process: `ServerArgs.__post_init__` (BEFORE: pins; AFTER: refusals).
Each scheduler process, in startup order:

| SGLang symbol | hook | kiln |
|---|---|---|
| Scheduler.__init__ | AROUND | start the driver (rank, world, layout); after it returns: ready |
| ModelRunner.init_torch_distributed | AROUND | device_bound before, communicators_ready after (the world group's gloo `cpu_group` as the ranks' agreement) |
| ModelRunner.load_model | AFTER | weights_loaded |
| KVCacheConfigurator._resolve_memory_pool_config | AROUND | kv_capacity (kiln_sglang.kv) |
| BaseRunner.warmup | AROUND | warmup phase sglang/kernel_warmup, run in both modes |
| DecodeCudaGraphRunner.capture | AROUND | a capture session; capture_end after the loop |
| FullCudaGraphBackend.capture_one | AROUND | kiln_sglang.graphs.kiln_capture_one |
| Scheduler.init_all_cuda_graphs | AFTER | live-block guard, region_close |

Only the target model's runner is driven (`is_draft_worker` is False; speculative decoding
is refused). SGLang captures again after ready when a request needs another hidden-state
mode (`recapture_if_needed`); that capture is SGLang's own (the region is closed).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln import lifecycle
from kiln.errors import KilnError
from kiln.lifecycle import Driver, UsageError, WarmupPhase, agreement

from kiln_sglang import blocks, kv
from kiln_sglang.fingerprint import scheduler_fingerprint
from kiln_sglang.graphs import SESSION_ATTR, CaptureApi, CaptureSession, kiln_capture_one
from kiln_sglang.settings import REFUSED_ATTR, Unsupported, apply_pins, refusals, settings_of

log = logging.getLogger("kiln.sglang")

STAGE_TIMES = "KILN_SGLANG_STAGE_TIMES"  # a path ({rank} replaced): per-stage seconds, JSON
# SGLang's BaseRunner.warmup: FlashInfer all-reduce workspaces (and the autotune, pinned
# off). It runs before the capture window and allocates in the region, so LOAD runs it too.
KERNEL_WARMUP = WarmupPhase("sglang/kernel_warmup", skippable_on_load=False)
_ACTIVE = ("save", "load")


@dataclass
class ProcessState:
    """kiln's state in one SGLang process."""

    driver: Driver | None = None
    # The driver that resolves `ServerArgs` in this process (SGLang's main process): a fresh
    # one for each resolution (kiln_sglang.hooks.server_args_before_post_init).
    settings_driver: Driver | None = None
    server_args: Any = None
    model_runner: Any = None  # the target ModelRunner, once it binds its GPU
    closed: bool = False  # region closed: later captures are SGLang's own
    restored_runners: list[Any] = field(default_factory=list)
    pending: KilnError | None = None  # an adapter failure waiting for a stage to carry it
    capture_api: Callable[[], CaptureApi] | None = None  # tests stand in for torch
    live_blocks: Callable[[int], list[blocks.Block]] = blocks.torch_live_blocks
    empty_cache: Callable[[], None] | None = None
    pool_config_class: Any = None  # SGLang's MemoryPoolConfig unless a test stands in
    driver_options: dict[str, Any] = field(default_factory=dict)  # tests: a fake runtime
    times: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)


STATE = ProcessState()


def reset() -> ProcessState:
    """Forget this process's state (tests; SGLang runs one scheduler per process)."""
    global STATE
    STATE = ProcessState()
    return STATE


def _active(driver: Driver | None) -> bool:
    return driver is not None and driver.mode.value in _ACTIVE


@contextlib.contextmanager
def _timed(stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        STATE.times[stage] = round(time.perf_counter() - t0, 6)


def _plugin() -> Any:
    from kiln_sglang import plugin

    return plugin


def fail_in_stage(driver: Driver, error: KilnError, *, close: bool = False) -> None:
    """Apply the policy to an adapter failure found outside any stage: it is raised from the
    adapter's `kiln_capture_begin` hook (strict: the start stops naming it; fallback: SGLang
    goes on natively, and `close` ends the graph set the failure opened). SGLang only logs
    a plugin's exceptions, so kiln carries its own failures through the driver."""
    STATE.pending = error
    try:
        driver.capture_begin(None)
    finally:
        STATE.pending = None
    if driver.mode.value in _ACTIVE:  # the hook did not run: never continue silently
        raise error
    if close:
        driver.capture_end()


# --- main process ------------------------------------------------------------------------


def _settings_driver() -> Driver:
    """A fresh driver for this `ServerArgs` resolution. A process may resolve several (a
    script that starts one `sglang.Engine` after another, or builds its own `ServerArgs`
    first); each is pinned and checked on its own. The settings driver never binds a GPU
    (SGLang's schedulers are spawned processes with drivers of their own), so closing the
    previous one releases nothing an engine uses."""
    previous = STATE.settings_driver
    if previous is not None and _current_driver() is previous:
        lifecycle.reset()
    STATE.settings_driver = driver = lifecycle.start("sglang", adapter=_plugin())
    return driver


def _current_driver() -> Driver | None:
    try:
        return lifecycle.current()
    except UsageError:
        return None


def server_args_before_post_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """BEFORE `ServerArgs.__post_init__`: apply kiln's pins to the raw fields."""
    driver = _settings_driver()
    if not _active(driver):
        return
    settings, explicit = settings_of(self)
    apply_pins(self, driver.resolve_pins(settings, explicit))
    return


def server_args_after_post_init(result: Any, self: Any, *args: Any, **kwargs: Any) -> None:
    """AFTER `ServerArgs.__post_init__`: refuse what kiln cannot restore, by the policy."""
    driver = STATE.settings_driver or _settings_driver()
    if not _active(driver):
        return
    reasons = refusals(self)
    if not reasons:
        return
    if driver.ctx.policy == "strict":
        raise Unsupported(reasons)
    # Fallback: every scheduler falls back in its device-bound stage, saying why.
    setattr(self, REFUSED_ATTR, "; ".join(reasons))
    log.warning("kiln-sglang: SGLang will start natively: %s", "; ".join(reasons))
    return


# --- scheduler process -------------------------------------------------------------------


def scheduler_init(original: Callable[..., Any], self: Any, *args: Any, **kwargs: Any) -> Any:
    """AROUND `Scheduler.__init__`: the driver lives from here to ready."""
    bound = inspect.signature(original).bind(self, *args, **kwargs).arguments
    server_args = bound["server_args"]
    tp, pp = int(server_args.tp_size), int(server_args.pp_size)
    rank = int(bound.get("pp_rank") or 0) * tp + int(bound["tp_rank"])
    state = STATE
    state.server_args = server_args
    state.driver = driver = lifecycle.start(
        "sglang",
        adapter=_plugin(),
        rank=rank,
        world_size=tp * pp,
        layout=layout(server_args),
        **state.driver_options,
    )
    _plugin().bind(_fingerprint, _live_blocks)
    with _timed("scheduler_init"):
        result = original(self, *args, **kwargs)
    with _timed("ready"):
        driver.ready()
    _write_times(rank, driver)
    return result


def _fingerprint() -> dict[str, Any]:
    refused = getattr(STATE.server_args, REFUSED_ATTR, None)
    if refused:
        raise Unsupported([refused])
    runner = STATE.model_runner
    return scheduler_fingerprint(STATE.server_args, getattr(runner, "model_config", None))


def _live_blocks() -> list[blocks.Block]:
    runner = STATE.model_runner
    if runner is None:
        raise KilnError("kiln-sglang: no model runner bound its GPU")
    return STATE.live_blocks(int(runner.gpu_id))


def _target(runner: Any) -> bool:
    return STATE.driver is not None and not getattr(runner, "is_draft_worker", False)


def init_torch_distributed(original: Callable[..., Any], self: Any) -> Any:
    """AROUND `ModelRunner.init_torch_distributed`: bind the GPU before SGLang sets it."""
    driver = STATE.driver
    if driver is None or not _target(self):
        return original(self)
    STATE.model_runner = self
    with _timed("init_torch_distributed"):
        driver.device_bound(int(self.gpu_id))
        result = original(self)
        if driver.ctx.world_size > 1:
            # SGLang's world group (and its gloo CPU group) exists now: from here on the
            # ranks agree, stage by stage, that all of them restore or none does.
            driver.communicators_ready(gather=world_gather())
    return result


def load_model(original: Callable[..., Any], self: Any) -> Any:
    """AROUND `ModelRunner.load_model`: weights_loaded after it."""
    if not _target(self):
        return original(self)
    assert STATE.driver is not None
    with _timed("load_model"):
        result = original(self)
    STATE.driver.weights_loaded()
    return result


def resolve_memory_pool_config(
    original: Callable[..., Any], self: Any, pre_model_load_memory: Any
) -> Any:
    """AROUND `KVCacheConfigurator._resolve_memory_pool_config`: SAVE records the resolved
    config's integers, LOAD rebuilds it from them without sampling free memory."""
    driver = STATE.driver
    if driver is None or getattr(self, "is_draft_worker", False):
        return original(self, pre_model_load_memory)
    active = _active(driver)
    measured: list[Any] = []

    def measure() -> dict[str, int]:
        if active and getattr(self, "mambaish_config", None) is not None:
            # Its sizing overrides server arguments as a side effect, which kiln would
            # have to record and replay.
            raise Unsupported(["mamba and hybrid models are not supported yet"])
        config = original(self, pre_model_load_memory)
        measured.append(config)
        return kv.capacity_of(config)

    with _timed("kv_capacity"):
        capacity = driver.kv_capacity(measure, keys=kv.KEYS)
    if measured:
        return measured[0]
    config_class = STATE.pool_config_class
    if config_class is None:
        from sglang.srt.model_executor.pool_configurator import MemoryPoolConfig

        config_class = MemoryPoolConfig
    kv.check_fields(config_class)
    # SGLang's sampling empties torch's cache first (get_available_gpu_memory): LOAD does
    # the same, so that the cache holds what it held at SAVE when the pools allocate.
    (STATE.empty_cache or _torch_empty_cache)()
    return kv.config_of(capacity, config_class, self.server_args.mem_fraction_static)


def _torch_empty_cache() -> None:
    import torch

    torch.cuda.empty_cache()


def base_runner_warmup(original: Callable[..., Any], self: Any) -> Any:
    """AROUND `BaseRunner.warmup`: a warmup phase the driver decides (run in both modes)."""
    runner = getattr(self, "model_runner", None)
    driver = STATE.driver
    if driver is None or STATE.closed or not _target(runner):
        return original(self)
    if getattr(runner, "_kernel_warmed_up", False):
        return original(self)  # SGLang's run-once guard: nothing runs
    with _timed("kernel_warmup"):
        return driver.warmup(KERNEL_WARMUP, lambda: original(self))


def decode_capture(original: Callable[..., Any], self: Any) -> Any:
    """AROUND `DecodeCudaGraphRunner.capture`: SGLang's loop, with a kiln capture session
    on the runner's backend for `capture_one` to find."""
    driver = STATE.driver
    if driver is None or STATE.closed or not _active(driver) or not _target(self.model_runner):
        return original(self)
    backend = self.backend
    if type(backend).__name__ != "FullCudaGraphBackend":
        fail_in_stage(
            driver,
            KilnError(
                f"SGLang's decode runner uses {type(backend).__name__}; kiln restores "
                "FullCudaGraphBackend graphs (cuda_graph_backend_decode=full)"
            ),
            close=True,
        )
        return original(self)
    api = (STATE.capture_api or _torch_api)()
    session = CaptureSession(driver, self, api, on_error=lambda e: fail_in_stage(driver, e))
    setattr(backend, SESSION_ATTR, session)
    try:
        with _timed("decode_capture"):
            result = original(self)
    finally:
        backend.__dict__.pop(SESSION_ATTR, None)
    session.end()
    if session.restored:
        STATE.restored_runners.append(self)
    return result


def _torch_api() -> CaptureApi:
    from kiln_sglang.graphs import torch_capture_api

    return torch_capture_api()


def capture_one(
    original: Callable[..., Any],
    self: Any,
    shape_key: Any,
    forward_fn: Callable[[], Any],
    dummies: Any = None,
    post_warmup_hook: Callable[[], None] | None = None,
) -> Any:
    """AROUND `FullCudaGraphBackend.capture_one`: kiln's capture or restore of one shape
    while a session is open; SGLang's own otherwise."""
    session = getattr(self, "__dict__", {}).get(SESSION_ATTR)
    if session is None:
        return original(self, shape_key, forward_fn, dummies, post_warmup_hook)
    return kiln_capture_one(session, self, shape_key, forward_fn, post_warmup_hook)


def init_all_cuda_graphs(result: Any, self: Any) -> None:
    """AFTER `Scheduler.init_all_cuda_graphs`: every graph set is done; the live-block guard
    runs in the region-close stage (kiln_sglang.adapter), then the region closes. If kiln
    fell back after restoring graphs, they are captured again natively: nothing restored
    stays in use once the policy said native."""
    driver = STATE.driver
    if driver is None or STATE.closed:
        return
    with _timed("region_close"):
        driver.region_close()
    STATE.closed = True
    if driver.mode.value == "native" and STATE.restored_runners:
        with _timed("native_recapture"):
            for runner in STATE.restored_runners:
                runner.backend.cleanup()
                runner.capture()
        STATE.restored_runners.clear()
    return


def _write_times(rank: int, driver: Driver) -> None:
    path = os.environ.get(STAGE_TIMES)
    if not path:
        return
    record = {
        "rank": rank,
        "mode": driver.mode.value,
        "stages": dict(STATE.times),
        "since_scheduler_start_s": round(time.perf_counter() - STATE.t0, 6),
    }
    try:
        with open(path.replace("{rank}", str(rank)), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    except OSError as err:  # diagnostics must not stop a working engine
        log.warning("kiln-sglang: cannot write stage times to %s: %s", path, err)


def layout(server_args: Any) -> dict[str, int]:
    """The parallel layout kiln's job manifest records (kiln.lifecycle.job), as SGLang's
    server arguments give it."""
    return {
        "tensor_parallel_size": int(server_args.tp_size),
        "pipeline_parallel_size": int(server_args.pp_size),
        "data_parallel_size": int(getattr(server_args, "dp_size", 1) or 1),
        "expert_parallel_size": int(getattr(server_args, "ep_size", 1) or 1),
        "enable_dp_attention": int(bool(getattr(server_args, "enable_dp_attention", False))),
    }


def world_gather() -> Callable[[bytes], Sequence[bytes]] | None:
    """The agreement's gather over SGLang's world group (its gloo `cpu_group`), or None
    when the group has one rank: kiln then never calls a collective."""
    from sglang.srt.distributed.parallel_state import get_world_group

    group = get_world_group()
    if int(group.world_size) <= 1:
        return None
    return agreement.torch_gather(group.cpu_group, agreement.timeout_s())
