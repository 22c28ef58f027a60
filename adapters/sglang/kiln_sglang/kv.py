"""SGLang's KV sizing as a kiln KV capacity (`KVCacheConfigurator._resolve_memory_pool_config`).

SGLang samples free memory (no profiling forward) and resolves a `MemoryPoolConfig` of
integers. SAVE records them; LOAD rebuilds the same config without sampling. Optional fields
that SGLang leaves at None are recorded as 0 with a companion `<field>.set` of 0 (a kiln
capacity holds counts only). `mem_fraction_static` is not recorded: SGLang copies it from
the server arguments, which the fingerprint holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kiln.errors import KilnError

# MemoryPoolConfig's integer fields in SGLang 0.5.16, in declaration order.
POOL_FIELDS = (
    "max_total_num_tokens",
    "max_running_requests",
    "full_max_total_num_tokens",
    "swa_max_total_num_tokens",
    "c4_max_total_num_tokens",
    "c128_max_total_num_tokens",
    "c4_state_pool_size",
    "c128_state_pool_size",
)
NOT_RECORDED = ("mem_fraction_static",)
KEYS = tuple(k for f in POOL_FIELDS for k in (f, f"{f}.set"))


def check_fields(config_class: type) -> None:
    """A MemoryPoolConfig with a field kiln does not know would be rebuilt without it."""
    names = tuple(f.name for f in dataclasses.fields(config_class))
    unknown = [n for n in names if n not in POOL_FIELDS and n not in NOT_RECORDED]
    missing = [n for n in POOL_FIELDS if n not in names]
    if unknown or missing:
        raise KilnError(
            f"SGLang's MemoryPoolConfig has the fields {list(names)}; kiln records "
            f"{list(POOL_FIELDS)} (unknown: {unknown}, missing: {missing})"
        )


def capacity_of(config: Any) -> dict[str, int]:
    """The kiln capacity of a resolved MemoryPoolConfig."""
    check_fields(type(config))
    capacity: dict[str, int] = {}
    for name in POOL_FIELDS:
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise KilnError(f"SGLang's MemoryPoolConfig.{name} is {value!r}, not a count")
        if value is not None and value < 0:
            raise KilnError(f"SGLang's MemoryPoolConfig.{name} is negative ({value})")
        capacity[name] = 0 if value is None else value
        capacity[f"{name}.set"] = 0 if value is None else 1
    return capacity


def config_of(
    capacity: Mapping[str, int], config_class: Callable[..., Any], mem_fraction_static: float
) -> Any:
    """The MemoryPoolConfig SAVE resolved, rebuilt from its kiln capacity."""
    values: dict[str, Any] = {}
    for name in POOL_FIELDS:
        is_set = capacity[f"{name}.set"]
        if is_set not in (0, 1):
            raise KilnError(f"the recorded KV capacity has {name}.set={is_set}, not 0 or 1")
        values[name] = capacity[name] if is_set else None
    return config_class(**values, mem_fraction_static=mem_fraction_static)
