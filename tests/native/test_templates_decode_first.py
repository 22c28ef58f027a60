"""GraphSet with the groups' templates named (SAVE's manifest): only those decode before the
templates can build, the other graphs decode beside the builds and are checked against the
named groups, and the templates' kernels resolve ahead of the others. Grouped by behaviour,
errors and lifetime, on the fake driver."""

from __future__ import annotations

import gc
import hashlib

import pytest
from kiln.errors import ArchiveCorrupt

from ._restore_fixture import DEV, archive, graph, launch_records, native

TEMPLATES = [0, 1]  # the fixture alternates two topologies, largest batch first


def _kernels(arc, threads: int = 2):
    return native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=threads)


def _graph_set(arc, templates, **kwargs):
    return native.GraphSet(arc.blobs, _kernels(arc), DEV, 2, templates=templates, **kwargs)


def _bad_verifier(sections: list[bytes], bad: int):
    digests = [
        hashlib.sha256(s + (b"x" if i == bad else b"")).digest() for i, s in enumerate(sections)
    ]
    names = [f"s{i}" for i in range(len(sections))]
    return native.SectionVerifier(sections, digests, names, "/tmp/a.kiln", 2)


# --- behaviour ----------------------------------------------------------------------------


def test_named_templates_restore_what_derived_groups_do(buffer) -> None:
    arc = archive(buffer)
    reference = native.GraphSet(arc.blobs, _kernels(arc), DEV, 2)
    reference.start(True)
    expected = launch_records(reference)
    graphs = _graph_set(arc, TEMPLATES)
    graphs.start(True)
    assert launch_records(graphs) == expected
    graphs.wait_decoded()
    assert graphs.group_count == reference.group_count == 2
    for i in range(len(arc.blobs)):
        assert graphs.group_of(i) == reference.group_of(i)
        assert graphs.differing_from_template(i) == reference.differing_from_template(i)
    for g in range(graphs.group_count):
        assert graphs.template_of(g) == reference.template_of(g)


def test_templates_instantiate_before_the_other_graphs_decode(buffer) -> None:
    # Graph 5's section fails its hash, so it never decodes; the templates still build.
    arc = archive(buffer)
    verifier = _bad_verifier(arc.blobs, bad=5)
    graphs = _graph_set(arc, TEMPLATES, verifier=verifier, items=list(range(len(arc.blobs))))
    graphs.start(False)
    with pytest.raises(ArchiveCorrupt, match="section 's5' checksum mismatch"):
        graphs.wait(0)
    assert native.testing.fake_graph_stats()["instantiations"] == graphs.family_count
    with pytest.raises(ArchiveCorrupt, match="section 's5' checksum mismatch"):
        graphs.wait_decoded()


def _member_only_kernel_archive(buffer):
    """The fixture's graphs, but every graph after the two templates launches entry k1 of
    binary 0 as its first kernel (k0 in the templates): a kernel only switches need."""
    arc = archive(buffer)
    for i in range(len(TEMPLATES), len(arc.blobs)):
        d = native.decode_graph(arc.blobs[i]).to_dict()
        d["nodes"][0]["kernel"]["entry"] = "k1"
        arc.blobs[i] = native.GraphDesc.from_dict(d).encode()
    return arc


@pytest.mark.parametrize(("first", "last_lookup"), [(2, "b0:k1"), (0, "b5:k2")])
def test_the_templates_kernels_resolve_first(buffer, first: int, last_lookup: str) -> None:
    arc = _member_only_kernel_archive(buffer)
    kernels = _kernels(arc, threads=0)  # every binary loaded here: lookups follow the plan
    kernels.resolve_in_background(1, arc.blobs, first=first)
    kernels.wait_background()
    lookups = native.testing.fake_kernel_lookups()
    assert len(lookups) == 7  # six kernels of the templates and one only the others launch
    assert lookups[-1] == last_lookup


def test_graphs_that_switch_a_templates_kernel_replay_it(buffer) -> None:
    arc = _member_only_kernel_archive(buffer)
    reference = native.GraphSet(arc.blobs, _kernels(arc), DEV, 2)
    reference.start(True)
    expected = launch_records(reference)
    assert all(r.startswith("kernel b0:k1 ") for r in expected["template"][len(TEMPLATES) :])
    graphs = _graph_set(arc, TEMPLATES)
    graphs.start(True)
    assert launch_records(graphs) == expected


# --- errors -------------------------------------------------------------------------------


def test_a_graph_outside_the_named_groups_fails_the_set(buffer) -> None:
    graphs = _graph_set(archive(buffer), [0])  # graph 1's topology is not named
    graphs.start(False)
    with pytest.raises(
        ArchiveCorrupt, match="graph 1 has a topology none of the named group templates"
    ):
        graphs.wait_decoded()
    with pytest.raises(ArchiveCorrupt, match="graph 1 has a topology"):
        graphs.wait_all(False)


def test_a_graph_before_its_named_template_fails_the_set(buffer) -> None:
    graphs = _graph_set(archive(buffer), [0, 3])  # graph 1 has graph 3's topology
    with pytest.raises(
        ArchiveCorrupt, match="graph 1 comes before its group's named template, graph 3"
    ):
        graphs.wait_decoded()


def test_two_named_templates_of_one_topology_fail_at_once(buffer) -> None:
    with pytest.raises(ArchiveCorrupt, match="graphs 0 and 2 were named templates of two groups"):
        _graph_set(archive(buffer), [0, 1, 2])


@pytest.mark.parametrize("templates", [[1], [0, 0], [0, 99], [1, 0]])
def test_named_templates_must_ascend_from_graph_0(buffer, templates: list[int]) -> None:
    with pytest.raises(ArchiveCorrupt, match="not ascending graph indices starting at graph 0"):
        _graph_set(archive(buffer), templates)


def test_first_must_not_exceed_the_blobs(buffer) -> None:
    arc = archive(buffer)
    with pytest.raises(ValueError, match="first exceeds the blobs"):
        _kernels(arc).resolve_in_background(1, arc.blobs, first=len(arc.blobs) + 1)


# --- lifetime -----------------------------------------------------------------------------


def test_the_set_keeps_its_blobs_until_the_other_graphs_decoded(buffer) -> None:
    arc = archive(buffer)
    reference = native.GraphSet(arc.blobs, _kernels(arc), DEV, 2)
    reference.start(True)
    expected = launch_records(reference)
    # Copies only the set refers to: released and reused at once if it did not hold them.
    graphs = native.GraphSet(
        [bytes(b) for b in arc.blobs], _kernels(arc), DEV, 2, templates=TEMPLATES
    )
    gc.collect()
    [bytes(len(b)) for b in arc.blobs]  # churn the allocator over freed blob memory
    graphs.start(True)
    assert launch_records(graphs) == expected


def test_a_set_destroyed_while_its_graphs_decode_stops_cleanly(buffer) -> None:
    arc = archive(buffer)
    blobs = [
        native.GraphDesc.from_dict(graph(bs, 64, 6, buffer)).encode() for bs in range(40, 0, -1)
    ]
    for _ in range(5):
        graphs = native.GraphSet(blobs, _kernels(arc), DEV, 2, templates=[0])
        graphs.start(True)
        del graphs
        gc.collect()
    assert native.testing.fake_graph_stats()["live_execs"] == 0
