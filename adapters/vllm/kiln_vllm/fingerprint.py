"""The archive fingerprint fields a vLLM engine contributes (docs/vllm/seams.md §8).

Everything that changes the captured graphs or the memory laid out before them: a LOAD
whose fields differ from SAVE's follows the policy (strict stops naming the field).
Read from the worker's VllmConfig when the GPU is bound, before weights load.
"""

from __future__ import annotations

import json
from typing import Any

from kiln.lifecycle.types import FingerprintValue


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def config_fingerprint(config: Any, *, vllm_version: str) -> dict[str, FingerprintValue]:
    model = config.model_config
    cache = config.cache_config
    sched = config.scheduler_config
    par = config.parallel_config
    comp = config.compilation_config
    sizes = comp.cudagraph_capture_sizes
    fields: dict[str, FingerprintValue] = {
        "vllm.version": vllm_version,
        # vLLM's own hash of its configs (model, cache, parallel, compilation, ...): the key
        # of its compile cache. It leaves out the fields below, which kiln adds itself.
        "vllm.config_hash": str(config.compute_hash()),
        "vllm.use_v2_model_runner": bool(config.use_v2_model_runner),
        "vllm.model": str(model.model),
        "vllm.dtype": str(model.dtype),
        "vllm.max_model_len": int(model.max_model_len),
        "vllm.seed": -1 if model.seed is None else int(model.seed),
        "vllm.max_num_seqs": int(sched.max_num_seqs),
        "vllm.max_num_batched_tokens": int(sched.max_num_batched_tokens),
        "vllm.gpu_memory_utilization": float(cache.gpu_memory_utilization),
        "vllm.kv_cache_memory_bytes": int(cache.kv_cache_memory_bytes or 0),
        "vllm.kv_cache_dtype": str(cache.cache_dtype),
        "vllm.block_size": int(cache.block_size or 0),
        "vllm.cudagraph_mode": _name(comp.cudagraph_mode),
        "vllm.capture_sizes": json.dumps(list(sizes) if sizes is not None else None),
        "vllm.compile_mode": _name(comp.mode),
        "vllm.enforce_eager": bool(model.enforce_eager),
        "vllm.tensor_parallel_size": int(par.tensor_parallel_size),
        "vllm.pipeline_parallel_size": int(par.pipeline_parallel_size),
        "vllm.data_parallel_size": int(par.data_parallel_size),
        "vllm.world_size": int(par.world_size),
    }
    return fields
