"""SGLang's settings under kiln: the pins applied to `ServerArgs` before it resolves, and the
features refused once it has resolved (docs/sglang/adapter.md, "Pins" and "Refused").

Pins are raw `ServerArgs` fields, set before `ServerArgs.__post_init__` resolves them; the
settings kiln sees are the raw fields, and a field counts as explicit when the user gave it
a value other than the dataclass default (a user value equal to the default cannot be told
apart, and needs no pin conflict either). The resolved `ServerArgs` is pickled to every
scheduler; no scheduler resolves it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kiln.errors import KilnError
from kiln.lifecycle import Pin

DECODE_BACKEND = "full"
PREFILL_BACKEND = "disabled"
# Set on a resolved ServerArgs that kiln refused under the fallback policy: the schedulers
# (which receive it pickled) fall back in their device-bound stage, naming the reason.
REFUSED_ATTR = "_kiln_refused"

_PINS = (
    Pin(
        "cuda_graph_backend_decode",
        DECODE_BACKEND,
        "kiln restores one torch.cuda.CUDAGraph per decode batch size (backend full)",
    ),
    Pin(
        "cuda_graph_backend_prefill",
        PREFILL_BACKEND,
        "SGLang's default prefill backend (breakable) keeps Python closures between graph "
        "segments, which kiln cannot persist; prefill runs eagerly under kiln",
    ),
    Pin("disable_cuda_graph", False, "kiln restores decode graphs"),
    Pin("disable_decode_cuda_graph", False, "kiln restores decode graphs"),
    Pin(
        "enable_profile_cuda_graph",
        False,
        "the capture profiler runs around SAVE's captures only",
    ),
    Pin(
        "disable_flashinfer_autotune",
        True,
        "the autotune forward runs before capture and its choices must be SAVE's at LOAD",
    ),
    Pin("enable_memory_saver", False, "the memory saver would own graph and KV memory"),
    Pin("enable_symm_mem", False, "symmetric-memory windows are registered outside kiln"),
    Pin("enable_nccl_nvls", False, "NVLS buffers are registered outside kiln"),
    Pin("enable_mscclpp", False, "mscclpp registers graph buffers outside kiln"),
    Pin("enable_two_batch_overlap", False, "two-batch overlap captures are not keyed by kiln"),
    Pin("debug_cuda_graph", False, "it needs the breakable backend"),
)
_TP_PINS = (
    Pin(
        "disable_custom_all_reduce",
        True,
        "custom all-reduce registers the graphs' buffers with the peers over IPC when "
        "capture ends; a restored graph's buffers would not be registered",
    ),
)


def setting_pins(settings: Mapping[str, object]) -> list[Pin]:
    """kiln's pins for SGLang's raw settings (tp_size decides the all-reduce pin)."""
    tp = settings.get("tp_size")
    pins = [pin for pin in _PINS if pin.key in settings]
    if isinstance(tp, int) and tp > 1:
        pins += _TP_PINS
    return pins


def settings_of(server_args: Any) -> tuple[dict[str, object], set[str]]:
    """The raw fields of a `ServerArgs` (a dataclass) before resolution, and those the user
    set to something other than the default."""
    settings: dict[str, object] = {}
    explicit: set[str] = set()
    for field in dataclasses.fields(server_args):
        value = getattr(server_args, field.name, None)
        settings[field.name] = value
        if field.default is not dataclasses.MISSING:
            default: object = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            explicit.add(field.name)  # required fields (model_path) are always the user's
            continue
        try:
            differs = bool(value != default)
        except Exception:  # noqa: BLE001 - no usable comparison: treat it as the user's
            differs = True
        if differs:
            explicit.add(field.name)
    return settings, explicit


def apply_pins(server_args: Any, pins: Mapping[str, Pin]) -> None:
    for key, pin in pins.items():
        value = list(pin.value) if isinstance(pin.value, tuple) else pin.value
        setattr(server_args, key, value)


def refusals(server_args: Any) -> list[str]:
    """What kiln cannot restore in a resolved `ServerArgs`, one reason each."""
    found = []

    def get(name: str) -> Any:
        return getattr(server_args, name, None)

    def on(name: str) -> bool:
        return bool(get(name))

    if get("speculative_algorithm") not in (None, "", "NONE"):
        found.append(f"speculative decoding ({get('speculative_algorithm')}) is not supported")
    if on("enable_lora") or get("lora_paths"):
        found.append("LoRA is not supported")
    if on("enable_pdmux"):
        found.append("pdmux (several graph streams) is not supported")
    if get("elastic_ep_backend") is not None:
        found.append("elastic EP is not supported")
    if get("moe_a2a_backend") not in (None, "none"):
        found.append(
            f"moe_a2a_backend={get('moe_a2a_backend')!r} is not supported yet (DeepEP needs "
            "NVSHMEM re-initialisation in kiln's core)"
        )
    for name in ("pp_size", "dp_size"):
        size = get(name)
        if isinstance(size, int) and size > 1:
            found.append(f"{name}={size} is not supported yet (one scheduler per GPU rank, TP)")
    config = get("cuda_graph_config")
    decode = getattr(getattr(config, "decode", None), "backend", None)
    prefill = getattr(getattr(config, "prefill", None), "backend", None)
    if config is not None and (decode != DECODE_BACKEND or prefill != PREFILL_BACKEND):
        found.append(
            f"the resolved CUDA graph config has decode={decode!r}, prefill={prefill!r}; kiln "
            f"needs decode={DECODE_BACKEND!r}, prefill={PREFILL_BACKEND!r} (a "
            "--cuda-graph-config JSON overrides the per-phase flags kiln pins)"
        )
    return found


class Unsupported(KilnError):
    """The engine was configured with something kiln cannot restore."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("kiln-sglang: " + "; ".join(reasons))
