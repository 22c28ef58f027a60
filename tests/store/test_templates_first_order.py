"""What LOAD reads first: SAVE numbers the binaries of the groups' templates first, and the
manifest lists the templates ahead of the other graphs (decoded, hashed and planned first)."""

from __future__ import annotations

from types import SimpleNamespace

from kiln import store
from kiln.manifest import GraphEntry, GroupEntry, Manifest


def _graph(name: str, binaries: list[int]) -> SimpleNamespace:
    return SimpleNamespace(name=name, desc=SimpleNamespace(binaries=lambda: binaries))


def _manifest(groups: list[GroupEntry] | None) -> Manifest:
    graphs = [GraphEntry(f"g{i}", f"g{i}", 0, 0, [], []) for i in range(5)]
    return Manifest(0, [], (0, 0), [], graphs, groups=groups)


GROUPS = [
    GroupEntry("k0", "g0", ["g0", "g2", "g4"], [0, 1, 1]),
    GroupEntry("k1", "g1", ["g1", "g3"], [0, 2]),
]


def test_the_templates_binaries_take_the_first_slots() -> None:
    session = SimpleNamespace(
        graphs=[
            _graph("g0", [1, 2]),
            _graph("g1", [5, 3]),
            _graph("g2", [2, 4]),  # binary 4: only a member launches it
            _graph("g3", [3, 0]),
            _graph("g4", [1]),
        ]
    )
    assert store._binaries_templates_first(session, GROUPS) == [1, 2, 3, 5, 0, 4]


def test_the_manifest_lists_the_templates_first() -> None:
    m = _manifest(GROUPS)
    assert m.group_templates() == [0, 1]
    assert m.templates_first() == [0, 1, 2, 3, 4]
    late = [
        GroupEntry("k0", "g0", ["g0", "g1", "g4"], [0, 0, 0]),
        GroupEntry("k1", "g2", ["g2", "g3"], [0, 0]),
    ]
    assert _manifest(late).templates_first() == [0, 2, 1, 3, 4]


def test_a_manifest_without_groups_keeps_graph_order() -> None:
    m = _manifest(None)
    assert m.group_templates() == []
    assert m.templates_first() == [0, 1, 2, 3, 4]
