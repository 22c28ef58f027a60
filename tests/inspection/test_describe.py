"""describe_archive: everything `kiln inspect` shows, as JSON-serialisable data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from kiln.errors import ArchiveCorrupt
from kiln.inspection import describe_archive

from tests.inspection.archives import (
    BASE,
    FINGERPRINT_FIELDS,
    PTX_ADD,
    PTX_MUL,
    REGION_SIZE,
    MiB,
    blob,
    flip,
    good_parts,
    section_span,
    write,
)


def test_describes_a_good_archive(archive: Path) -> None:
    d = describe_archive(archive)
    assert json.loads(json.dumps(d)) == d  # JSON-serialisable as is
    assert d["path"] == str(archive)
    assert d["format_version"] == 1
    assert d["fingerprint"] == FINGERPRINT_FIELDS
    assert d["device"] == 0
    assert "recipe" not in d and "groups" not in d


def test_graphs_with_their_counts_and_tensors(archive: Path) -> None:
    parts = good_parts()
    bs1, bs2 = describe_archive(archive)["graphs"]
    assert (bs1["name"], bs1["section"], bs1["nodes"], bs1["edges"], bs1["kernels"]) == (
        "decode/bs=1",
        "g0",
        4,
        3,
        2,
    )
    assert bs1["node_types"] == {"kernel": 2, "memcpy": 1, "memset": 1}
    assert bs1["blob_bytes"] == len(blob(parts.graphs[0].desc))
    assert bs1["inputs"] == [
        {
            "shape": [1, 64],
            "dtype": "float32",
            "strides": [64, 1],
            "nbytes": 256,
            "address": f"0x{BASE + 4 * MiB:x}",
        }
    ]
    assert [(o["shape"], o["dtype"]) for o in bs1["outputs"]] == [([1, 64], "bfloat16")]
    assert (bs2["name"], bs2["nodes"], bs2["edges"], bs2["kernels"]) == ("decode/bs=2", 3, 2, 3)
    assert bs2["inputs"][0]["shape"] == [2, 64]


def test_kernels_by_entry_name_with_uses_and_binary(archive: Path) -> None:
    assert describe_archive(archive)["kernels"] == [
        {"entry": "add", "uses": 3, "graphs": 2, "binaries": ["b0"]},
        {"entry": "mul", "uses": 2, "graphs": 2, "binaries": ["b1"]},
    ]


def test_binaries(archive: Path) -> None:
    assert describe_archive(archive)["binaries"] == [
        {
            "slot": i,
            "section": f"b{i}",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "kind": "ptx",
            "entries": 1,
        }
        for i, data in enumerate((PTX_ADD, PTX_MUL))
    ]


def test_sizes_add_up(archive: Path) -> None:
    parts = good_parts()
    sizes = describe_archive(archive)["sizes"]
    assert sizes["archive_bytes"] == archive.stat().st_size
    assert sizes["binary_bytes"] == len(PTX_ADD) + len(PTX_MUL)
    assert sizes["graph_bytes"] == sum(len(blob(g.desc)) for g in parts.graphs)
    assert sizes["manifest_bytes"] == section_span(archive, "manifest")[1]
    assert sizes["fingerprint_bytes"] == section_span(archive, "fingerprint")[1]
    sections = sum(sizes[k] for k in ("binary_bytes", "graph_bytes", "manifest_bytes"))
    sections += sizes["fingerprint_bytes"]
    assert sizes["archive_bytes"] == sections + sizes["container_overhead_bytes"]


def test_region_and_capture_window(archive: Path) -> None:
    d = describe_archive(archive)
    assert d["region"] == {
        "base": f"0x{BASE:x}",
        "size": REGION_SIZE,
        "allocations": 4,
        "allocated_bytes": 9 * MiB,
        "extent_bytes": 10 * MiB,
    }
    assert d["window"] == {
        "first": 2,
        "end": 4,
        "allocations_before": 2,
        "bytes_before": 4 * MiB,
        "allocations_in_window": 2,
        "bytes_in_window": 5 * MiB,
    }


def test_the_recipe_is_shown_when_present(tmp_path: Path) -> None:
    parts = good_parts()
    parts.recipe = {"kind": "workload", "workload": "decode_small"}
    d = describe_archive(write(tmp_path / "graphs.kiln", parts))
    assert d["recipe"] == {"kind": "workload", "workload": "decode_small"}


def test_topology_groups_are_shown_when_the_manifest_has_them(tmp_path: Path) -> None:
    groups = [
        {
            "key": "ab" * 32,
            "template": "decode/bs=1",
            "members": ["decode/bs=1", "decode/bs=2"],
            "differing": [0, 3],
        }
    ]

    def patch(m: dict[str, Any]) -> None:
        m["groups"] = groups

    d = describe_archive(write(tmp_path / "graphs.kiln", patch=patch))
    assert d["groups"] == [dict(groups[0], split_from_first="")]


def test_recorded_families_are_shown_without_their_numbering(tmp_path: Path) -> None:
    groups = [
        {"key": "ab" * 32, "template": name, "members": [name], "differing": [0]}
        for name in ("decode/bs=1", "decode/bs=2")
    ]
    families = [{"groups": ["decode/bs=1", "decode/bs=2"], "slots": 5, "runs": [[0, 0, 4], []]}]

    def patch(m: dict[str, Any]) -> None:
        m["groups"], m["families"] = groups, families

    d = describe_archive(write(tmp_path / "graphs.kiln", patch=patch))
    assert d["families"] == [{"groups": ["decode/bs=1", "decode/bs=2"], "slots": 5}]


def test_topology_groups_that_miss_a_graph_make_the_archive_corrupt(tmp_path: Path) -> None:
    groups = [
        {"key": "ab" * 32, "template": "decode/bs=1", "members": ["decode/bs=1"], "differing": [0]}
    ]

    def patch(m: dict[str, Any]) -> None:
        m["groups"] = groups

    with pytest.raises(ArchiveCorrupt, match="do not cover every graph"):
        describe_archive(write(tmp_path / "graphs.kiln", patch=patch))


def test_a_missing_binary_slot_is_shown_not_raised(tmp_path: Path) -> None:
    parts = good_parts()
    parts.graphs[1].desc["nodes"][2]["kernel"]["binary"] = 7
    kernels = describe_archive(write(tmp_path / "graphs.kiln", parts))["kernels"]
    assert kernels[1] == {
        "entry": "mul",
        "uses": 2,
        "graphs": 2,
        "binaries": ["b1", "slot 7 (missing)"],
    }


def test_a_damaged_archive_raises_its_archive_error(archive: Path) -> None:
    offset, _ = section_span(archive, "g1")
    flip(archive, offset + 5)
    with pytest.raises(ArchiveCorrupt, match="section 'g1' checksum mismatch"):
        describe_archive(archive)


def test_a_missing_manifest_raises(tmp_path: Path) -> None:
    with pytest.raises(ArchiveCorrupt, match="missing section 'manifest'"):
        describe_archive(write(tmp_path / "graphs.kiln", drop=["manifest"]))
