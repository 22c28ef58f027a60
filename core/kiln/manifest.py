"""The archive's manifest: which sections hold which graphs and binaries, the allocation
trajectory, and the capture window. Validated field by field on read: an archive is
untrusted input."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.archive.jsonsec import dump_json
from kiln.errors import ArchiveCorrupt
from kiln.tensors import TensorSpec

MANIFEST = "manifest"
FINGERPRINT = "fingerprint"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _symbols(value: Any, fail: Any) -> tuple[str, ...]:
    """A binary entry's module-global names: a list of short, non-empty strings."""
    if not isinstance(value, list) or len(value) > 4096:
        raise fail("a binary entry's globals are not a list of symbol names")
    if not all(isinstance(v, str) and 0 < len(v) <= 4096 for v in value):
        raise fail("a binary entry's globals are not a list of symbol names")
    return tuple(value)


@dataclass(frozen=True)
class BinaryEntry:
    section: str
    sha256: str
    size: int
    kind: str
    # Set when the section holds the device's cubin taken out of a fatbin (kiln.fatbin):
    # the SHA-256 and size of the fatbin the application loaded, by which LOAD finds the
    # process's own copy.
    source_sha256: str | None = None
    source_size: int | None = None
    # Set when the section holds a pruned cubin (kiln.cubin_prune): the size of the whole
    # cubin it was cut from. The source fields then name the image the application loaded.
    unpruned_size: int | None = None
    # Module globals (__device__ / __constant__ symbols) whose addresses the application
    # obtained at SAVE: it may have written them, so LOAD launches this binary's kernels only
    # from the application's own loaded module, never from a fresh copy.
    globals: tuple[str, ...] = ()

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

    def __post_init__(self) -> None:
        if self.recipe is not None:
            object.__setattr__(self, "recipe", checked_recipe(self.recipe))

    def to_json(self) -> dict[str, Any]:
        recipe = {} if self.recipe is None else {"recipe": dict(self.recipe)}
        groups = {} if self.groups is None else {"groups": [g.to_json() for g in self.groups]}
        unbacked = {} if self.window_unbacked is None else {"window_unbacked": self.window_unbacked}
        families = (
            {} if self.families is None else {"families": [f.to_json() for f in self.families]}
        )
        return {
            **recipe,
            **groups,
            **families,
            **unbacked,
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
    def from_json(cls, d: dict[str, Any], sections: set[str]) -> Manifest:
        def fail(what: str) -> ArchiveCorrupt:
            return ArchiveCorrupt(f"manifest: {what}")

        try:
            device = d["device"]
            traj = [tuple(int(x) for x in t) for t in d["trajectory"]]
            window = tuple(int(x) for x in d["window"])
            if not isinstance(device, int) or device < 0:
                raise fail("bad device")
            if any(len(t) != 3 or t[0] < 0 or t[1] <= 0 or t[2] not in (0, 1, 2, 3) for t in traj):
                raise fail("bad trajectory entry")
            if len(window) != 2 or not 0 <= window[0] <= window[1] <= len(traj):
                raise fail("capture window lies outside the trajectory")
            binaries = []
            for b in d["binaries"]:
                source = "source_sha256" in b
                e = BinaryEntry(
                    str(b["section"]),
                    str(b["sha256"]),
                    int(b["size"]),
                    str(b["kind"]),
                    str(b["source_sha256"]) if source else None,
                    int(b["source_size"]) if source else None,
                    int(b["unpruned_size"]) if "unpruned_size" in b else None,
                    _symbols(b.get("globals", []), fail),
                )
                if e.section not in sections or not _HEX64.match(e.sha256) or e.size <= 0:
                    raise fail(f"binary entry {e.section!r} is invalid or its section is missing")
                if e.source_sha256 is not None and (
                    not _HEX64.match(e.source_sha256) or (e.source_size or 0) <= 0
                ):
                    raise fail(f"binary entry {e.section!r} has an invalid source fatbin")
                if e.unpruned_size is not None and (
                    e.unpruned_size <= e.size or e.source_sha256 is None
                ):
                    raise fail(f"binary entry {e.section!r} claims an impossible unpruned size")
                binaries.append(e)
            graphs = []
            names = set()
            for g in d["graphs"]:
                name = str(g["name"])
                if name in names:
                    raise fail(f"graph {name!r} appears twice")
                names.add(name)
                entry = GraphEntry(
                    name,
                    str(g["section"]),
                    int(g["nodes"]),
                    int(g["kernels"]),
                    [TensorSpec.from_json(s, f"input of {name!r}") for s in g["inputs"]],
                    [TensorSpec.from_json(s, f"output of {name!r}") for s in g["outputs"]],
                )
                if entry.section not in sections:
                    raise fail(f"graph {name!r} refers to missing section {entry.section!r}")
                graphs.append(entry)
            recipe = d.get("recipe")
            if recipe is not None:
                try:
                    recipe = checked_recipe(recipe)
                except (TypeError, ValueError) as e:
                    raise fail(f"bad recipe ({e})") from e
            groups = None if d.get("groups") is None else _groups_from_json(d["groups"], names)
            families = None
            if d.get("families") is not None:
                if groups is None:
                    raise fail("families without topology groups")
                families = _families_from_json(d["families"], groups)
            unbacked = d.get("window_unbacked")
            if unbacked is not None:
                unbacked = [int(i) for i in unbacked]
                if unbacked != sorted(set(unbacked)) or any(
                    not window[0] <= i < window[1] for i in unbacked
                ):
                    raise fail("window_unbacked must list window allocations once, in order")
        except ArchiveCorrupt:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ArchiveCorrupt(f"manifest is malformed: {e!r}") from e
        return cls(
            device,
            traj,  # type: ignore[arg-type]  # three ints each, checked above
            (window[0], window[1]),
            binaries,
            graphs,
            recipe=recipe,
            groups=groups,
            window_unbacked=unbacked,
            families=families,
        )


def _groups_from_json(raw: Any, graph_names: set[str]) -> list[GroupEntry]:
    groups = []
    seen: set[str] = set()
    for g in raw:
        entry = GroupEntry(
            str(g["key"]),
            str(g["template"]),
            [str(m) for m in g["members"]],
            [int(x) for x in g["differing"]],
        )
        if not _HEX64.match(entry.key) or len(entry.members) != len(entry.differing):
            raise ArchiveCorrupt(f"manifest: topology group {entry.key!r} is malformed")
        if entry.template not in entry.members or not set(entry.members) <= graph_names:
            raise ArchiveCorrupt(f"manifest: topology group {entry.key!r} names unknown graphs")
        if seen & set(entry.members):
            raise ArchiveCorrupt("manifest: a graph belongs to two topology groups")
        seen.update(entry.members)
        groups.append(entry)
    if seen != graph_names:
        raise ArchiveCorrupt("manifest: topology groups do not cover every graph")
    return groups


_UINT32 = 1 << 32


def _families_from_json(raw: Any, groups: list[GroupEntry]) -> list[FamilyEntry]:
    """The recorded families, well-formed and covering each group once; whether their slot
    numberings keep the merging rules is the native check's (kiln._native.GraphSet)."""
    templates = {g.template for g in groups}
    seen: set[str] = set()
    families = []
    for f in raw:
        names = [str(n) for n in f["groups"]]
        if (
            not names
            or not set(names) <= templates
            or seen & set(names)
            or len(set(names)) < len(names)
        ):
            raise ArchiveCorrupt("manifest: a family names unknown or already placed groups")
        seen.update(names)
        if len(names) == 1:
            families.append(FamilyEntry(names))
            continue
        slots = int(f["slots"])
        runs = [[int(x) for x in r] for r in f["runs"]]
        if (
            not 0 < slots < _UINT32
            or len(runs) != len(names)
            or any(len(r) % 3 or any(not 0 <= x < _UINT32 for x in r) for r in runs)
        ):
            raise ArchiveCorrupt("manifest: a family's slot numbering is malformed")
        families.append(FamilyEntry(names, slots, runs))
    if seen != templates:
        raise ArchiveCorrupt("manifest: the families do not cover every topology group")
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
