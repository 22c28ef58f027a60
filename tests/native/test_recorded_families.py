"""Families SAVE planned and recorded (kiln._native.plan_families): LOAD checks the plan by
every merging rule instead of aligning the groups itself. An accepted plan must replay
each graph through the merged template exactly as its own executable does; a plan that
breaks a rule is ArchiveCorrupt naming it. Grouped by behaviour, errors and fuzzing."""

from __future__ import annotations

import random

import pytest
from kiln.errors import ArchiveCorrupt

from ._restore_fixture import DEV, image, launch_records, native
from .test_template_families import (
    LAST_PROGRAMMATIC,
    PROGRAMMATIC,
    assert_template_runs_full_dependencies,
    chain,
    decode_like,
    four,
    variants,
)


def templates_of(blobs: list[bytes]) -> list[int]:
    """Each topology group's template: its first graph (as LOAD groups them)."""
    seen, out = set(), []
    for i, b in enumerate(blobs):
        key = native.topology_signature(native.decode_graph(b))
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def recorded(blobs: list[bytes]) -> list[tuple]:
    """What SAVE records: the plan over the group templates, groups named by blob index."""
    tmpl = templates_of(blobs)
    plans = native.plan_families([native.decode_graph(blobs[t]) for t in tmpl])
    return [([tmpl[g] for g in groups], slots, runs) for groups, slots, runs in plans]


def restore(blobs: list[bytes], families: list[tuple], *, family_groups: int = 0):
    kernels = native.make_kernel_table([image(0)], [-1], device=DEV, threads=0)
    graphs = native.GraphSet(blobs, kernels, DEV, 2, family_groups, families=families)
    graphs.start(True)
    return graphs


# --- behaviour ----------------------------------------------------------------------------


def test_a_recorded_plan_restores_what_planning_at_load_does(buffer) -> None:
    blobs = variants(buffer)
    planned = restore(blobs, [])
    from_archive = restore(blobs, recorded(blobs))
    assert not planned.families_recorded and from_archive.families_recorded
    assert from_archive.family_count == planned.family_count == 1
    assert from_archive.family_slots(0) == planned.family_slots(0)
    for i in range(len(blobs)):
        assert from_archive.switch_nodes(i) == planned.switch_nodes(i)
    got = launch_records(from_archive)
    assert got == launch_records(planned)
    assert got["template"] == got["own"] == got["reversed"]


def test_the_numbering_is_recorded_as_a_few_runs(buffer) -> None:
    ((groups, slots, runs),) = recorded(variants(buffer))
    assert (groups, slots) == ([0, 2, 4], 6)
    # Each group's 4-5 nodes in at most three runs: before, at and after the GEMM variants.
    assert all(len(r) % 3 == 0 and len(r) // 3 <= 3 for r in runs)


def test_a_cap_plans_at_load_whatever_the_archive_recorded(buffer) -> None:
    blobs = variants(buffer)
    graphs = restore(blobs, recorded(blobs), family_groups=1)
    assert not graphs.families_recorded
    assert graphs.family_count == graphs.group_count == 3


def test_groups_kept_apart_at_save_stay_apart(buffer) -> None:
    base = decode_like(8, buffer, cluster=2)
    with_event = base[:2] + [{"type": "event_record", "event": 0}] + base[2:]
    blobs = [chain(base), chain(with_event, events=1)]
    families = recorded(blobs)
    assert [f[0] for f in families] == [[0], [1]]
    graphs = restore(blobs, families)
    assert graphs.families_recorded and graphs.family_count == 2


# --- errors -------------------------------------------------------------------------------


def merged_family(buffer) -> tuple[list[bytes], list]:
    blobs = variants(buffer)
    ((groups, slots, runs),) = recorded(blobs)
    return blobs, [groups, slots, [list(r) for r in runs]]


def refused(blobs: list[bytes], families: list, match: str) -> None:
    with pytest.raises(ArchiveCorrupt, match=match):
        restore(blobs, [tuple(f) for f in families])


def test_a_slot_beyond_the_template_is_refused(buffer) -> None:
    blobs, f = merged_family(buffer)
    f[2][1][-2] = f[1]  # the second group's last run starts past the last slot
    refused(blobs, [f], "not numbered once each")


def test_runs_that_skip_a_node_are_refused(buffer) -> None:
    blobs, f = merged_family(buffer)
    f[2][0][-1] -= 1  # the first group's last run ends one node early
    refused(blobs, [f], "group 0's nodes are not numbered")


def test_a_slot_no_group_holds_is_refused(buffer) -> None:
    blobs, f = merged_family(buffer)
    f[1] += 1
    refused(blobs, [f], "slot 6 is no group's node")


def test_nodes_an_update_cannot_turn_into_each_other_are_refused(buffer) -> None:
    # The cluster-1 GEMM put in the cluster-2 GEMM's slot: launch attributes differ.
    blobs = [chain(decode_like(8, buffer, cluster=2)), chain(decode_like(6, buffer, cluster=1))]
    refused(blobs, [([0, 1], 4, [[0, 0, 4], [0, 0, 4]])], "group 1's node 1 differs from slot 1")


def test_an_event_node_some_group_lacks_is_refused(buffer) -> None:
    base = decode_like(8, buffer, cluster=2)
    with_event = base[:2] + [{"type": "event_record", "event": 0}] + base[2:]
    blobs = [chain(with_event, events=1), chain(base)]
    runs = [[0, 0, 5], [0, 0, 2, 2, 3, 2]]
    refused(blobs, [([0, 1], 5, runs)], "slot 2, which some group lacks, holds a node that cannot")


def assert_replays_with_full_edges(blobs: list[bytes], families: list) -> None:
    graphs = restore(blobs, [tuple(f) for f in families])
    assert graphs.families_recorded and graphs.family_count == 1
    assert_template_runs_full_dependencies(graphs)


def test_a_programmatic_edge_to_a_slot_some_group_lacks_replays_as_a_full_edge(buffer) -> None:
    # Not refused: the merged template holds full dependencies only (disabled nodes then
    # carry no programmatic edge).
    plain = decode_like(8, buffer, cluster=1)
    split = decode_like(4, buffer + 4096, cluster=1, split_k=True)
    edges = [(0, 1, 0, 0, 0), (1, 2, 1, 0, PROGRAMMATIC), (2, 3, 0, 0, 0), (3, 4, 0, 0, 0)]
    blobs = [chain(split, edges), chain(plain)]
    assert_replays_with_full_edges(blobs, [([0, 1], 5, [[0, 0, 5], [0, 0, 2, 2, 3, 2]])])


def test_two_edge_types_on_one_pair_of_slots_replay_as_one_full_edge(buffer) -> None:
    blobs = [chain(four(8, buffer, 1)), chain(four(4, buffer, 1), LAST_PROGRAMMATIC)]
    assert_replays_with_full_edges(blobs, [([0, 1], 4, [[0, 0, 4], [0, 0, 4]])])


@pytest.mark.parametrize(
    ("families", "match"),
    [
        ([([0], 0, []), ([0], 0, [])], "both hold topology group 0"),
        ([([0], 0, [])], "group 1 is in none"),
        ([([0], 0, []), ([1], 0, [])], "names graph 1, which is no topology group"),
        ([([0], 3, [[0, 0, 5]]), ([2], 0, []), ([4], 0, [])], "a single group with a slot"),
        ([([2, 0], 6, [[], []]), ([4], 0, [])], "ascending order"),
        ([([0, 2], 6, [[0, 0, 5]]), ([4], 0, [])], "not one slot numbering per group"),
        ([([0, 2], 1 << 20, [[], []]), ([4], 0, [])], "impossible number of slots"),
        ([([0, 2], 6, [[0, 0], []]), ([4], 0, [])], "triples"),
    ],
)
def test_a_plan_that_does_not_partition_the_groups_is_refused(
    buffer, families: list, match: str
) -> None:
    refused(variants(buffer), families, match)


# --- fuzzing ------------------------------------------------------------------------------


def test_a_mangled_plan_is_refused_or_replays_exactly(buffer) -> None:
    # Whatever a hostile manifest records, LOAD either refuses it or builds a template that
    # launches each graph exactly as its own executable does; it never crashes.
    blobs, f = merged_family(buffer)
    rng = random.Random(7)
    accepted = 0
    for _ in range(150):
        slots, runs = f[1], [list(r) for r in f[2]]
        if rng.random() < 0.2:
            slots = max(1, slots + rng.choice([-2, -1, 1, 2]))
        for _ in range(rng.randint(1, 3)):
            r = rng.choice(runs)
            k = rng.randrange(len(r))
            r[k] = max(0, r[k] + rng.choice([-2, -1, 1, 2]))
        try:
            graphs = restore(blobs, [(f[0], slots, runs)])
        except ArchiveCorrupt:
            continue
        accepted += 1
        got = launch_records(graphs)
        assert got["template"] == got["own"] == got["reversed"], (slots, runs)
    assert 0 < accepted < 150, accepted
