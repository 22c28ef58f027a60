"""Families in the manifest: SAVE plans which topology groups share a merged template,
the manifest validates the record's shape, and LOAD hands it to the graph set, which
checks it and uses it instead of planning (tests/native/test_recorded_families.py)."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.manifest import FamilyEntry, GraphEntry, GroupEntry, Manifest
from kiln.errors import ArchiveCorrupt
from kiln.graphs import store
from kiln.graphs.restored import RestoredSet

from tests.native._restore_fixture import DEV, close_fake, image, native, open_fake_region
from tests.native.test_template_families import variants

KEY = "ab" * 32


def manifest(groups: list[GroupEntry], families: list[FamilyEntry] | None) -> dict[str, Any]:
    graphs = [GraphEntry(f"g{i}", f"g{i}", 1, 1, [], []) for i in range(6)]
    return Manifest(0, [], (0, 0), [], graphs, groups=groups, families=families).to_json()


GROUPS = [
    GroupEntry(KEY, "g0", ["g0", "g1"], [0, 1]),
    GroupEntry(KEY, "g2", ["g2", "g3"], [0, 1]),
    GroupEntry(KEY, "g4", ["g4", "g5"], [0, 1]),
]
MERGED = FamilyEntry(["g0", "g2"], 5, [[0, 0, 4], [0, 0, 1, 1, 2, 3]])


def parse(d: dict[str, Any]) -> Manifest:
    return Manifest.from_json(d, {f"g{i}" for i in range(6)})


def test_families_round_trip() -> None:
    families = [MERGED, FamilyEntry(["g4"])]
    assert parse(manifest(GROUPS, families)).families == families
    assert parse(manifest(GROUPS, None)).families is None


@pytest.mark.parametrize(
    "families",
    [
        [MERGED],  # g4's group in no family
        [MERGED, FamilyEntry(["g4"]), FamilyEntry(["g2"])],  # g2's in two
        [MERGED, FamilyEntry(["g5"])],  # g5 is no group's template
        [FamilyEntry(["g0", "g2"], 0, MERGED.runs), FamilyEntry(["g4"])],  # no slots
        [FamilyEntry(["g0", "g2"], 5, [[0, 0, 4]]), FamilyEntry(["g4"])],  # one numbering
        [FamilyEntry(["g0", "g2"], 5, [[0, 0], [0, 0, 4]]), FamilyEntry(["g4"])],  # not triples
        [FamilyEntry(["g0", "g2"], 5, [[0, -1, 4], [0, 0, 4]]), FamilyEntry(["g4"])],
    ],
)
def test_a_malformed_family_record_is_corrupt(families: list[FamilyEntry]) -> None:
    with pytest.raises(ArchiveCorrupt, match="famil"):
        parse(manifest(GROUPS, families))


def test_families_without_groups_are_corrupt() -> None:
    d = manifest(GROUPS, [MERGED, FamilyEntry(["g4"])])
    del d["groups"]
    with pytest.raises(ArchiveCorrupt, match="families without topology groups"):
        parse(d)


@pytest.fixture
def blobs():
    buffer = open_fake_region()
    try:
        yield variants(buffer)
    finally:
        gc.collect()
        close_fake()


def saved(blobs: list[bytes]) -> tuple[list[GroupEntry], list[FamilyEntry] | None]:
    """What SAVE records for these graphs (store._topology_groups, store._families)."""
    graphs = [
        SimpleNamespace(name=f"g{i}", desc=native.decode_graph(b)) for i, b in enumerate(blobs)
    ]
    session: Any = SimpleNamespace(graphs=graphs)
    groups = store._topology_groups(session)
    return groups, store._families(session, groups)


def test_save_records_the_families_load_would_plan(blobs) -> None:
    groups, families = saved(blobs)
    assert [g.template for g in groups] == ["g0", "g2", "g4"]
    assert families is not None and [f.groups for f in families] == [["g0", "g2", "g4"]]
    assert families[0].slots == 6


def test_save_records_no_families_for_a_single_group(blobs) -> None:
    groups, families = saved(blobs[:2])
    assert len(groups) == 1 and families is None


def test_load_checks_and_uses_the_recorded_families(blobs) -> None:
    groups, families = saved(blobs)
    sections = {f"g{i}": b for i, b in enumerate(blobs)}
    graphs = [SimpleNamespace(section=f"g{i}", name=f"g{i}") for i in range(len(blobs))]
    m: Any = SimpleNamespace(graphs=graphs, groups=groups, families=families)
    reader: Any = SimpleNamespace(section=lambda name: memoryview(sections[name]))
    restored = RestoredSet(reader, DEV)
    restored.kernels = native.make_kernel_table([image(0)], [-1], device=DEV, threads=0)
    try:
        store.decode_graphs(reader, m, restored, threads=2, template_groups=0)
        assert restored.graph_set.families_recorded
        assert restored.graph_set.family_count == 1
        store.decode_graphs(reader, m, restored, threads=2, template_groups=1)
        assert not restored.graph_set.families_recorded
    finally:
        restored.graph_set = None
        restored.kernels = None
