"""The functions kiln wraps around TensorRT-LLM 1.3.0rc24's PyTorch-backend symbols
(kiln_trtllm.autoload.PATCHES), one per symbol. Each is called as `hook(original, *args,
**kwargs)` and tells kiln's lifecycle driver where startup stands. They import torch only
inside their bodies and act only while this process's driver is active; otherwise they call
TensorRT-LLM's original.

In the worker process, in startup order (`create_py_executor`):

| TensorRT-LLM symbol | kiln |
|---|---|
| py_executor_creator.create_py_executor | start the driver; refusals; pins; device_bound |
| model_engine.PyTorchModelEngine.__init__ | weights_loaded after it (the target engine) |
| _util.KvCacheCreator.try_prepare_estimation | SAVE: the estimation executor starts (region suspended); LOAD: kv_capacity, SAVE's sizing written back, "no estimation" |
| _util.KvCacheCreator.configure_kv_cache_capacity | SAVE: kv_capacity records the measured sizing |
| _util.KvCacheCreator.teardown_managers | SAVE: the estimation executor ends (region resumed) |
| model_engine.PyTorchModelEngine._run_attention_warmup | warmup phase trtllm/attention (run in both modes) |
| model_engine.PyTorchModelEngine._general_warmup | warmup phase trtllm/general before capture, trtllm/memory_pool_prepop after (both run in both modes) |
| model_engine.PyTorchModelEngine._run_autotuner_warmup | warmup phase trtllm/autotuner (run in both modes) |
| model_engine.PyTorchModelEngine._run_cuda_graph_warmup | a capture session; capture_end after it |
| cuda_graph_runner.CUDAGraphRunner.capture | kiln_trtllm.graphs.kiln_capture |
| model_engine.PyTorchModelEngine.warmup | region_close after the final executor's warm-up |

`create_py_executor` starts the final executor's worker last; ready follows it.

Everything the SAVE estimation executor does (its warm-ups, its native graph captures, its
measurement, which starts and stops its worker thread) is TensorRT-LLM's own: kiln reports
none of it, and LOAD never builds that executor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiln import lifecycle
from kiln.lifecycle import Driver, WarmupPhase

from kiln_trtllm import kv
from kiln_trtllm.graphs import SESSION_ATTR, CaptureApi, CaptureSession, kiln_capture
from kiln_trtllm.settings import Unsupported, apply_pins, fingerprint_of, refusals, settings_of

log = logging.getLogger("kiln.trtllm")
_ACTIVE = ("save", "load")

# Warm-ups before the capture window. Each may size buffers the graphs read (the attention
# workspace, MoE/GEMM workspaces, the autotuner's chosen tactics), so LOAD runs them too.
ATTENTION = WarmupPhase("trtllm/attention", skippable_on_load=False)
GENERAL = WarmupPhase("trtllm/general", skippable_on_load=False)
AUTOTUNER = WarmupPhase("trtllm/autotuner", skippable_on_load=False)
# `_general_warmup` again after capture: max-shape forwards that pre-populate torch's cache.
MEMORY_POOL = WarmupPhase("trtllm/memory_pool_prepop", skippable_on_load=False)


@dataclass
class ProcessState:
    """kiln's state in one TensorRT-LLM worker process."""

    driver: Driver | None = None
    llm_args: Any = None
    weights_reported: bool = False
    estimating: bool = False  # SAVE: the throw-away estimation executor is being built
    suspension: contextlib.AbstractContextManager[Any] | None = None
    kv_decided: bool = False
    session: CaptureSession | None = None
    closed: bool = False
    ready: bool = False
    skipped_estimation: bool = False  # LOAD: the estimation executor was not built
    capture_api: Callable[[], CaptureApi] | None = None  # tests stand in for torch
    device: Callable[[], int] | None = None  # tests stand in for torch.cuda.current_device
    driver_options: dict[str, Any] = field(default_factory=dict)  # tests: a fake runtime


STATE = ProcessState()


def reset() -> ProcessState:
    """Forget this process's state (tests; one executor per worker process)."""
    global STATE
    STATE = ProcessState()
    return STATE


def _plugin() -> Any:
    from kiln_trtllm import plugin

    return plugin


def _active(driver: Driver | None) -> bool:
    return driver is not None and driver.mode.value in _ACTIVE


def _reporting() -> Driver | None:
    """The driver, unless kiln is off, the region is closed, or SAVE's estimation executor
    (TensorRT-LLM's own business) is running."""
    driver = STATE.driver
    if driver is None or STATE.closed or STATE.estimating:
        return None
    return driver


def _current_device() -> int:
    if STATE.device is not None:
        return STATE.device()
    import torch

    return int(torch.cuda.current_device())


def _fingerprint() -> dict[str, Any]:
    reasons = refusals(STATE.llm_args)
    if reasons:
        raise Unsupported(reasons)
    return fingerprint_of(STATE.llm_args)


def create_py_executor(original: Callable[..., Any], llm_args: Any, *args: Any, **kw: Any) -> Any:
    """AROUND `create_py_executor(llm_args, ...)`: the driver's life in this worker."""
    if STATE.driver is not None:
        return original(llm_args, *args, **kw)  # one executor per process
    STATE.llm_args = llm_args
    STATE.driver = driver = lifecycle.start("trtllm", adapter=_plugin(), **STATE.driver_options)
    _plugin().bind(_fingerprint)
    if _active(driver):
        apply_pins(llm_args, driver.resolve_pins(settings_of(llm_args), ()))
    # The worker bound its GPU before building the executor; nothing is allocated on it yet.
    # Refusals surface here (the fingerprint hook), so the policy decides.
    driver.device_bound(_current_device())
    executor = original(llm_args, *args, **kw)  # ends with the final executor's start_worker
    if STATE.closed and not STATE.ready:
        STATE.ready = True
        driver.ready()
    return executor


def model_engine_init(original: Callable[..., Any], self: Any, *args: Any, **kw: Any) -> None:
    """AROUND `PyTorchModelEngine.__init__`: the target engine loads its weights inside."""
    original(self, *args, **kw)
    driver = _reporting()
    if driver is None or STATE.weights_reported or getattr(self, "is_draft_model", False):
        return
    STATE.weights_reported = True
    driver.weights_loaded()


def _suspend(driver: Driver) -> None:
    STATE.suspension = driver.suspended()
    STATE.suspension.__enter__()


def _resume() -> None:
    suspension, STATE.suspension = STATE.suspension, None
    if suspension is not None:
        suspension.__exit__(None, None, None)


def try_prepare_estimation(original: Callable[..., Any], self: Any) -> bool:
    """AROUND `KvCacheCreator.try_prepare_estimation`."""
    driver = _reporting()
    if driver is None or STATE.kv_decided:
        return bool(original(self))
    if driver.mode.value == "load":
        ran: list[bool] = []

        def measure() -> dict[str, int]:  # only after a fallback: TensorRT-LLM's own sizing
            ran.append(bool(original(self)))
            return kv.capacity_of(self, ran[0])

        capacity = driver.kv_capacity(measure, keys=kv.KEYS)
        STATE.kv_decided = True
        if ran:
            return ran[0]
        kv.apply(self, capacity)
        STATE.skipped_estimation = bool(capacity["estimated"])
        return False
    estimating = bool(original(self))
    if not _active(driver):
        return estimating
    if not estimating:
        driver.kv_capacity(lambda: kv.capacity_of(self, False), keys=kv.KEYS)
        STATE.kv_decided = True
        return False
    # SAVE: the estimation executor (its small cache, warm-up, native graphs, measurement)
    # runs with the region suspended; LOAD never builds it.
    STATE.estimating = True
    _suspend(driver)
    return True


def configure_kv_cache_capacity(
    original: Callable[..., Any], self: Any, *args: Any, **kw: Any
) -> Any:
    """AROUND `KvCacheCreator.configure_kv_cache_capacity(py_executor)`: SAVE records what
    the estimation measured."""
    driver = STATE.driver
    if driver is None or not STATE.estimating:
        return original(self, *args, **kw)
    result = original(self, *args, **kw)
    measured = kv.capacity_of(self, True)
    driver.kv_capacity(lambda: measured, keys=kv.KEYS)
    STATE.kv_decided = True
    return result


def teardown_managers(original: Callable[..., Any], self: Any, *args: Any, **kw: Any) -> Any:
    """AROUND `KvCacheCreator.teardown_managers`: the estimation cache goes; the region
    resumes for the final cache and executor."""
    try:
        return original(self, *args, **kw)
    finally:
        if STATE.estimating:
            STATE.estimating = False
            _resume()


def _warmup(phase: WarmupPhase, after_capture: WarmupPhase | None = None) -> Callable[..., Any]:
    def hook(original: Callable[..., Any], self: Any, *args: Any, **kw: Any) -> Any:
        driver = _reporting()
        if driver is None or getattr(self, "is_draft_model", False):
            return original(self, *args, **kw)
        done = STATE.session is not None and after_capture is not None
        chosen = after_capture if done and after_capture is not None else phase
        return driver.warmup(chosen, lambda: original(self, *args, **kw))

    hook.__name__ = phase.name.replace("/", "_")
    return hook


attention_warmup = _warmup(ATTENTION)
general_warmup = _warmup(GENERAL, after_capture=MEMORY_POOL)
autotuner_warmup = _warmup(AUTOTUNER)


def run_cuda_graph_warmup(
    original: Callable[..., Any], self: Any, resource_manager: Any, *args: Any, **kw: Any
) -> Any:
    """AROUND `PyTorchModelEngine._run_cuda_graph_warmup`: TensorRT-LLM's loop, with a kiln
    capture session on the engine's graph runner for `capture` to find."""
    driver = _reporting()
    runner = getattr(self, "cuda_graph_runner", None)
    if (
        driver is None
        or not _active(driver)
        or runner is None
        or getattr(self, "is_draft_model", False)
        or getattr(runner, "is_warmup_only", False)  # a warm-up-only pass: no graph
    ):
        return original(self, resource_manager, *args, **kw)
    api = (STATE.capture_api or _torch_api)()
    session = CaptureSession(driver, api)
    setattr(runner, SESSION_ATTR, session)
    STATE.session = session
    try:
        result = original(self, resource_manager, *args, **kw)
    finally:
        runner.__dict__.pop(SESSION_ATTR, None)
    session.end()
    return result


def _torch_api() -> CaptureApi:
    from kiln_trtllm.graphs import torch_capture_api

    return torch_capture_api()


def graph_runner_capture(
    original: Callable[..., Any],
    self: Any,
    key: Any,
    forward_fn: Callable[..., Any],
    initial_inputs: dict[str, Any],
    enable_spec_decode: bool = False,
    postprocess_fn: Callable[..., Any] | None = None,
) -> Any:
    """AROUND `CUDAGraphRunner.capture`: kiln's capture or restore while a session is open."""
    session = getattr(self, "__dict__", {}).get(SESSION_ATTR)
    if session is None or getattr(self, "is_warmup_only", False):
        return original(self, key, forward_fn, initial_inputs, enable_spec_decode, postprocess_fn)
    return kiln_capture(
        session, self, original, key, forward_fn, initial_inputs, enable_spec_decode, postprocess_fn
    )


def model_engine_warmup(
    original: Callable[..., Any], self: Any, resource_manager: Any, *args: Any, **kw: Any
) -> Any:
    """AROUND `PyTorchModelEngine.warmup`: the final executor's warm-up (every graph) is done;
    the region closes before `create_py_executor` starts the worker. If kiln fell back after
    restoring graphs, they are captured again natively."""
    result = original(self, resource_manager, *args, **kw)
    driver = _reporting()
    if driver is None or getattr(self, "is_draft_model", False):
        return result
    driver.region_close()
    STATE.closed = True
    session = STATE.session
    if driver.mode.value == "native" and session is not None and session.restored:
        _native_recapture(self, resource_manager, session)
    return result


def _native_recapture(engine: Any, resource_manager: Any, session: CaptureSession) -> None:
    """Nothing restored stays in use once the policy said native: TensorRT-LLM releases its
    graphs and captures them again itself."""
    session.restored.clear()
    engine._release_cuda_graphs()
    with engine.cuda_graph_runner.allow_capture():
        engine._run_cuda_graph_warmup(resource_manager)
