"""The ``lifecycle`` archive section: decisions SAVE made that LOAD must repeat exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiln.errors import ArchiveCorrupt
from kiln.lifecycle.types import WarmupAction

RECORD_VERSION = 1


@dataclass
class LifecycleRecord:
    engine: str
    kv_capacity: dict[str, int] | None = None
    warmup: dict[str, str] = field(default_factory=dict)  # phase name -> action at SAVE
    graphs: list[str] = field(default_factory=list)  # keys, in capture order

    def as_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "engine": self.engine,
            "kv_capacity": self.kv_capacity,
            "warmup": dict(self.warmup),
            "graphs": list(self.graphs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LifecycleRecord:
        """Validate a section read from an archive; every defect names its field."""
        if data.get("version") != RECORD_VERSION:
            raise _corrupt("version", f"unsupported record version {data.get('version')!r}")
        engine = data.get("engine")
        if not isinstance(engine, str):
            raise _corrupt("engine", "not a string")
        kv = data.get("kv_capacity")
        if kv is not None and not _int_map(kv):
            raise _corrupt("kv_capacity", "not an object of integers")
        warmup = data.get("warmup")
        actions = {a.value for a in WarmupAction}
        if not isinstance(warmup, dict) or not all(v in actions for v in warmup.values()):
            raise _corrupt("warmup", "not an object of warmup actions")
        graphs = data.get("graphs")
        if not isinstance(graphs, list) or not all(isinstance(k, str) for k in graphs):
            raise _corrupt("graphs", "not a list of graph keys")
        return cls(engine, kv, dict(warmup), list(graphs))


def _int_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    )


def _corrupt(field_name: str, message: str) -> ArchiveCorrupt:
    return ArchiveCorrupt(f"section 'lifecycle': field {field_name!r}: {message}")
