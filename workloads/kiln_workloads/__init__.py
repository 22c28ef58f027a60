"""Small GPU workloads for the demo, the GPU tests and the benchmarks.

Each builds its weights and static inputs deterministically (the same allocations in every
process), exposes the callables to capture, and can refill its inputs with fresh values.
"""

from __future__ import annotations

from kiln_workloads.base import Workload
from kiln_workloads.registry import WORKLOADS, build

__all__ = ["WORKLOADS", "Workload", "build"]
