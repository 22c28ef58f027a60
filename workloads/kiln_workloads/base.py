from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GraphSpec:
    name: str
    fn: Callable[..., Any]
    inputs: tuple[Any, ...]


@dataclass
class Workload:
    name: str
    graphs: list[GraphSpec]
    # Writes new values into every static input (deterministic in the seed).
    refill: Callable[[int], None]
    warmup: int = 2
    extras: dict[str, Any] = field(default_factory=dict)
