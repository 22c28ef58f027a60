"""The seam contract: every TensorRT-LLM symbol kiln-trtllm attaches to, with what it relies
on (TensorRT-LLM 1.3.0rc24's PyTorch backend as far as its source could be read; the files
and their era are in docs/trtllm/adapter.md). `check_installed()` imports TensorRT-LLM and
inspects the live objects; `check_source(root)` parses a TensorRT-LLM source tree (a
checkout, or the Python files of an unpacked wheel) without importing it
(adapters/trtllm/check_contract.py, KILN_TRTLLM_SOURCE).

kiln re-implements no TensorRT-LLM function: it wraps each symbol and calls TensorRT-LLM's
own code, so no seam pins a source hash; the statements kiln's wrappers rely on are pinned
with `contains` instead.
"""

from __future__ import annotations

from pathlib import Path

from kiln.seam_contract import Seam
from kiln.seam_contract import check_installed as _check_installed
from kiln.seam_contract import check_source as _check_source

__all__ = ["SEAMS", "Seam", "check_installed", "check_source", "source_files"]

_PKG = "tensorrt_llm._torch.pyexecutor"
_CREATOR = f"{_PKG}.py_executor_creator"
_ENGINE = f"{_PKG}.model_engine"
_UTIL = f"{_PKG}._util"
_RUNNER = f"{_PKG}.cuda_graph_runner"
_RM = ("self", "resource_manager")

SEAMS: tuple[Seam, ...] = (
    # The worker's executor: driver, settings, device, ready (hooks.create_py_executor).
    Seam(
        _CREATOR,
        "create_py_executor",
        None,
        "the driver's life; the estimation executor is built, measured, torn down, then the "
        "final cache and executor are built, whose worker starts last (ready after it)",
        contains=(
            "estimating_kv_cache = kv_cache_creator.try_prepare_estimation()",
            "kv_cache_creator.configure_kv_cache_capacity(py_executor)",
            "kv_cache_creator.teardown_managers(resources)",
            "kv_cache_creator.build_managers(resources, False)",
            "py_executor.start_worker()",
        ),
    ),
    # Weights (hooks.model_engine_init).
    Seam(_ENGINE, "PyTorchModelEngine.__init__", None, "weights_loaded after it"),
    # KV sizing (hooks.try_prepare_estimation and the two after it; kiln_trtllm.kv).
    Seam(
        _UTIL,
        "KvCacheCreator.try_prepare_estimation",
        ("self",),
        "SAVE: estimation starts (region suspended); LOAD: SAVE's sizing, no estimation",
        # Its answer is the bool create_py_executor branches on (kiln answers False at LOAD).
        # How it caps the estimation cache varies across the 1.3.0rc2x versions read (a plain
        # max_tokens assignment, or a min() with the user's value and a V2-manager byte cap),
        # and kiln does not depend on it: the cap only sizes the throw-away cache.
        contains=("return estimating_kv_cache",),
    ),
    Seam(
        _UTIL,
        "KvCacheCreator.configure_kv_cache_capacity",
        ("self", "py_executor"),
        "SAVE: the measured sizing (max_gpu_total_bytes, and max_tokens for the V1 manager) "
        "is recorded after it",
        contains=("self._kv_cache_config.max_gpu_total_bytes = kv_cache_max_memory",),
    ),
    Seam(
        _UTIL,
        "KvCacheCreator.teardown_managers",
        ("self", "resources"),
        "SAVE: the estimation executor's cache goes; the region resumes after it",
    ),
    # Warm-ups (hooks.*_warmup) and the region's end (hooks.model_engine_warmup).
    Seam(
        _ENGINE,
        "PyTorchModelEngine.warmup",
        _RM,
        "the phases in kiln's order: attention, general, autotuner, capture, memory pool; "
        "region_close after it",
        contains=(
            "self._run_attention_warmup(resource_manager, can_run_general_warmup)",
            "self._run_autotuner_warmup(resource_manager)",
            "self._run_cuda_graph_warmup(resource_manager)",
        ),
    ),
    Seam(
        _ENGINE,
        "PyTorchModelEngine._run_attention_warmup",
        (*_RM, "can_run_general_warmup"),
        "warmup phase trtllm/attention",
    ),
    Seam(
        _ENGINE,
        "PyTorchModelEngine._general_warmup",
        (*_RM, "warmup_requests_configs"),
        "warmup phases trtllm/general and trtllm/memory_pool_prepop",
    ),
    Seam(_ENGINE, "PyTorchModelEngine._run_autotuner_warmup", _RM, "warmup phase trtllm/autotuner"),
    # Capture (hooks.run_cuda_graph_warmup, hooks.graph_runner_capture, kiln_trtllm.graphs).
    Seam(_ENGINE, "PyTorchModelEngine._run_cuda_graph_warmup", _RM, "one capture session"),
    Seam(
        _ENGINE,
        "PyTorchModelEngine._capture_generation_cuda_graphs",
        _RM,
        "largest batch first: the first shape's warm-up sizes what later graphs share",
        contains=("cuda_graph_batch_sizes = sorted(self._cuda_graph_batch_sizes, reverse=True)",),
    ),
    Seam(
        _ENGINE,
        "PyTorchModelEngine._release_cuda_graphs",
        None,
        "a fallback after restoring releases kiln's graphs through it",
    ),
    Seam(_RUNNER, "KeyType", None, "the graph key's fields name kiln's archive keys"),
    Seam(
        _RUNNER,
        "CUDAGraphRunner.__init__",
        ("self", "config"),
        "kiln installs restored graphs in these dicts",
        sets=("graphs", "graph_outputs", "graph_metadata", "memory_pool", "is_warmup_only"),
    ),
    Seam(
        _RUNNER,
        "CUDAGraphRunner.capture",
        ("self", "key", "forward_fn", "initial_inputs", "enable_spec_decode", "postprocess_fn"),
        "one stream capture per call; is_warmup_only runs the warm-ups alone (the first "
        "shape's, before the window); what LOAD rebuilds instead",
        contains=(
            "if self.is_warmup_only:\n    return output",
            "attn_metadata = capture_inputs['attn_metadata']",
            (
                "self.graph_metadata[key] = {'attn_metadata': attn_metadata, 'spec_metadata': "
                "initial_inputs.get('spec_metadata', None)}"
            ),
            "self.graphs[key] = graph",
            "graph_output = make_weak_ref(output)",
            "self.graph_outputs[key] = graph_output",
            "self.memory_pool = graph.pool()",
        ),
    ),
    Seam(
        _RUNNER,
        "CUDAGraphRunner.replay",
        ("self", "key", "current_inputs"),
        "a restored graph replays through graphs[key].replay() and returns graph_outputs[key]",
        contains=(
            "stored_meta = self.graph_metadata[key]",
            "self.graphs[key].replay()",
            "output_ref = self.graph_outputs[key]",
        ),
    ),
    Seam(
        _RUNNER,
        "CUDAGraphRunner.allow_capture",
        ("self",),
        "a fallback after restoring captures again inside it",
    ),
)


def source_files(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """The files of a TensorRT-LLM tree the contract reads, relative to the directory holding
    `tensorrt_llm/` (a checkout's root, or site-packages), in a stable order."""
    return sorted(dict.fromkeys(f"{s.module.replace('.', '/')}.py" for s in seams))


def check_installed(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    return _check_installed(seams)


def check_source(root: str | Path, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    return _check_source(root, seams)
