"""The archive fingerprint of one SGLang scheduler: every setting that changes the decode
graphs, the KV sizing or the allocations before the capture window."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Mapping
from typing import Any

from kiln.errors import KilnError

# ServerArgs fields, read after resolution (the schedulers receive the resolved object).
SERVER_ARGS_FIELDS = (
    "model_path",
    "revision",
    "dtype",
    "kv_cache_dtype",
    "quantization",
    "page_size",
    "context_length",
    "attention_backend",
    "prefill_attention_backend",
    "decode_attention_backend",
    "sampling_backend",
    "mem_fraction_static",
    "max_total_tokens",
    "max_running_requests",
    "chunked_prefill_size",
    "tp_size",
    "pp_size",
    "dp_size",
    "ep_size",
    "enable_dp_attention",
    "moe_a2a_backend",
    "deepep_mode",
    "moe_runner_backend",
    "enable_torch_compile",
    "torch_compile_max_bs",
    "enable_return_hidden_states",
    "disable_custom_all_reduce",
)
# Environment the schedulers run with that changes what is loaded or captured. SGLang sets
# CUDA_MODULE_LOADING and the NCCL variables itself before it spawns the schedulers.
ENV_FIELDS = ("CUDA_MODULE_LOADING", "NCCL_CUMEM_ENABLE", "NCCL_NVLS_ENABLE")
DISTRIBUTIONS = ("sglang", "sglang-kernel", "flashinfer-python", "sgl-deep-gemm", "torch")


def scalar(value: Any) -> str | int | float | bool | None:
    """A JSON scalar for a fingerprint field (sequences joined, the rest as text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def model_config_hash(hf_config: Any) -> str:
    """SHA-256 of the model's configuration (transformers' `to_dict`, keys sorted)."""
    to_dict = getattr(hf_config, "to_dict", None)
    data = to_dict() if callable(to_dict) else vars(hf_config)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def scheduler_fingerprint(
    server_args: Any, model_config: Any, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Fields for `kiln_fingerprint`, namespaced `sglang.`."""
    environ = os.environ if environ is None else environ
    fields: dict[str, Any] = {}
    for name in DISTRIBUTIONS:
        fields[f"sglang.dist.{name}"] = _version(name)
    fields["sglang.version"] = _version("sglang")
    for name in SERVER_ARGS_FIELDS:
        fields[f"sglang.{name}"] = scalar(getattr(server_args, name, None))
    config = getattr(server_args, "cuda_graph_config", None)
    for phase in ("decode", "prefill"):
        phase_config = getattr(config, phase, None)
        fields[f"sglang.cuda_graph.{phase}.backend"] = scalar(
            getattr(phase_config, "backend", None)
        )
        fields[f"sglang.cuda_graph.{phase}.bs"] = scalar(getattr(phase_config, "bs", None))
    if model_config is None:
        raise KilnError("kiln-sglang: the model config is not known when the GPU is bound")
    fields["sglang.model_config_sha256"] = model_config_hash(model_config.hf_config)
    fields["sglang.model_dtype"] = scalar(getattr(model_config, "dtype", None))
    fields["sglang.context_len"] = scalar(getattr(model_config, "context_len", None))
    for name in ENV_FIELDS:
        fields[f"sglang.env.{name}"] = environ.get(name)
    return fields
