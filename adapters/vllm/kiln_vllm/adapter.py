"""kiln's hooks for vLLM. Launcher-side hooks run in `kiln run` before vLLM is imported
(importing vLLM takes ~16 s, so nothing here does); the fingerprint hook runs in the worker,
which binds its VllmConfig first (`KilnWorker`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiln.hooks import hookimpl
from kiln.lifecycle import KilnContext, Pin, WarmupAction, WarmupPhase, cache_dirs
from kiln.lifecycle.launch import LaunchContext
from kiln.plugins import AdapterSpec, command_runs, installed_version

ENGINE = "vllm"
WARMUP_KERNELS_PHASE = "vllm/warmup_kernels"
SUPPORTED = ">=0.24,<0.25"

# Environment every vLLM process must see for a restore to be valid (docs/vllm/seams.md).
ENV_PINS = (
    Pin(
        "VLLM_USE_V2_MODEL_RUNNER",
        "1",
        "kiln attaches to the V2 model runner; vLLM silently falls back to V1 for some models",
    ),
    Pin(
        "VLLM_USE_AOT_COMPILE",
        "1",
        "LOAD needs the compiled model from the AOT cache SAVE wrote (PIECEWISE replay runs it)",
    ),
    Pin(
        "VLLM_USE_MEGA_AOT_ARTIFACT",
        "1",
        "LOAD reads the compiled model as one artifact (every piece and the split graph's "
        "execution code) instead of re-splitting the graph and looking each piece up in torch's "
        "caches, seconds of an 8B start (vLLM's default from torch 2.12; tested on 2.11)",
    ),
    Pin(
        "VLLM_USE_STANDALONE_COMPILE",
        "1",
        "the mega AOT artifact is built from standalone compiles",
    ),
    Pin("VLLM_DISABLE_COMPILE_CACHE", "0", "a disabled compile cache recompiles at every start"),
    Pin(
        "VLLM_USE_BREAKABLE_CUDAGRAPH",
        "0",
        "breakable graphs are captured in parts kiln does not key",
    ),
    Pin("VLLM_BATCH_INVARIANT", "0", "batch-invariant mode changes the captured kernels"),
)


def runs_vllm(command: Sequence[str]) -> bool:
    """Whether a `kiln run` command starts vLLM: the `vllm` CLI, `python -m vllm...`, or a
    Python script that imports vllm."""
    return command_runs(command, "vllm", {"vllm"})


class VllmAdapter:
    kiln_adapter = AdapterSpec(
        engine=ENGINE,
        engine_versions=SUPPORTED,
        engine_distribution="vllm",
        summary="vLLM 0.24, V2 model runner: FULL and PIECEWISE graphs restored",
    )

    def __init__(self) -> None:
        self._config: Any = None

    def bind_config(self, vllm_config: Any) -> None:
        """The worker's VllmConfig, read by the fingerprint hook when the GPU is bound."""
        self._config = vllm_config

    @hookimpl
    def kiln_warmup_policy(self, ctx: KilnContext, phase: WarmupPhase) -> WarmupAction | None:
        # vLLM's warmup_kernels loads the Triton kernels its runner launches outside graphs;
        # skipped at LOAD, the first request pays for it (measured: 1.7x native's latency).
        # It runs after every graph, so running it outside the region in both modes keeps
        # the layout identical.
        if phase.name == WARMUP_KERNELS_PHASE and ctx.mode.value in ("save", "load"):
            return WarmupAction.RUN_SUSPENDED
        return None

    @hookimpl
    def kiln_fingerprint(self, ctx: KilnContext) -> dict[str, Any] | None:
        if self._config is None:
            return None
        from kiln_vllm.fingerprint import config_fingerprint
        from kiln_vllm.pieces import piecewise_fingerprint

        fields = config_fingerprint(
            self._config, vllm_version=installed_version("vllm") or "not installed"
        )
        return {**fields, **piecewise_fingerprint()}  # KILN_VLLM_PIECEWISE, either way

    @hookimpl
    def kiln_launch_fingerprint(self, launch: LaunchContext) -> dict[str, str] | None:
        if not runs_vllm(launch.command):
            return None
        return {
            "vllm.version": installed_version("vllm") or "not installed",
            "vllm.torch_version": installed_version("torch") or "not installed",
        }

    @hookimpl
    def kiln_child_env(self, launch: LaunchContext) -> Sequence[Pin] | None:
        if not runs_vllm(launch.command):
            return None
        return (*ENV_PINS, *cache_pins(getattr(launch, "cache_dir", None)))


#: vLLM's caches below kiln's cache directory (vllm/envs.py; flashinfer/jit/env.py): the
#: compile cache with the mega AOT artifact and the Inductor cache vLLM points inside it,
#: FlashInfer's JIT workspace and autotune results.
CACHE_VARIABLES = {"VLLM_CACHE_ROOT": "vllm", "FLASHINFER_WORKSPACE_BASE": "flashinfer"}


def cache_pins(directory: Path | None) -> tuple[Pin, ...]:
    if directory is None:
        return ()
    reason = (
        "kiln owns vLLM's compile caches: SAVE stores them in the archive, LOAD installs them "
        "there (unset it; kiln never writes the user's cache directories)"
    )
    return tuple(cache_dirs.pin(directory, k, sub, reason) for k, sub in CACHE_VARIABLES.items())
