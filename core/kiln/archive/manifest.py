"""The archive's manifest: which sections hold which graphs and binaries, the allocation
trajectory, and the capture window. Validated field by field on read: an archive is
untrusted input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.archive.jsonsec import dump_json
from kiln.archive.library_memory import LibraryMemory
from kiln.archive.manifest_schema import BinaryDoc, FamilyDoc, GroupDoc, ManifestDoc, TensorDoc
from kiln.errors import ArchiveCorrupt
from kiln.graphs.tensors import TensorSpec
from kiln.schema import SchemaViolation, validated

MANIFEST = "manifest"
FINGERPRINT = "fingerprint"


@dataclass(frozen=True)
class BinaryEntry:
    section: str
    sha256: str
    size: int
    kind: str
    # Set when the section holds the device's cubin taken out of a fatbin (kiln.binaries.fatbin):
    # the SHA-256 and size of the fatbin the application loaded, by which LOAD finds the
    # process's own copy.
    source_sha256: str | None = None
    source_size: int | None = None
    # Set when the section holds a pruned cubin (kiln.binaries.cubin_prune): the size of the whole
    # cubin it was cut from. The source fields then name the image the application loaded.
    unpruned_size: int | None = None
    # Module globals (__device__ / __constant__ symbols) whose addresses the application
    # obtained at SAVE: it may have written them, so LOAD launches this binary's kernels only
    # from the application's own loaded module, never from a fresh copy.
    globals: tuple[str, ...] = ()
    # The binary holds NVSHMEM device state: LOAD initialises kiln's copy of it through the
    # process's NVSHMEM host library once NVSHMEM bootstrapped (kiln.graphs.nvshmem).
    nvshmem: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
        }
        if self.source_sha256 is not None:
            out["source_sha256"] = self.source_sha256
            out["source_size"] = self.source_size
        if self.unpruned_size is not None:
            out["unpruned_size"] = self.unpruned_size
        if self.globals:
            out["globals"] = list(self.globals)
        if self.nvshmem:
            out["nvshmem"] = True
        return out

    @property
    def loaded_as(self) -> tuple[str, int]:
        """(SHA-256, size) of the image the application itself loaded."""
        if self.source_sha256 is None or self.source_size is None:
            return self.sha256, self.size
        return self.source_sha256, self.source_size


@dataclass(frozen=True)
class GraphEntry:
    name: str
    section: str
    nodes: int
    kernels: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(frozen=True)
class GroupEntry:
    """Graphs one instantiated template serves: equal topology signatures (sha256 `key`);
    members differ from the template only in `differing[i]` nodes' parameters."""

    key: str
    template: str
    members: list[str]
    differing: list[int]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "template": self.template,
            "members": self.members,
            "differing": self.differing,
        }


@dataclass(frozen=True)
class FamilyEntry:
    """Topology groups that share one merged template, planned at SAVE and checked at LOAD
    (docs/restore.md). `groups` names each group by its template graph. A merged family
    also gives its template's node count (`slots`) and, per group, where its nodes sit:
    `runs[i]` holds flat (node, slot, count) triples, nodes [node, node + count) in slots
    [slot, slot + count). A family of one group has neither."""

    groups: list[str]
    slots: int = 0
    runs: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        merged = {"slots": self.slots, "runs": self.runs} if len(self.groups) > 1 else {}
        return {"groups": self.groups, **merged}


@dataclass(frozen=True)
class Manifest:
    device: int
    trajectory: list[tuple[int, int, int]]
    window: tuple[int, int]
    binaries: list[BinaryEntry]
    graphs: list[GraphEntry]
    # How to re-run the SAVE program (e.g. {"kind": "workload", "workload": "decode"}), so
    # that `kiln verify --gpu` can restore the archive in a fresh process; optional.
    recipe: Mapping[str, Any] | None = None
    groups: list[GroupEntry] | None = None
    # Window allocations that SAVE had freed by the time it wrote the archive and that no
    # graph points into (warmup activations between captures): LOAD only steps over their
    # addresses instead of backing them all at once.
    window_unbacked: list[int] | None = None
    # Which groups share a merged template, as SAVE planned it (LOAD checks the plan rather
    # than aligning the groups itself); absent: LOAD plans.
    families: list[FamilyEntry] | None = None
    # (PE count, this process's PE) of NVSHMEM at SAVE, when binaries carry NVSHMEM state and
    # the SAVE process had NVSHMEM bootstrapped; LOAD runs with the same.
    nvshmem_pes: tuple[int, int] | None = None
    # The communication libraries' slots of the region and their mappings at SAVE; LOAD
    # checks them before the first replay (kiln.graphs.library_memory).
    library_memory: LibraryMemory | None = None

    def __post_init__(self) -> None:
        if self.recipe is not None:
            object.__setattr__(self, "recipe", checked_recipe(self.recipe))

    def to_json(self) -> dict[str, Any]:
        recipe = {} if self.recipe is None else {"recipe": dict(self.recipe)}
        groups = {} if self.groups is None else {"groups": [g.to_json() for g in self.groups]}
        unbacked = {} if self.window_unbacked is None else {"window_unbacked": self.window_unbacked}
        pes = {} if self.nvshmem_pes is None else {"nvshmem_pes": list(self.nvshmem_pes)}
        libraries = (
            {} if self.library_memory is None else {"library_memory": self.library_memory.to_json()}
        )
        families = (
            {} if self.families is None else {"families": [f.to_json() for f in self.families]}
        )
        return {
            **recipe,
            **groups,
            **families,
            **unbacked,
            **pes,
            **libraries,
            "device": self.device,
            "trajectory": [list(t) for t in self.trajectory],
            "window": list(self.window),
            "binaries": [b.to_json() for b in self.binaries],
            "graphs": [
                {
                    "name": g.name,
                    "section": g.section,
                    "nodes": g.nodes,
                    "kernels": g.kernels,
                    "inputs": [s.to_json() for s in g.inputs],
                    "outputs": [s.to_json() for s in g.outputs],
                }
                for g in self.graphs
            ],
        }

    @classmethod
    def from_json(cls, d: object, sections: set[str]) -> Manifest:
        """The manifest read from an archive: its schema (:mod:`kiln.archive.manifest_schema`)
        first, then the relations between its fields; :class:`ArchiveCorrupt` naming the
        field on any defect."""
        try:
            doc = validated(d, ManifestDoc)
        except SchemaViolation as e:
            raise ArchiveCorrupt(f"manifest: {e}") from None
        traj = list(doc.trajectory)
        window = doc.window
        if not window[0] <= window[1] <= len(traj):
            raise _fail("capture window lies outside the trajectory")
        binaries = [_binary(b, sections) for b in doc.binaries]
        graphs = []
        names: set[str] = set()
        for g in doc.graphs:
            if g.name in names:
                raise _fail(f"graph {g.name!r} appears twice")
            names.add(g.name)
            if g.section not in sections:
                raise _fail(f"graph {g.name!r} refers to missing section {g.section!r}")
            inputs = [_tensor(s, f"input of {g.name!r}") for s in g.inputs]
            outputs = [_tensor(s, f"output of {g.name!r}") for s in g.outputs]
            graphs.append(GraphEntry(g.name, g.section, g.nodes, g.kernels, inputs, outputs))
        recipe = None
        if doc.recipe is not None:
            try:
                recipe = checked_recipe(doc.recipe)
            except (TypeError, ValueError) as e:
                raise _fail(f"bad recipe ({e})") from None
        groups = None if doc.groups is None else _groups(doc.groups, names)
        families = None
        if doc.families is not None:
            if groups is None:
                raise _fail("families without topology groups")
            families = _families(doc.families, groups)
        unbacked = doc.window_unbacked
        if unbacked is not None and (
            unbacked != sorted(set(unbacked))
            or any(not window[0] <= i < window[1] for i in unbacked)
        ):
            raise _fail("window_unbacked must list window allocations once, in order")
        pes = doc.nvshmem_pes
        if pes is not None and not pes[1] < pes[0]:
            raise _fail("nvshmem_pes: the PE is not below the PE count")
        libraries = None
        if doc.library_memory is not None:
            libraries = LibraryMemory.from_doc(doc.library_memory)
            libraries.check_graphs([g.nodes for g in graphs])
        return cls(
            doc.device,
            traj,
            window,
            binaries,
            graphs,
            recipe=recipe,
            groups=groups,
            window_unbacked=None if unbacked is None else list(unbacked),
            families=families,
            nvshmem_pes=None if pes is None else (pes[0], pes[1]),
            library_memory=libraries,
        )


def _fail(what: str) -> ArchiveCorrupt:
    return ArchiveCorrupt(f"manifest: {what}")


def _binary(b: BinaryDoc, sections: set[str]) -> BinaryEntry:
    if b.section not in sections:
        raise _fail(f"binary entry {b.section!r} is invalid or its section is missing")
    if (b.source_sha256 is None) != (b.source_size is None):
        raise _fail(f"binary entry {b.section!r} has an invalid source fatbin")
    if b.unpruned_size is not None and (b.unpruned_size <= b.size or b.source_sha256 is None):
        raise _fail(f"binary entry {b.section!r} claims an impossible unpruned size")
    return BinaryEntry(
        b.section,
        b.sha256,
        b.size,
        b.kind,
        b.source_sha256,
        b.source_size,
        b.unpruned_size,
        tuple(b.globals),
        b.nvshmem,
    )


def _tensor(t: TensorDoc, what: str) -> TensorSpec:
    spec = TensorSpec(t.address, tuple(t.shape), tuple(t.strides), t.dtype, t.nbytes)
    if not spec.restorable():
        raise _fail(f"{what} has an unknown dtype or mismatched strides")
    return spec


def _groups(raw: list[GroupDoc], graph_names: set[str]) -> list[GroupEntry]:
    groups = []
    seen: set[str] = set()
    for g in raw:
        entry = GroupEntry(g.key, g.template, list(g.members), list(g.differing))
        if len(entry.members) != len(entry.differing):
            raise _fail(f"topology group {entry.key!r} is malformed")
        if entry.template not in entry.members or not set(entry.members) <= graph_names:
            raise _fail(f"topology group {entry.key!r} names unknown graphs")
        if seen & set(entry.members):
            raise _fail("a graph belongs to two topology groups")
        seen.update(entry.members)
        groups.append(entry)
    if seen != graph_names:
        raise _fail("topology groups do not cover every graph")
    return groups


def _families(raw: list[FamilyDoc], groups: list[GroupEntry]) -> list[FamilyEntry]:
    """The recorded families, well-formed and covering each group once; whether their slot
    numberings keep the merging rules is the native check's (kiln._native.GraphSet)."""
    templates = {g.template for g in groups}
    seen: set[str] = set()
    families = []
    for f in raw:
        names = list(f.groups)
        if (
            not names
            or not set(names) <= templates
            or seen & set(names)
            or len(set(names)) < len(names)
        ):
            raise _fail("a family names unknown or already placed groups")
        seen.update(names)
        if len(names) == 1:
            families.append(FamilyEntry(names))
            continue
        runs = [list(r) for r in f.runs]
        if f.slots == 0 or len(runs) != len(names) or any(len(r) % 3 for r in runs):
            raise _fail("a family's slot numbering is malformed")
        families.append(FamilyEntry(names, f.slots, runs))
    if seen != templates:
        raise _fail("the families do not cover every topology group")
    return families


def checked_recipe(recipe: object) -> dict[str, Any]:
    """A copy of `recipe` if it is a JSON object with a non-empty string "kind" (ValueError or
    TypeError otherwise)."""
    if not isinstance(recipe, Mapping):
        raise TypeError(f"a recipe is a mapping, not {type(recipe).__name__}")
    copy = dict(recipe)
    kind = copy.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError("a recipe needs a non-empty string 'kind'")
    dump_json(copy)  # string keys, JSON values only
    return copy
