"""Families: topology groups that differ in a few nodes share one instantiated template.
Replaying a member through it disables the nodes the member lacks and updates the rest;
on the fake driver a launch records the enabled nodes and the order the graph imposes
among them, so a member replayed through the merged template must record exactly what
its own executable does."""

from __future__ import annotations

import os

from kiln_testing import testing

from ._restore_fixture import DEV, as_full_dependencies, image, launch_records, native
from ._restore_fixture import kernel as fixture_kernel

PROGRAMMATIC = 1  # CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC


def kernel(entry: str, bs: int, ptr: int, *, cluster: int = 0) -> dict:
    return fixture_kernel(0, entry, bs, ptr, cluster=cluster)


def chain(nodes: list[dict], edges: list[tuple] | None = None, events: int = 0) -> bytes:
    if edges is None:
        edges = [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)]
    desc = {"nodes": nodes, "edges": edges, "event_count": events}
    return native.GraphDesc.from_dict(desc).encode()


def decode_like(bs: int, ptr: int, *, split_k: bool = False, cluster: int = 2) -> list[dict]:
    """A layer-like chain: norm, GEMM (cuBLAS picks another cluster size for some batch
    sizes), an optional split-K reduction, activation, a memset."""
    nodes = [
        kernel("k0", bs, ptr),
        kernel("k1", bs, ptr, cluster=cluster),
    ]
    if split_k:
        nodes.append(kernel("k2", bs, ptr))
    nodes += [kernel("k0", bs, ptr), {"type": "memset", "memset": (ptr, 0, 64, 1, 0, 1)}]
    return nodes


def restore(blobs: list[bytes], *, family_groups: int, threads: int = 2):
    kernels = native.make_kernel_table([image(0)], [-1], device=DEV, threads=0)
    graphs = native.GraphSet(blobs, kernels, DEV, threads, family_groups)  # keeps `kernels` alive
    graphs.start(True)
    return graphs


def variants(buffer: int) -> list[bytes]:
    """Six graphs in three topology groups: cluster 2 (bs 8, 7), cluster 1 (bs 6, 5), and
    cluster 1 with a split-K node (bs 4, 3)."""
    blobs = []
    for bs in range(8, 2, -1):
        ptr = buffer + 256 * bs
        if bs >= 7:
            blobs.append(chain(decode_like(bs, ptr, cluster=2)))
        elif bs >= 5:
            blobs.append(chain(decode_like(bs, ptr, cluster=1)))
        else:
            blobs.append(chain(decode_like(bs, ptr, cluster=1, split_k=True)))
    return blobs


def test_groups_that_differ_in_a_few_nodes_share_one_template(buffer) -> None:
    graphs = restore(variants(buffer), family_groups=3)
    assert graphs.group_count == 3
    assert graphs.family_count == 1
    # Both GEMM variants and the split-K node get a slot: 4 + 1 + 1.
    assert graphs.family_slots(0) == 6
    got = launch_records(graphs)
    assert got["template"] == got["own"]
    assert got["reversed"] == got["own"]
    assert len(set(got["own"])) == 6
    # Only the template and the six own executables were instantiated.
    assert testing.fake_graph_stats()["instantiations"] == 1 + 6


def test_the_manifest_view_of_groups_is_unchanged_by_families(buffer) -> None:
    merged = restore(variants(buffer), family_groups=3)
    separate = restore(variants(buffer), family_groups=1)
    assert separate.family_count == separate.group_count == merged.group_count == 3
    for i in range(len(merged)):
        assert merged.group_of(i) == separate.group_of(i)
        assert merged.differing_from_template(i) == separate.differing_from_template(i)
    for g in range(3):
        assert merged.template_of(g) == separate.template_of(g)


def test_family_groups_caps_the_groups_one_template_serves(buffer) -> None:
    graphs = restore(variants(buffer), family_groups=2)
    assert graphs.family_count == 2
    assert [graphs.family_of_group(g) for g in range(3)] == [0, 0, 1]
    got = launch_records(graphs)
    assert got["template"] == got["own"] == got["reversed"]


def test_without_a_cap_every_group_that_can_merge_does(buffer) -> None:
    for threads in (1, 3, 8):
        assert restore(variants(buffer), family_groups=0, threads=threads).family_count == 1


def test_groups_merge_alike_whatever_order_their_edges_come_in(buffer) -> None:
    # Captured graphs list their edges in no particular order; skip edges give nodes fan-out.
    def blobs(order) -> list[bytes]:
        out = []
        for bs in range(8, 2, -1):
            nodes = decode_like(bs, buffer + 256 * bs, cluster=2 if bs >= 6 else 1, split_k=bs < 5)
            edges = [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)]
            edges += [(i, i + 2, 0, 0, 0) for i in range(len(nodes) - 2)]
            out.append(chain(nodes, order(edges)))
        return out

    graphs = [restore(blobs(order), family_groups=3) for order in (sorted, lambda e: e[::-1])]
    for g in graphs:
        assert (g.group_count, g.family_count) == (3, 1)
    assert graphs[0].family_slots(0) == graphs[1].family_slots(0)
    records = [launch_records(g) for g in graphs]
    assert records[0] == records[1]
    assert records[0]["template"] == records[0]["own"] == records[0]["reversed"]


def four(bs: int, ptr: int, cluster: int) -> list[dict]:
    """Four kernels; the second one's cluster size varies."""
    ks = [kernel("k0", bs, ptr), kernel("k1", bs, ptr, cluster=cluster)]
    return ks + [kernel("k0", bs, ptr), kernel("k2", bs, ptr)]


LAST_PROGRAMMATIC = [(0, 1, 0, 0, 0), (1, 2, 0, 0, 0), (2, 3, 1, 0, PROGRAMMATIC)]


def test_an_event_node_one_group_lacks_keeps_the_groups_apart(buffer) -> None:
    base = decode_like(8, buffer, cluster=2)
    with_event = base[:2] + [{"type": "event_record", "event": 0}] + base[2:]
    blobs = [chain(base), chain(with_event, events=1)]
    graphs = restore(blobs, family_groups=2)
    assert (graphs.group_count, graphs.family_count) == (2, 2)


def test_planning_logs_why_a_group_stays_out_of_a_family(buffer, capfd) -> None:
    # KILN_LOG_LEVEL=debug is how a user sees what splits their graphs into more templates.
    base = decode_like(8, buffer, cluster=2)
    with_event = base[:2] + [{"type": "event_record", "event": 0}] + base[2:]
    native.set_log_level("debug")
    try:
        restore([chain(base), chain(with_event, events=1)], family_groups=2)
    finally:
        native.set_log_level(
            os.environ.get("KILN_LOG_LEVEL") or os.environ.get("KILN_LOG") or "warn"
        )
    err = capfd.readouterr().err
    assert (
        "family: group 1 not merged into family 0: a node some group lacks cannot be disabled"
        in err
    )


def assert_template_runs_full_dependencies(graphs) -> dict[str, list[str]]:
    """Each graph replayed through the merged template runs its own nodes in its own order,
    with programmatic edges as full ones; its own executable keeps them programmatic."""
    got = launch_records(graphs)
    assert got["template"] == got["reversed"] == [as_full_dependencies(r) for r in got["own"]]
    return got


def test_a_programmatic_edge_to_a_node_one_group_lacks_becomes_a_full_edge(buffer) -> None:
    # cuBLAS picks kernels with programmatic dependent launch for some batch sizes only;
    # those graphs still share the template, whose disabled nodes carry full edges only.
    plain = decode_like(8, buffer, cluster=1)
    split = decode_like(4, buffer + 4096, cluster=1, split_k=True)
    edges = [(0, 1, 0, 0, 0), (1, 2, 1, 0, PROGRAMMATIC), (2, 3, 0, 0, 0), (3, 4, 0, 0, 0)]
    graphs = restore([chain(plain), chain(split, edges)], family_groups=2)
    assert (graphs.group_count, graphs.family_count) == (2, 1)
    got = assert_template_runs_full_dependencies(graphs)
    assert f"edge 1>2 1,0,{PROGRAMMATIC}" in got["own"][1]


def test_groups_whose_edges_differ_only_in_type_share_a_template(buffer) -> None:
    a, b = four(8, buffer, 2), four(4, buffer, 1)
    first_programmatic = [(0, 1, 1, 0, PROGRAMMATIC), (1, 2, 0, 0, 0), (2, 3, 0, 0, 0)]
    for edges_a in (None, first_programmatic, LAST_PROGRAMMATIC):
        graphs = restore([chain(a, edges_a), chain(b, LAST_PROGRAMMATIC)], family_groups=2)
        assert (graphs.group_count, graphs.family_count) == (2, 1)
        assert graphs.family_slots(0) == 5  # the two cluster sizes of k1 get a slot each
        assert_template_runs_full_dependencies(graphs)


def test_a_group_of_its_own_keeps_its_programmatic_edges_in_its_template(buffer) -> None:
    graphs = restore([chain(four(8, buffer, 2), LAST_PROGRAMMATIC)], family_groups=0)
    got = launch_records(graphs)
    assert got["template"] == got["own"]
    assert f"edge 2>3 1,0,{PROGRAMMATIC}" in got["template"][0]


def test_an_extra_node_inside_a_run_of_alike_nodes_gets_its_own_slot(buffer) -> None:
    # Ten kernels that only exec updates tell apart, then one more: aligned node by node,
    # the extra kernel becomes the one slot the shorter graph disables.
    a = [kernel("k0", 8, buffer) for _ in range(10)] + [kernel("k1", 8, buffer, cluster=2)]
    b = [kernel("k0", 4, buffer) for _ in range(11)] + [kernel("k1", 4, buffer, cluster=2)]
    graphs = restore([chain(a), chain(b)], family_groups=2)
    assert (graphs.group_count, graphs.family_count) == (2, 1)
    assert graphs.family_slots(0) == 12
    got = launch_records(graphs)
    assert got["template"] == got["own"] == got["reversed"]


def test_edges_that_do_not_run_forward_keep_the_groups_apart(buffer) -> None:
    a = decode_like(8, buffer, cluster=2)
    b = decode_like(4, buffer, cluster=1)
    backward = [(1, 0, 0, 0, 0), (1, 2, 0, 0, 0), (2, 3, 0, 0, 0)]
    graphs = restore([chain(a), chain(b, backward)], family_groups=2)
    assert (graphs.group_count, graphs.family_count) == (2, 2)


def test_graphs_too_different_get_templates_of_their_own(buffer) -> None:
    # Every kernel launches with another cluster size: nothing could share a node.
    a = [kernel("k0", 8, buffer, cluster=2) for _ in range(40)]
    b = [kernel("k0", 8, buffer, cluster=1) for _ in range(40)]
    graphs = restore([chain(a), chain(b)], family_groups=2)
    assert (graphs.group_count, graphs.family_count) == (2, 2)


def test_a_failed_enable_gives_the_graph_its_own_executable(buffer) -> None:
    kernels = native.make_kernel_table([image(0)], [-1], device=DEV, threads=0)
    graphs = native.GraphSet(variants(buffer), kernels, DEV, 2, 3)
    graphs.start(False)
    graphs.wait_all(False)
    assert graphs.family_count == 1
    testing.clear_fake_launches()
    graphs.launch_template(0, 0)
    testing.fail_node_enables(1)
    graphs.launch_template(5, 0)  # disables slots: the first call fails
    assert graphs.has_dedicated(5)
    # The template's state after the failure is unknown: the next switch sets every slot
    # it may have left wrong, so later replays through it are still exact.
    graphs.launch_template(3, 0)
    graphs.launch_template(5, 0)
    graphs.launch(0, 0)
    first, fallback, third, again, back = testing.fake_launches()
    assert "kernel b0:k2" in fallback  # the split-K graph, replayed whole
    assert again == fallback
    assert "kernel b0:k2" not in third and "kernel b0:k2" not in first
    assert back == first


def test_a_disabled_node_is_re_enabled_for_the_member_that_has_it(buffer) -> None:
    graphs = restore(variants(buffer), family_groups=3)
    graphs.wait_all(True)
    testing.clear_fake_launches()
    for i in (5, 0, 5, 2, 4):  # split-K, cluster 2, split-K, cluster 1, split-K
        graphs.launch_template(i, 0)
    for i in (5, 0, 2):
        graphs.launch(i, 0)
    split, big, split_again, small, split4, own_split, own_big, own_small = testing.fake_launches()
    assert split == split_again == own_split
    assert big == own_big and small == own_small
    assert "kernel b0:k2" in split4


def test_switching_calls_the_driver_only_for_slots_whose_state_changes(buffer) -> None:
    graphs = restore(variants(buffer), family_groups=3)
    graphs.wait_all(False)
    graphs.launch_template(4, 0)  # first switch: every varying slot
    before = testing.fake_graph_stats()["enable_calls"]
    graphs.launch_template(5, 0)  # same group: nothing to enable or disable
    assert testing.fake_graph_stats()["enable_calls"] == before
    graphs.launch_template(0, 0)  # cluster 2: swap the GEMM slots, drop split-K
    assert testing.fake_graph_stats()["enable_calls"] == before + 3


def test_a_merged_template_is_relaunched_only_after_its_last_launch_completed(buffer) -> None:
    # Regression: on the H100, back-to-back replays of an executable with disabled nodes
    # faulted (unspecified launch failure) unless each launch had completed first.
    merged = restore(variants(buffer), family_groups=3)
    merged.wait_all(False)
    for i in (0, 0, 5, 5):
        merged.launch_template(i, 0)
    assert testing.fake_graph_stats()["event_syncs"] == 3
    separate = restore(variants(buffer), family_groups=1)
    separate.wait_all(False)
    before = testing.fake_graph_stats()["event_syncs"]
    for i in (0, 0, 5, 5):
        separate.launch_template(i, 0)
    assert testing.fake_graph_stats()["event_syncs"] == before
