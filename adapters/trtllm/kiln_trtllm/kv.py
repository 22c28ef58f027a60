"""The KV capacity kiln records at SAVE and replays at LOAD.

TensorRT-LLM sizes its KV cache in `KvCacheCreator` (tensorrt_llm/_torch/pyexecutor/_util.py):
`try_prepare_estimation()` caps `_kv_cache_config.max_tokens` for a small estimation cache
and says whether to estimate; `create_py_executor` then builds a whole throw-away executor
(warm-up and graph capture included), `configure_kv_cache_capacity(py_executor)` measures
peak memory and writes `_kv_cache_config.max_tokens` (V1 manager) and
`_kv_cache_config.max_gpu_total_bytes`, and the final cache and executor are built from
them. kiln records those two fields after the measurement; at LOAD it writes them back and
answers "no estimation", so the final cache and executor are built directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiln.errors import KilnError

FIELDS = ("max_tokens", "max_gpu_total_bytes")
# kiln's capacities are non-negative integers: each field is recorded with whether it is set
# (the engine leaves max_tokens None when the V2 manager sizes by bytes).
KEYS = ("estimated", *FIELDS, *(f"{name}_set" for name in FIELDS))


def capacity_of(creator: Any, estimated: bool) -> dict[str, int]:
    config = creator._kv_cache_config
    capacity = {"estimated": int(estimated)}
    for name in FIELDS:
        value = getattr(config, name, None)
        capacity[name] = 0 if value is None else int(value)
        capacity[f"{name}_set"] = int(value is not None)
    return capacity


def apply(creator: Any, capacity: Mapping[str, int]) -> None:
    """Write SAVE's decision into the creator's KV-cache config (LOAD)."""
    if set(capacity) != set(KEYS):
        raise KilnError(f"the recorded KV capacity has the fields {sorted(capacity)}")
    config = creator._kv_cache_config
    for name in FIELDS:
        setattr(config, name, int(capacity[name]) if capacity[f"{name}_set"] else None)
