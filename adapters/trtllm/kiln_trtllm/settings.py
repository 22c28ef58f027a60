"""TensorRT-LLM's settings (`TorchLlmArgs`) as kiln sees them: the fields that change the
captured graphs (fingerprint), what kiln cannot restore yet (refusals), and the pins kiln
applies (none of its own: other plugins may pin any flattened field)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiln.errors import KilnError
from kiln.lifecycle import Pin

# Dotted TorchLlmArgs fields kiln reads (the seam contract names their owners' fields).
FINGERPRINT_FIELDS = (
    "model",
    "dtype",
    "backend",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "max_batch_size",
    "max_num_tokens",
    "max_seq_len",
    "max_beam_width",
    "attn_backend",
    "enable_autotuner",
    "enable_chunked_prefill",
    "cuda_graph_config.batch_sizes",
    "cuda_graph_config.max_batch_size",
    "cuda_graph_config.enable_padding",
    "kv_cache_config.free_gpu_memory_fraction",
    "kv_cache_config.max_tokens",
    "kv_cache_config.tokens_per_block",
    "kv_cache_config.dtype",
)
REFUSAL_FIELDS = (
    "speculative_config",
    "torch_compile_config",
    "enable_sleep",
    "orchestrator_type",
    "enable_attention_dp",
)


class Unsupported(KilnError):
    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("kiln-trtllm cannot restore this configuration: " + "; ".join(reasons))
        self.reasons = list(reasons)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    name = getattr(value, "name", None)  # enums
    return str(name if isinstance(name, str) else value)


def settings_of(llm_args: Any) -> dict[str, object]:
    """The fields kiln reads, flattened to dotted keys with JSON-scalar values."""
    return {f: _scalar(_get(llm_args, f)) for f in (*FINGERPRINT_FIELDS, *REFUSAL_FIELDS)}


def fingerprint_of(llm_args: Any) -> dict[str, Any]:
    return {f"trtllm.{f}": _scalar(_get(llm_args, f)) for f in FINGERPRINT_FIELDS}


def refusals(llm_args: Any) -> list[str]:
    """What kiln-trtllm 0.1 cannot restore, one reason each."""
    reasons = []
    if _get(llm_args, "speculative_config") is not None:
        reasons.append("speculative decoding (a draft engine captures its own graphs)")
    if _get(llm_args, "torch_compile_config") is not None:
        reasons.append("torch_compile_config (piecewise prefill graphs are not restored)")
    if _get(llm_args, "enable_sleep"):
        reasons.append("enable_sleep (virtual-memory pools outside kiln's region)")
    if _scalar(_get(llm_args, "orchestrator_type")) not in (None, "mpi"):
        reasons.append(f"orchestrator_type={_get(llm_args, 'orchestrator_type')!r} (Ray/RPC)")
    if _get(llm_args, "enable_attention_dp"):
        reasons.append("attention data parallelism")
    world = int(_get(llm_args, "tensor_parallel_size") or 1) * int(
        _get(llm_args, "pipeline_parallel_size") or 1
    )
    if world != 1:
        reasons.append(f"{world} GPUs (kiln-trtllm 0.1 restores TP1 only)")
    return reasons


def setting_pins(settings: Mapping[str, object]) -> Sequence[Pin] | None:
    """kiln's own pins on TorchLlmArgs: none yet (the fingerprint covers the graph-shaping
    fields, so a changed setting selects another archive)."""
    return None


def apply_pins(llm_args: Any, pins: Mapping[str, Pin]) -> None:
    """Apply pins (dotted keys) to the settings object."""
    for key, pin in pins.items():
        *owners, name = key.split(".")
        target = llm_args
        for part in owners:
            target = getattr(target, part)
        setattr(target, name, pin.value)
