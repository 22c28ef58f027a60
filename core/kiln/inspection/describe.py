"""``describe_archive``: what an archive holds, as JSON-serialisable data (``kiln inspect``)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from kiln.archive import FORMAT_VERSION, ArchiveReader, load_json
from kiln.archive.manifest import FINGERPRINT, MANIFEST, Manifest
from kiln.errors import ArchiveCorrupt, KilnError
from kiln.graphs.tensors import TensorSpec
from kiln.lifecycle.archive_io import checked_fingerprint
from kiln.native import native


def describe_archive(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe archive ``path``: fingerprint, graphs, kernels, binaries, sizes, region.

    Every section is checksummed first; a damaged archive raises its
    :class:`~kiln.errors.ArchiveError` (``kiln verify`` lists every problem instead)."""
    n = native()
    with ArchiveReader(path, verify=True) as reader:
        with reader.section(FINGERPRINT) as view:
            fingerprint = checked_fingerprint(load_json(view, FINGERPRINT))
        with reader.section(MANIFEST) as view:
            raw = load_json(view, MANIFEST)
        manifest = Manifest.from_json(raw, set(reader.names))
        graphs: list[dict[str, Any]] = []
        uses: Counter[tuple[str, int]] = Counter()
        graphs_using: dict[str, set[str]] = {}
        descs: dict[str, Any] = {}
        for entry in manifest.graphs:
            desc = _decoded(n, reader, entry.name, entry.section)
            descs[entry.name] = desc
            for slot, name in desc.kernels():
                uses[name, slot] += 1
                graphs_using.setdefault(name, set()).add(entry.name)
            types = Counter(node["type"] for node in desc.to_dict()["nodes"])
            graphs.append(
                {
                    "name": entry.name,
                    "section": entry.section,
                    "nodes": desc.node_count,
                    "edges": desc.edge_count,
                    "kernels": desc.kernel_count,
                    "node_types": dict(sorted(types.items())),
                    "blob_bytes": reader.section_size(entry.section),
                    "inputs": [_tensor(s) for s in entry.inputs],
                    "outputs": [_tensor(s) for s in entry.outputs],
                }
            )
        description: dict[str, Any] = {
            "path": os.fspath(path),
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "device": manifest.device,
            "region": _region(fingerprint, manifest),
            "window": _window(manifest),
            "graphs": graphs,
            "kernels": _kernels(uses, graphs_using, manifest),
            "binaries": [
                {
                    "slot": slot,
                    "section": b.section,
                    "sha256": b.sha256,
                    "size": b.size,
                    "kind": b.kind,
                    "entries": len({name for name, s in uses if s == slot}),
                    # Bytes of the fatbin the application loaded, when SAVE kept its cubin.
                    **({"fatbin_size": b.source_size} if b.source_size is not None else {}),
                }
                for slot, b in enumerate(manifest.binaries)
            ],
            "sizes": _sizes(reader, manifest),
            **_groups(raw, descs),
        }
        if manifest.library_memory is not None:
            description["library_memory"] = _library_memory(manifest)
        if manifest.recipe is not None:
            description["recipe"] = dict(manifest.recipe)
        return description


def _library_memory(manifest: Manifest) -> dict[str, Any]:
    """The communication libraries' slots, mappings and the kernel arguments pointing into
    those mappings, as SAVE recorded them."""
    lib = manifest.library_memory
    assert lib is not None
    return {
        "slot_size": lib.slot_size,
        "slots": {
            s.library: {"offset": s.offset, "requests": len(s.trajectory)} for s in lib.slots
        },
        "mappings": [f"{m.library}: {m.describe()}" for m in lib.mappings],
        "pointers": [p.describe(manifest.graphs[p.graph].name) for p in lib.pointers],
    }


def _decoded(n: Any, reader: ArchiveReader, name: str, section: str) -> Any:
    """The graph blob of ``section``, decoded; every decoder failure is the archive's."""
    try:
        with reader.section(section) as view:
            return n.decode_graph(view)
    except KilnError:
        raise
    except Exception as e:
        raise ArchiveCorrupt(f"graph {name!r} (section {section!r}) does not decode: {e}") from e


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {
        "shape": list(spec.shape),
        "dtype": spec.dtype,
        "strides": list(spec.strides),
        "nbytes": spec.nbytes,
        "address": f"0x{spec.address:x}",
    }


def _region(fingerprint: Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    base = fingerprint.get("region_base")
    return {
        "base": f"0x{base:x}" if type(base) is int else base,
        "size": fingerprint.get("region_size"),
        "allocations": len(manifest.trajectory),
        "allocated_bytes": sum(size for _, size, _ in manifest.trajectory),
        "extent_bytes": max((off + size for off, size, _ in manifest.trajectory), default=0),
    }


def _window(manifest: Manifest) -> dict[str, Any]:
    w0, w1 = manifest.window
    sizes = [size for _, size, _ in manifest.trajectory]
    return {
        "first": w0,
        "end": w1,
        "allocations_before": w0,
        "bytes_before": sum(sizes[:w0]),
        "allocations_in_window": w1 - w0,
        "bytes_in_window": sum(sizes[w0:w1]),
    }


def _kernels(
    uses: Counter[tuple[str, int]], graphs_using: Mapping[str, set[str]], manifest: Manifest
) -> list[dict[str, Any]]:
    """Each distinct entry name: how many kernel nodes call it, in how many graphs, from
    which binaries (a slot the archive lacks shows as ``"slot N (missing)"``)."""
    total: Counter[str] = Counter()
    slots: dict[str, set[int]] = {}
    for (name, slot), count in uses.items():
        total[name] += count
        slots.setdefault(name, set()).add(slot)

    def binary(slot: int) -> str:
        if slot < len(manifest.binaries):
            return manifest.binaries[slot].section
        return f"slot {slot} (missing)"

    return [
        {
            "entry": name,
            "uses": count,
            "graphs": len(graphs_using[name]),
            "binaries": [binary(s) for s in sorted(slots[name])],
        }
        for name, count in sorted(total.items(), key=lambda item: (-item[1], item[0]))
    ]


def _sizes(reader: ArchiveReader, manifest: Manifest) -> dict[str, int]:
    binaries = {b.section for b in manifest.binaries}
    blobs = {g.section for g in manifest.graphs}
    sections = sum(reader.section_size(name) for name in reader.names)
    return {
        "archive_bytes": reader.file_size,
        "binary_bytes": sum(reader.section_size(s) for s in binaries),
        "graph_bytes": sum(reader.section_size(s) for s in blobs - binaries),
        "manifest_bytes": reader.section_size(MANIFEST),
        "fingerprint_bytes": reader.section_size(FINGERPRINT),
        "container_overhead_bytes": reader.file_size - sections,
    }


def _groups(raw_manifest: Mapping[str, Any], descs: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's topology groups of graphs, where it records them (``{}`` otherwise:
    then every graph stands alone), each with what keeps its template from sharing the
    first group's (``split_from_first``); and the families SAVE planned (the groups, by
    template, that share one merged template, and its node count), where recorded."""
    groups = raw_manifest.get("groups")
    if groups is None:
        return {}
    families = raw_manifest.get("families")
    shown = (
        {}
        if families is None
        else {
            "families": [
                {"groups": list(f["groups"]), **({"slots": f["slots"]} if "slots" in f else {})}
                for f in families
            ]
        }
    )
    out = [dict(g) for g in groups]
    first = descs.get(str(groups[0].get("template"))) if groups else None
    for group in out:
        mine = descs.get(str(group.get("template")))
        if first is not None and mine is not None:
            group["split_from_first"] = native().topology_difference(first, mine)
    return {"groups": out, **shown}
