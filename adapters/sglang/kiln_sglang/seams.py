"""The seam contract: every SGLang symbol kiln-sglang attaches to, with what it relies on
(SGLang 0.5.16, read from the release wheel; docs/sglang/adapter.md lists each with its
reason). `check_installed()` imports SGLang and inspects the live objects (kiln runs it
before attaching and refuses to attach when it fails); `check_source(root)` parses an
SGLang source tree without importing it (the CI test, KILN_SGLANG_SOURCE).
"""

from __future__ import annotations

from pathlib import Path

from kiln.seam_contract import Seam, source_sha256
from kiln.seam_contract import check_installed as _check_installed
from kiln.seam_contract import check_source as _check_source

from kiln_sglang.fingerprint import SERVER_ARGS_FIELDS
from kiln_sglang.kv import NOT_RECORDED, POOL_FIELDS

__all__ = ["SEAMS", "Seam", "check_installed", "check_source", "source_sha256"]


def _fields(module: str, cls: str, names: str | tuple[str, ...], why: str) -> tuple[Seam, ...]:
    split = names.split() if isinstance(names, str) else names
    return tuple(Seam(module, f"{cls}.{n}", None, why) for n in split)


# `FullCudaGraphBackend.capture_one` in SGLang 0.5.16, as `source_sha256` reads it. kiln
# re-implements it (kiln_sglang.graphs.kiln_capture_one: the two warm-ups, the capture, the
# stored graph and output). After an SGLang upgrade changes it: review kiln's copy against
# the new source, then update this from the problem message.
CAPTURE_ONE_SHA256 = "24e8fc761a418bd449e60c4aa5e6bf6eba095d31a581bcbbfe102c5d454ef22a"
# `DecodeCudaGraphRunner.capture_one_shape`: what runs before capture_one for each shape,
# which at LOAD runs after kiln re-created the capture window (the live-block guard,
# kiln_sglang.blocks, checks its effect; this hash flags any change to review).
CAPTURE_ONE_SHAPE_SHA256 = "145820eb3809b824f9a8920b45626e4958111393b8f5b9cd3e7a7c93dea2cf01"

_PLUGINS = "sglang.srt.plugins"
_REGISTRY = "sglang.srt.plugins.hook_registry"
_ARGS = "sglang.srt.server_args"
_SCHED = "sglang.srt.managers.scheduler"
_RUNNER = "sglang.srt.model_executor.model_runner"
_PARALLEL = "sglang.srt.distributed.parallel_state"
_KV = "sglang.srt.mem_cache.kv_cache_configurator"
_POOL = "sglang.srt.model_executor.pool_configurator"
_BASE = "sglang.srt.model_executor.runner.base_runner"
_DECODE = "sglang.srt.model_executor.runner.decode_cuda_graph_runner"
_FULL = "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend"
_GRAPH_CONFIG = "sglang.srt.model_executor.cuda_graph_config"

# ServerArgs fields kiln pins or refuses on (kiln_sglang.settings).
_PINNED_OR_REFUSED = (
    "cuda_graph_config cuda_graph_backend_decode cuda_graph_backend_prefill disable_cuda_graph"
    " disable_decode_cuda_graph enable_profile_cuda_graph disable_flashinfer_autotune"
    " enable_memory_saver enable_symm_mem enable_nccl_nvls enable_mscclpp"
    " enable_two_batch_overlap debug_cuda_graph speculative_algorithm enable_lora lora_paths"
    " enable_pdmux elastic_ep_backend"
)

SEAMS: tuple[Seam, ...] = (
    # The plugin mechanism (sglang_plugin).
    Seam(_PLUGINS, "load_plugins", (), "calls kiln's register() in every SGLang process"),
    Seam(_PLUGINS, "GENERAL_PLUGINS_GROUP", None, "the entry point group kiln registers in"),
    Seam(
        _REGISTRY,
        "HookRegistry.register",
        ("cls", "target", "hook", "hook_type", "source"),
        "kiln registers each hook",
    ),
    Seam(_REGISTRY, "HookRegistry.apply_hooks", ("cls",), "kiln applies its hooks itself"),
    Seam(_REGISTRY, "HookRegistry._patched", None, "kiln checks that every hook took"),
    *_fields(_REGISTRY, "HookType", "BEFORE AFTER AROUND", "hook types kiln uses"),
    Seam(
        _REGISTRY,
        "_wrap_fn",
        ("original_fn", "hook", "hook_type"),
        "the calling conventions of kiln's hooks (AROUND: original first; AFTER: result first)",
        contains=(
            "hook(original_fn, *args, **kwargs)",
            "hook(result, *args, **kwargs)",
            "hook(*args, **kwargs)",
        ),
    ),
    # Main process: settings.
    Seam(_ARGS, "ServerArgs.__post_init__", ("self",), "pins before, refusals after"),
    *_fields(_ARGS, "ServerArgs", _PINNED_OR_REFUSED, "pinned or refused (settings)"),
    *_fields(_ARGS, "ServerArgs", SERVER_ARGS_FIELDS, "fingerprint"),
    *_fields(_GRAPH_CONFIG, "CudaGraphConfig", "decode prefill", "the resolved graph config"),
    *_fields(_GRAPH_CONFIG, "PhaseConfig", "backend bs", "the resolved graph config"),
    # Scheduler process: the lifecycle.
    Seam(
        _SCHED,
        "run_scheduler_process",
        None,
        "each scheduler loads plugins, then reports ready when Scheduler.__init__ returns",
        contains=("load_plugins()", "pipe_writer.send(scheduler.get_init_info())"),
    ),
    Seam(
        _SCHED,
        "Scheduler.__init__",
        ("self", "server_args", "port_args", "gpu_id", "tp_rank", "moe_ep_rank", "pp_rank")
        + ("attn_cp_rank", "moe_dp_rank", "dp_rank"),
        "the driver's life: start, then ready after it returns (rank from tp_rank, pp_rank)",
    ),
    Seam(
        _SCHED,
        "Scheduler.init_model_worker",
        ("self",),
        "pools, attention backends, then graphs: kiln's stages follow this order",
        contains=(
            "self.init_memory_pools()",
            "self.init_all_attention_backends()",
            "self.init_all_cuda_graphs()",
        ),
    ),
    Seam(_SCHED, "Scheduler.init_all_cuda_graphs", ("self",), "region close after it"),
    Seam(
        _RUNNER,
        "ModelRunner.__init__",
        None,
        "kiln reads the runner's GPU, config and role",
        sets=("gpu_id", "model_config", "is_draft_worker", "server_args"),
        contains=("self.init_torch_distributed()",),
    ),
    Seam(
        _RUNNER,
        "ModelRunner.init_torch_distributed",
        ("self",),
        "device_bound before it (it sets the device), communicators_ready after",
        sets=("pre_model_load_memory",),
    ),
    Seam(
        _PARALLEL,
        "get_world_group",
        (),
        "the ranks' restore agreement gathers over the world group (kiln_sglang.hooks)",
    ),
    Seam(
        _PARALLEL,
        "GroupCoordinator.__init__",
        None,
        "kiln reads the world group's size and its gloo CPU group",
        sets=("world_size", "cpu_group"),
    ),
    Seam(_RUNNER, "ModelRunner.load_model", ("self",), "weights_loaded after it"),
    Seam(
        _RUNNER,
        "ModelRunner.alloc_memory_pool",
        ("self", "memory_pool_config"),
        "KV sizing happens in the configurator it calls",
        contains=(
            "self.kv_cache_configurator.configure(pre_model_load_memory=self.pre_model_load_memory)",
        ),
    ),
    # KV sizing (kiln_sglang.kv).
    Seam(
        _KV,
        "KVCacheConfigurator.configure",
        ("self", "pre_model_load_memory"),
        "the target worker resolves its pool config here",
        contains=("self._resolve_memory_pool_config(pre_model_load_memory)",),
    ),
    Seam(
        _KV,
        "KVCacheConfigurator._resolve_memory_pool_config",
        ("self", "pre_model_load_memory"),
        "kv_capacity: SAVE records the config, LOAD rebuilds it",
        contains=(
            "self._profile_available_bytes(pre_model_load_memory)",
            "config.mem_fraction_static = self.server_args.mem_fraction_static",
        ),
    ),
    Seam(
        _KV,
        "KVCacheConfigurator._profile_available_bytes",
        ("self", "pre_model_load_memory"),
        "LOAD mirrors its empty_cache (get_available_gpu_memory's default)",
        contains=(
            (
                "get_available_gpu_memory(self.device, self.gpu_id, "
                "distributed=get_world_group().world_size > 1, "
                "cpu_group=get_world_group().cpu_group)"
            ),
        ),
    ),
    *_fields(
        _KV,
        "KVCacheConfigurator",
        "is_draft_worker server_args mambaish_config",
        "kiln reads the configurator's role and model kind",
    ),
    *_fields(_POOL, "MemoryPoolConfig", POOL_FIELDS + NOT_RECORDED, "the recorded KV sizing"),
    # Warm-up and capture (kiln_sglang.graphs).
    Seam(_BASE, "BaseRunner.warmup", ("self",), "warmup phase sglang/kernel_warmup"),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner.capture",
        ("self",),
        "a kiln capture session around SGLang's loop",
        contains=("self._capture_one_stream()",),
    ),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner._capture_one_stream",
        ("self", "stream_idx"),
        "the shapes, largest first (kiln's keys for capture_begin)",
        contains=(
            "reversed(self.capture_bs)",
            "self.capture_one_shape(bs, forward, stream_idx, variant_label)",
        ),
    ),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner.capture_one_shape",
        ("self", "size", "forward", "stream_idx", "variant_label"),
        "the per-shape preparation that runs at LOAD too, then capture_one",
        contains=(
            (
                "self.backend.capture_one(shape_key, run_once, dummies=None, "
                "post_warmup_hook=post_warmup_hook)"
            ),
        ),
        sha256=CAPTURE_ONE_SHAPE_SHA256,
        copy="kiln_sglang.graphs (what LOAD runs before each restore) and kiln_sglang.blocks",
    ),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner._make_graph_key",
        ("self", "size", "stream_idx", "variant_label"),
        "kiln builds the planned shape keys with it",
    ),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner.recapture_if_needed",
        ("self", "forward_batch"),
        "after ready SGLang may capture again: kiln's hooks pass it through",
        contains=("self.backend.cleanup()", "self.capture()"),
    ),
    Seam(
        _DECODE,
        "DecodeCudaGraphRunner.__init__",
        None,
        "kiln reads the runner's backend and hidden-state mode",
        sets=("backend", "capture_hidden_mode"),
    ),
    Seam(
        _BASE,
        "BaseRunner.__init__",
        None,
        "kiln reads each runner's model runner (target or draft)",
        sets=("model_runner",),
    ),
    Seam(
        _FULL,
        "FullCudaGraphBackend.__init__",
        None,
        "the state kiln's capture_one reads and writes",
        sets=(
            "_graphs",
            "_outputs",
            "_pool",
            "_device_module",
            "_tp_group",
            "_capture_stream",
            "_memory_saver_adapter",
        ),
    ),
    Seam(
        _FULL,
        "FullCudaGraphBackend.capture_one",
        ("self", "shape_key", "forward_fn", "dummies", "post_warmup_hook"),
        "kiln's capture_one replaces it while a session is open",
        sha256=CAPTURE_ONE_SHA256,
        copy="kiln_sglang.graphs.kiln_capture_one",
    ),
    Seam(
        _FULL,
        "FullCudaGraphBackend.replay",
        ("self", "shape_key", "static_forward_batch", "**kwargs"),
        "replays the graph kiln installed and returns the output kiln rebuilt",
        contains=("self._graphs[shape_key].replay()", "self._outputs[shape_key]"),
    ),
    Seam(_FULL, "FullCudaGraphBackend.cleanup", ("self",), "native recapture after a fallback"),
    *_fields(
        "sglang.srt.model_executor.runner.shape_key",
        "ShapeKey",
        "size stream_idx variant_label",
        "the archive key of a decode graph",
    ),
    *_fields(
        "sglang.srt.layers.logits_processor",
        "LogitsProcessorOutput",
        "next_token_logits hidden_states",
        "the decode graph's output, rebuilt at LOAD",
    ),
)


def check_installed(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """The contract against the SGLang this process imports."""
    return _check_installed(seams)


def check_source(root: str | Path, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """The contract against an SGLang source tree: `root` holds the `sglang` package
    directory (a checkout's `python/`, or an unpacked wheel)."""
    return _check_source(root, seams)
