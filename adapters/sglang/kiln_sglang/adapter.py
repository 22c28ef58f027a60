"""kiln's hooks for SGLang. Launcher-side hooks run in `kiln run` before SGLang is imported;
the settings hook runs in SGLang's main process (`ServerArgs.__post_init__`); the
fingerprint and region-close hooks run in each scheduler process, which binds its server
arguments and model config first (kiln_sglang.sglang_plugin)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from kiln.errors import KilnError
from kiln.hooks import hookimpl
from kiln.lifecycle import KilnContext, Pin, cache_dirs
from kiln.lifecycle.launch import LaunchContext
from kiln.plugins import AdapterSpec, command_runs, installed_version

from kiln_sglang import blocks
from kiln_sglang.settings import setting_pins

ENGINE = "sglang"
SUPPORTED = "==0.5.16"  # short: `kiln adapters` prints it in an 80-column table
PLUGIN_NAME = "kiln"  # the entry point's name in `sglang.srt.plugins`
log = logging.getLogger("kiln.sglang")

# Environment every SGLang process must see for a restore to be valid
# (docs/sglang/adapter.md, "Pins").
ENV_PINS = (
    Pin(
        "SGLANG_ENABLE_POST_CAPTURE_KV_SIZING",
        "0",
        "it sizes the KV cache after capture from free memory, in an unbacked reservation: "
        "kiln records the KV sizing before capture",
    ),
    Pin(
        "SGLANG_MEMORY_SAVER_CUDA_GRAPH",
        "0",
        "the memory saver would own the graphs' memory, outside kiln's region",
    ),
    Pin(
        "SGLANG_ENABLE_CUDA_GRAPH_DEDUP",
        "0",
        "deduplicated graphs are updated in place after capture; kiln restores each as saved",
    ),
    Pin(
        "SGLANG_JIT_DEEPGEMM_PRECOMPILE",
        "0",
        "the precompile sweep runs on one rank only, inside the first capture, and empties "
        "torch's cache there",
    ),
    Pin("NCCL_GRAPH_REGISTER", "0", "NCCL registers graph buffers on the host at capture"),
    Pin("NCCL_LOCAL_REGISTER", "0", "NCCL registers user buffers on the host at capture"),
)


def runs_sglang(command: Sequence[str]) -> bool:
    """Whether a `kiln run` command starts SGLang: the `sglang` CLI, `python -m sglang...`,
    or a Python script that imports sglang (`sglang.Engine`)."""
    return command_runs(command, "sglang", {"sglang"})


def plugin_allowed(environ: Mapping[str, str]) -> bool:
    """SGLang loads only the plugins `SGLANG_PLUGINS` names, when it is set."""
    allowed = environ.get("SGLANG_PLUGINS", "")
    names = {name.strip() for name in allowed.split(",") if name.strip()}
    return not names or PLUGIN_NAME in names


class SglangAdapter:
    kiln_adapter = AdapterSpec(
        engine=ENGINE,
        engine_versions=SUPPORTED,
        engine_distribution="sglang",
        summary="SGLang 0.5.16: decode graphs (backend full) restored; prefill graphs off",
    )

    def __init__(self) -> None:
        self._fingerprint: Callable[[], dict[str, Any]] | None = None
        self._live_blocks: Callable[[], list[blocks.Block]] | None = None

    def bind(
        self,
        fingerprint: Callable[[], dict[str, Any]],
        live_blocks: Callable[[], list[blocks.Block]] | None,
    ) -> None:
        """The scheduler's fingerprint fields (read when the GPU is bound) and the live-block
        snapshot compared at region close."""
        self._fingerprint = fingerprint
        self._live_blocks = live_blocks

    @hookimpl
    def kiln_pin_settings(
        self, ctx: KilnContext, settings: Mapping[str, object], explicit: Collection[str]
    ) -> Sequence[Pin] | None:
        return setting_pins(settings)

    @hookimpl
    def kiln_fingerprint(self, ctx: KilnContext) -> dict[str, Any] | None:
        if self._fingerprint is None:
            return None
        # A refusal made in the main process under the fallback policy surfaces here, in
        # the device-bound stage, so the scheduler falls back with the reason in its report.
        return self._fingerprint()

    @hookimpl
    def kiln_capture_begin(self, ctx: KilnContext, keys: Sequence[str] | None) -> None:
        # An adapter failure found outside a stage is raised here, so that the driver
        # applies the policy to it (kiln_sglang.hooks.fail_in_stage).
        from kiln_sglang import hooks

        if hooks.STATE.pending is not None:
            raise hooks.STATE.pending
        ctx.note(
            "prefill CUDA graphs are off under kiln (cuda_graph_backend_prefill=disabled): "
            "SGLang's breakable prefill graphs keep Python closures kiln cannot persist"
        )

    @hookimpl
    def kiln_region_close(self, ctx: KilnContext) -> None:
        if self._live_blocks is None or ctx.mode.value not in ("save", "load"):
            return
        if ctx.archive_dir is None:
            raise KilnError("no archive directory is set")
        path = blocks.snapshot_file(Path(ctx.archive_dir), ctx.rank)
        live = self._live_blocks()
        if ctx.mode.value == "save":
            blocks.write(path, live)
        else:
            blocks.compare(blocks.read(path), live)

    @hookimpl
    def kiln_launch_fingerprint(self, launch: LaunchContext) -> dict[str, str] | None:
        if not runs_sglang(launch.command):
            return None
        return {
            "sglang.version": installed_version("sglang") or "not installed",
            "sglang.torch_version": installed_version("torch") or "not installed",
        }

    @hookimpl
    def kiln_child_env(self, launch: LaunchContext) -> Sequence[Pin] | None:
        if not runs_sglang(launch.command):
            return None
        if not plugin_allowed(launch.environ):
            # SGLang would skip kiln's plugin silently and start natively while kiln thinks
            # it saves or loads.
            raise KilnError(
                f"SGLANG_PLUGINS={launch.environ['SGLANG_PLUGINS']!r} does not name kiln's "
                f"plugin {PLUGIN_NAME!r}: SGLang would not load it. Add it, or unset "
                "SGLANG_PLUGINS"
            )
        return (*ENV_PINS, *cache_pins(getattr(launch, "cache_dir", None)))


#: SGLang's JIT and autotune caches below kiln's cache directory (sglang/srt/environ.py,
#: sglang/jit_kernel/utils/compile.py, flashinfer/jit/env.py): FlashInfer autotune results
#: (SGLANG_CACHE_DIR), DeepGEMM's JIT kernels, the sgl-kernel JIT (tvm-ffi) builds,
#: FlashInfer's JIT workspace.
CACHE_VARIABLES = {
    "SGLANG_CACHE_DIR": "sglang",
    "SGLANG_DG_CACHE_DIR": "deep_gemm",
    "TVM_FFI_CACHE_DIR": "tvm-ffi",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",
}


def cache_pins(directory: Path | None) -> tuple[Pin, ...]:
    if directory is None:
        return ()
    reason = (
        "kiln owns SGLang's JIT caches: SAVE stores them in the archive, LOAD installs them "
        "there (unset it; kiln never writes the user's cache directories)"
    )
    return tuple(cache_dirs.pin(directory, k, sub, reason) for k, sub in CACHE_VARIABLES.items())
