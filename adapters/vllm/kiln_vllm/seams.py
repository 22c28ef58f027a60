"""The seam contract: every vLLM symbol the adapter attaches to, with the parameters it
expects (vLLM 0.24.0, read from the release; docs/vllm/seams.md §7).

`check_installed()` imports vLLM and inspects the live objects; `check_source(root)` parses a
vLLM source tree without importing it (no torch needed). Both return one problem per symbol
that moved, naming it and what changed; an empty list means every seam is where the adapter
expects it. The adapter refuses to attach when the contract fails, rather than patching
something that changed under it.

Beyond names and parameters, a seam can say what kiln relies on inside a function, read from
its source the same way in both checkers: the instance attributes it assigns (`sets`), the
calls kiln patches around (`contains`), and, where kiln re-implements the function line by
line, a hash of its source (`sha256`): any change there, even one that keeps every name,
means kiln's copy may no longer do what vLLM's does.
"""

from __future__ import annotations

from pathlib import Path

from kiln.seam_contract import Seam, source_sha256
from kiln.seam_contract import check_installed as _check_installed
from kiln.seam_contract import check_source as _check_source

__all__ = ["SEAMS", "Seam", "check_installed", "check_source", "source_sha256"]


def _fields(module: str, cls: str, names: str, why: str) -> tuple[Seam, ...]:
    return tuple(Seam(module, f"{cls}.{n}", None, why) for n in names.split())


# `CudaGraphManager.capture` in vLLM 0.24.0, as `source_sha256` reads it. After a vLLM
# upgrade changes it: review kiln_vllm.graphs.capture_all against the new source, then
# update this from the problem message.
CAPTURE_SHA256 = "6ed0b4d16a8e617a46561ecafdf886d15d011ef167629d96da8a5369dc5e1416"
# `CUDAGraphWrapper.__call__`: kiln_vllm.pieces re-implements which branch it takes (the
# capture branch goes through kiln's driver unless KILN_VLLM_PIECEWISE=0).
WRAPPER_CALL_SHA256 = "ddd25e25454e185c27e5f4ad4ef58cd4f6318126de9336fc7435894d431dc9a1"


_WORKER = "vllm.v1.worker.gpu_worker"
_RUNNER = "vllm.v1.worker.gpu.model_runner"
_GRAPHS = "vllm.v1.worker.gpu.cudagraph_utils"
_OFFLOAD = "vllm.model_executor.offloader.base"
_WRAPPER = "vllm.compilation.cuda_graph"
_FORWARD = "vllm.forward_context"

SEAMS: tuple[Seam, ...] = (
    # Startup: the plugin, then the engine config it patches (P1).
    Seam(
        "vllm.plugins", "load_general_plugins", (), "loads kiln's general plugin in every process"
    ),
    Seam(
        "vllm.engine.arg_utils",
        "EngineArgs.create_engine_config",
        ("self", "usage_context", "headless"),
        "settings pins and worker_cls (patch P1)",
    ),
    Seam("vllm.engine.arg_utils", "EngineArgs.worker_cls", None, "set by patch P1"),
    Seam(
        "vllm.v1.worker.worker_base",
        "WorkerWrapperBase.init_worker",
        ("self", "all_kwargs"),
        "resolves worker_cls by qualified name",
    ),
    # The worker: KilnWorker overrides each stage and reads the worker's state.
    Seam(
        "vllm.v1.worker.worker_base",
        "WorkerBase.__init__",
        None,
        "KilnWorker reads the worker's config and ranks",
        sets=("vllm_config", "parallel_config", "local_rank", "rank"),
    ),
    Seam(
        _WORKER,
        "Worker.__init__",
        ("self", "vllm_config", "local_rank", "rank", "distributed_init_method")
        + ("is_driver_worker",),
        "KilnWorker subclasses the GPU worker",
    ),
    Seam(
        _WORKER,
        "Worker.init_device",
        ("self",),
        "device bound; kiln binds the device vLLM is about to bind (kiln_vllm.ranks)",
        sets=("model_runner",),
        contains=(
            "dp_local_rank = self.parallel_config.data_parallel_rank_local",
            "dp_local_rank = self.parallel_config.data_parallel_index",
            "self.local_rank += dp_local_rank * tp_pp_world_size",
        ),
    ),
    Seam(_WORKER, "Worker.load_model", ("self", "load_dummy_weights"), "weights loaded"),
    Seam(_WORKER, "Worker.determine_available_memory", ("self",), "KV capacity"),
    Seam(
        _WORKER,
        "Worker.initialize_from_config",
        ("self", "kv_cache_config"),
        "installs kiln's graph manager",
    ),
    Seam(
        _WORKER,
        "Worker.compile_or_warm_up_model",
        ("self",),
        "capture and ready; kiln replaces these callees for the duration",
        contains=(
            "kernel_warmup(self)",
            "self.model_runner.capture_model()",
            "warmup_kernels(self.model_runner, self.execute_model, self.sample_tokens)",
            "freeze_gc_heap()",
        ),
    ),
    # Module globals compile_or_warm_up_model calls, replaced for its duration (P2-P4).
    Seam(_WORKER, "kernel_warmup", None, "warmup phase (patch P2)"),
    Seam(_WORKER, "warmup_kernels", None, "warmup phase (patch P3)"),
    Seam(_WORKER, "freeze_gc_heap", None, "ends kiln's startup freeze first (patch P4)"),
    # The MoE workspace kiln places inside the region (kiln_vllm.workspace).
    Seam("vllm.v1.worker.workspace", "is_workspace_manager_initialized", (), "workspace placement"),
    Seam("vllm.v1.worker.workspace", "current_workspace_manager", (), "workspace placement"),
    Seam(
        "vllm.v1.worker.workspace",
        "WorkspaceManager.__init__",
        ("self", "device", "num_ubatches"),
        "workspace placement: the slots kiln reads and replaces",
        sets=("_device", "_current_workspaces", "_locked"),
    ),
    Seam(
        "vllm.v1.worker.workspace", "WorkspaceManager.is_locked", ("self",), "workspace placement"
    ),
    Seam(
        "vllm.v1.worker.workspace",
        "WorkspaceManager._ensure_workspace_size",
        ("self", "required_bytes"),
        "workspace placement: a slot is one uint8 tensor of the size in bytes, grown in place",
        contains=(
            (
                "self._current_workspaces[ubatch_id] = torch.empty((required_bytes,), "
                "dtype=torch.uint8, device=self._device)"
            ),
        ),
    ),
    Seam(
        "vllm.v1.worker.gpu.warmup",
        "warmup_kernels",
        ("model_runner", "worker_execute_model", "worker_sample_tokens"),
        "the V2 runner's JIT warmup",
    ),
    Seam(
        "vllm.v1.worker.gpu.warmup",
        "run_mixed_prefill_decode_warmup",
        ("model_runner", "worker_execute_model", "worker_sample_tokens", "num_tokens")
        + ("mixed_step_context", "req_id_prefix"),
        "LOAD's first-request warmup (kiln_vllm.warmups)",
    ),
    Seam(
        "vllm.model_executor.warmup.kernel_warmup",
        "kernel_warmup",
        ("worker",),
        "FlashInfer autotune",
    ),
    # The V2 model runner.
    Seam(
        _RUNNER,
        "GPUModelRunner.__init__",
        None,
        "kiln installs its capture loop on the runner's graph manager",
        sets=("cudagraph_manager", "max_num_tokens", "vllm_config"),
    ),
    Seam(_RUNNER, "GPUModelRunner.capture_model", ("self",), "region close"),
    Seam(_RUNNER, "GPUModelRunner.profile_run", ("self",), "profiling phase"),
    Seam(
        _RUNNER,
        "GPUModelRunner._dummy_run",
        ("self", "num_tokens", "*args", "skip_attn", "uniform_decode", "skip_eplb")
        + ("is_profile", "**kwargs"),
        "LOAD's first model call (loads the compiled model) instead of the profiling run",
    ),
    # FULL graphs: kiln's capture loop (kiln_vllm.graphs) sits between these two classes.
    Seam(
        _GRAPHS,
        "CudaGraphManager.__init__",
        None,
        "state kiln's capture loop reads and writes",
        sets=("vllm_config", "device", "graphs", "pool", "_capture_descs", "_graphs_captured"),
    ),
    Seam(
        _GRAPHS,
        "CudaGraphManager.capture",
        ("self", "create_forward_fn", "progress_bar_desc"),
        "kiln's capture loop replaces it",
        sha256=CAPTURE_SHA256,
        copy="kiln_vllm.graphs.capture_all",
    ),
    Seam(
        _GRAPHS,
        "CudaGraphManager.dispatch",
        ("self", "num_reqs", "num_tokens", "uniform_token_count", "num_active_loras"),
        "FULL graph dispatch",
    ),
    Seam(_GRAPHS, "CudaGraphManager.run_fullgraph", ("self", "desc"), "FULL replay"),
    Seam(
        _GRAPHS,
        "ModelCudaGraphManager.__init__",
        None,
        "the FULL graphs' output, checked at LOAD",
        sets=("hidden_states",),
    ),
    Seam(
        _GRAPHS,
        "ModelCudaGraphManager.capture",
        ("self", "model", "model_state", "input_buffers", "intermediate_tensors")
        + ("block_tables", "attn_groups", "kv_cache_config", "has_lora")
        + ("use_aux_hidden_state_outputs", "lora_capture_hook", "progress_bar_desc"),
        "hands create_forward_fn to the base capture, which kiln's loop replaces",
        contains=("return super().capture(create_forward_fn, progress_bar_desc)",),
    ),
    Seam(_GRAPHS, "AttentionStatePair", None, "capture's result per descriptor"),
    *_fields(
        _GRAPHS,
        "BatchExecutionDescriptor",
        "num_tokens num_reqs uniform_token_count num_active_loras",
        "the archive key of a FULL graph",
    ),
    *_fields("vllm.config.compilation", "CUDAGraphMode", "NONE PIECEWISE FULL", "capture modes"),
    Seam("vllm.distributed.parallel_state", "graph_capture", ("device",), "capture context"),
    Seam(_OFFLOAD, "get_offloader", (), "offloader around each FULL capture"),
    Seam(_OFFLOAD, "BaseOffloader.sync_prev_onload", ("self",), "before each FULL capture"),
    Seam(_OFFLOAD, "BaseOffloader.join_after_forward", ("self",), "inside each FULL capture"),
    # PIECEWISE graphs.
    Seam(
        _WRAPPER,
        "CUDAGraphWrapper.__init__",
        ("self", "runnable", "vllm_config", "runtime_mode", "cudagraph_options"),
        "PIECEWISE wrapper",
        sets=("runnable", "runtime_mode", "concrete_cudagraph_entries"),
    ),
    Seam(
        _WRAPPER,
        "CUDAGraphWrapper.__call__",
        ("self", "*args", "**kwargs"),
        "PIECEWISE capture (its capture branch goes through kiln unless KILN_VLLM_PIECEWISE=0)",
        sha256=WRAPPER_CALL_SHA256,
        copy="kiln_vllm.pieces.PieceRouter.call",
    ),
    Seam(_WRAPPER, "CUDAGraphWrapper._all_instances", None, "the wrappers kiln switches"),
    *_fields(
        _WRAPPER,
        "CUDAGraphEntry",
        "batch_descriptor cudagraph output input_addresses",
        "PIECEWISE entries LOAD installs",
    ),
    *_fields(
        _FORWARD,
        "BatchDescriptor",
        "num_tokens num_reqs uniform has_lora num_active_loras",
        "the archive key of a PIECEWISE graph",
    ),
    *_fields(
        _FORWARD,
        "ForwardContext",
        "cudagraph_runtime_mode batch_descriptor",
        "which branch a PIECEWISE wrapper takes",
    ),
    Seam(_FORWARD, "get_forward_context", (), "which branch a PIECEWISE wrapper takes"),
    Seam(_FORWARD, "is_forward_context_available", (), "which branch a PIECEWISE wrapper takes"),
    Seam(
        "vllm.compilation.piecewise_backend",
        "PiecewiseBackend.__init__",
        None,
        "the name of a PIECEWISE piece",
        sets=("vllm_backend", "submod_name", "piecewise_compile_index"),
    ),
    Seam(
        "vllm.compilation.backends",
        "VllmBackend.__init__",
        None,
        "the name of a PIECEWISE piece",
        sets=("prefix",),
    ),
    Seam(
        "vllm.platforms.cuda",
        "CudaPlatformBase.get_static_graph_wrapper_cls",
        ("cls",),
        "kiln's PIECEWISE wrapper class (patch P4)",
    ),
    Seam(
        "vllm.compilation.monitor",
        "set_cudagraph_capturing_enabled",
        ("enabled",),
        "no capture after LOAD",
    ),
    # Every config field kiln_vllm.fingerprint reads.
    Seam("vllm.config.vllm", "VllmConfig.compute_hash", ("self",), "fingerprint"),
    *_fields(
        "vllm.config.vllm",
        "VllmConfig",
        "model_config cache_config scheduler_config parallel_config compilation_config"
        " use_v2_model_runner",
        "fingerprint",
    ),
    *_fields(
        "vllm.config.model",
        "ModelConfig",
        "model dtype max_model_len seed enforce_eager",
        "fingerprint",
    ),
    *_fields(
        "vllm.config.cache",
        "CacheConfig",
        "gpu_memory_utilization kv_cache_memory_bytes cache_dtype block_size",
        "fingerprint",
    ),
    *_fields(
        "vllm.config.scheduler",
        "SchedulerConfig",
        "max_num_seqs max_num_batched_tokens",
        "fingerprint",
    ),
    *_fields(
        "vllm.config.parallel",
        "ParallelConfig",
        "tensor_parallel_size pipeline_parallel_size data_parallel_size world_size",
        "fingerprint",
    ),
    *_fields(
        "vllm.config.compilation",
        "CompilationConfig",
        "cudagraph_capture_sizes cudagraph_mode mode",
        "fingerprint",
    ),
    Seam(
        "vllm.config.compilation",
        "CompilationConfig.max_cudagraph_capture_size",
        None,
        "the first-request warmup stays within the capture sizes",
    ),
)


# --- what a function's source holds (both checkers) ----------------------------------------


def check_installed(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """The contract against the vLLM this process imports."""
    return _check_installed(seams)


def check_source(root: str | Path, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """The contract against a vLLM source tree: `root` holds the `vllm` package directory
    (a checkout, or an unpacked wheel)."""
    return _check_source(root, seams)
