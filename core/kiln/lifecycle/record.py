"""The ``lifecycle`` archive section: decisions SAVE made that LOAD must repeat exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from kiln.errors import ArchiveCorrupt
from kiln.lifecycle.types import WarmupAction
from kiln.schema import Count, Name, SchemaViolation, validated

RECORD_VERSION = 1


@dataclass
class LifecycleRecord:
    engine: str
    kv_capacity: dict[str, int] | None = None
    warmup: dict[str, str] = field(default_factory=dict)  # phase name -> action at SAVE
    graphs: list[str] = field(default_factory=list)  # keys, in capture order

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": RECORD_VERSION,
            "engine": self.engine,
            "kv_capacity": self.kv_capacity,
            "warmup": dict(self.warmup),
            "graphs": list(self.graphs),
        }
        return out

    @classmethod
    def from_json(cls, data: object) -> LifecycleRecord:
        """Validate a section read from an archive (:class:`RecordDoc`); every defect
        names its field."""
        try:
            doc = validated(data, RecordDoc)
        except SchemaViolation as e:
            raise ArchiveCorrupt(f"section 'lifecycle': {e}") from None
        if doc.version != RECORD_VERSION:
            raise ArchiveCorrupt(f"section 'lifecycle': unsupported record version {doc.version!r}")
        kv = None if doc.kv_capacity is None else dict(doc.kv_capacity)
        warmup = {name: action.value for name, action in doc.warmup.items()}
        return cls(doc.engine, kv, warmup, list(doc.graphs))


class RecordDoc(msgspec.Struct, frozen=True):
    """The section's schema. A KV capacity is what the engine sizes its cache with: a
    non-empty object of counts that fit a signed 64-bit integer."""

    version: int
    engine: Name
    warmup: dict[Name, WarmupAction]
    graphs: list[Name]
    kv_capacity: Annotated[dict[Name, Count], msgspec.Meta(min_length=1)] | None = None
