from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln_workloads import basic, llama
from kiln_workloads.base import Workload

WORKLOADS: dict[str, Callable[..., Workload]] = {
    "matmul": basic.matmul,
    "sdpa": basic.sdpa,
    "compiled": basic.compiled,
    "two_topologies": basic.two_topologies,
    "decode": llama.decode,
    "decode_vllm_sizes": lambda device, **kw: llama.decode(device, sizes=llama.VLLM_SIZES, **kw),
    "decode_small": lambda device, **kw: llama.decode(device, sizes=[1, 2, 4, 8, 16], layers=2),
}


def build(name: str, device: int = 0, **kwargs: Any) -> Workload:
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return WORKLOADS[name](device, **kwargs)
