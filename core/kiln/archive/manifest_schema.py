"""The manifest section's schema (types, ranges, sizes); see :mod:`kiln.schema`.

:meth:`kiln.archive.manifest.Manifest.from_json` applies it first, then checks the relations
between fields (sections exist, the window lies inside the trajectory, groups cover every
graph once)."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

import msgspec

from kiln.archive.library_memory import LibraryMemoryDoc
from kiln.schema import I64, U32, Count, Digest, Name

Positive: TypeAlias = Annotated[int, msgspec.Meta(gt=0, le=(1 << 63) - 1)]
Symbol: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
AllocationKind: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=3)]


class TensorDoc(msgspec.Struct, frozen=True):
    address: Positive
    shape: list[Count]
    strides: list[I64]
    dtype: Name
    nbytes: Count


class BinaryDoc(msgspec.Struct, frozen=True):
    section: Name
    sha256: Digest
    size: Positive
    kind: Name
    source_sha256: Digest | None = None
    source_size: Positive | None = None
    unpruned_size: Positive | None = None
    # Module globals the application obtained at SAVE (kiln.archive.manifest.BinaryEntry.globals).
    globals: Annotated[list[Symbol], msgspec.Meta(max_length=4096)] = []
    nvshmem: bool = False


class GraphDoc(msgspec.Struct, frozen=True):
    name: Name
    section: Name
    nodes: Count
    kernels: Count
    inputs: list[TensorDoc]
    outputs: list[TensorDoc]


class GroupDoc(msgspec.Struct, frozen=True):
    key: Digest
    template: Name
    members: list[Name]
    differing: list[U32]


class FamilyDoc(msgspec.Struct, frozen=True):
    groups: list[Name]
    slots: U32 = 0
    runs: list[list[U32]] = []


class RecipeDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class ManifestDoc(msgspec.Struct, frozen=True):
    device: Annotated[int, msgspec.Meta(ge=0, lt=1 << 16)]
    # (offset, size, kind) of every allocation, in order
    trajectory: list[tuple[Count, Positive, AllocationKind]]
    window: tuple[Count, Count]
    binaries: list[BinaryDoc]
    graphs: list[GraphDoc]
    recipe: dict[str, Any] | None = None
    groups: list[GroupDoc] | None = None
    window_unbacked: list[Count] | None = None
    families: list[FamilyDoc] | None = None
    nvshmem_pes: tuple[Positive, Count] | None = None
    # The communication libraries' slots and mappings (kiln.archive.library_memory).
    library_memory: LibraryMemoryDoc | None = None
