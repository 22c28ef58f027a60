"""Topology signatures and per-node differences: which graphs one instantiated template can
serve, and which nodes an exec update must change."""

from __future__ import annotations

import copy
import random
import zlib

import pytest

from .test_graph_blob import synthetic_graph

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")


def signature(d: dict) -> bytes:
    return native.topology_signature(native.GraphDesc.from_dict(d))


def differing(a: dict, b: dict) -> list[int]:
    return list(
        native.differing_nodes(native.GraphDesc.from_dict(a), native.GraphDesc.from_dict(b))
    )


def kernel(d: dict, i: int = 0) -> dict:
    return d["nodes"][i]["kernel"]


@pytest.mark.parametrize(
    "change",
    [
        lambda k: k.update(grid=(64, 1, 1)),
        lambda k: k.update(block=(128, 1, 1)),
        lambda k: k.update(shared_mem=1024),
        lambda k: k.update(args=bytes(len(k["args"]))),
        lambda k: k.update(entry="another_kernel", binary=3),
    ],
    ids=["grid", "block", "shared_mem", "args", "function"],
)
def test_updatable_kernel_parameters_keep_the_signature_and_are_listed(change) -> None:
    a = synthetic_graph()
    b = copy.deepcopy(a)
    change(kernel(b))
    assert signature(a) == signature(b)
    assert differing(a, b) == [0]


def test_identical_graphs_differ_nowhere() -> None:
    a = synthetic_graph()
    assert differing(a, copy.deepcopy(a)) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda d: kernel(d)["attributes"].pop(),
        lambda d: d["edges"].pop(),
        lambda d: d["edges"].__setitem__(0, (0, 1, 1, 0, 1)),
        lambda d: d["nodes"].append({"type": "empty"}),
        lambda d: d["nodes"].__setitem__(3, {"type": "event_record", "event": 0}),
        lambda d: d["nodes"][1].__setitem__(
            "memset", (0x7F0000200000, 4096, 512, 4, 0xDEADBEEF, 4)
        ),
        lambda d: d["nodes"][1].__setitem__("memset", (0x7F0000200000, 4096, 1024, 4, 0, 4)),
        lambda d: d["nodes"][2].__setitem__("memcpy", (99,) + tuple(range(2, 16))),
    ],
    ids=[
        "launch-attribute",
        "edge-removed",
        "edge-type",
        "node-added",
        "node-type",
        "memset-width",
        "memset-value",
        "2d-memcpy-address",
    ],
)
def test_what_exec_updates_cannot_change_splits_the_group(change) -> None:
    a = synthetic_graph()
    b = copy.deepcopy(a)
    change(b)
    assert signature(a) != signature(b)


def test_edge_order_does_not_matter() -> None:
    a = synthetic_graph()
    b = copy.deepcopy(a)
    b["edges"].reverse()
    assert signature(a) == signature(b)


@pytest.mark.parametrize("outside", [False, True], ids=["graph", "edge-from-outside"])
def test_edge_order_does_not_matter_with_fan_out_and_parallel_edges(outside: bool) -> None:
    # Several edges per node and node pairs joined twice (ports and types break the tie);
    # from_dict does not check edges, so one may start outside the graph.
    a = synthetic_graph()
    n = len(a["nodes"])
    edges = [(f, t, p, 0, p) for f in range(n) for t in range(f + 1, n) for p in (0, 1)]
    if outside:
        edges.append((n + 5, 0, 0, 0, 0))
    a["edges"] = edges
    for seed in range(4):
        b = copy.deepcopy(a)
        b["edges"] = random.Random(seed).sample(edges, len(edges))
        assert signature(a) == signature(b)


def test_memset_address_and_1d_memcpy_addresses_are_updates() -> None:
    a = synthetic_graph()
    a["nodes"][2]["memcpy"] = (
        0x7F0000200000,
        0,
        0,
        0,
        0,
        0,
        0x7F0000400000,
        0,
        0,
        0,
        0,
        0,
        256,
        1,
        1,
    )
    b = copy.deepcopy(a)
    b["nodes"][1]["memset"] = (0x7F0000800000,) + tuple(a["nodes"][1]["memset"][1:])
    b["nodes"][2]["memcpy"] = (0x7F0000600000,) + tuple(a["nodes"][2]["memcpy"][1:])
    assert signature(a) == signature(b)
    assert differing(a, b) == [1, 2]


def test_param_bytes_counts_arguments_and_memory_operands() -> None:
    d = synthetic_graph()
    desc = native.GraphDesc.from_dict(d)
    args = sum(len(n["kernel"]["args"]) for n in d["nodes"] if n["type"] == "kernel")
    assert desc.param_bytes > args  # plus the memset and memcpy operands


def difference(a: dict, b: dict) -> str:
    return native.topology_difference(native.GraphDesc.from_dict(a), native.GraphDesc.from_dict(b))


def test_difference_is_empty_when_a_template_can_be_shared() -> None:
    a = synthetic_graph()
    b = copy.deepcopy(a)
    kernel(b).update(grid=(7, 1, 1))
    assert difference(a, b) == ""


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d["nodes"].append({"type": "empty"}), "7 nodes against 8"),
        (
            lambda d: kernel(d)["attributes"].__setitem__(0, (1, bytes(64))),
            "launch attribute 1 differs",
        ),
        (lambda d: kernel(d)["attributes"].pop(), "which are set"),
        (lambda d: d["edges"].__setitem__(0, (0, 1, 1, 0, 1)), "edges differ"),
        (
            lambda d: d["nodes"].__setitem__(3, {"type": "event_record", "event": 0}),
            "is a empty node",
        ),
    ],
    ids=["node-count", "attribute-value", "attribute-set", "edge-type", "node-type"],
)
def test_difference_names_what_splits_two_graphs(change, words: str) -> None:
    a = synthetic_graph()
    b = copy.deepcopy(a)
    change(b)
    assert words in difference(a, b)


# --- grouping -----------------------------------------------------------------------------


def test_graphs_group_by_signature_numbered_by_first_member() -> None:
    sigs = [b"a" * 64, b"b" * 64, b"a" * 64, b"c" * 64, b"b" * 64]
    hashes = [zlib.crc32(s) for s in sigs]
    assert native.group_by_signature(sigs, hashes) == [0, 1, 0, 2, 1]


@pytest.mark.parametrize("collide", ["all", "first_two"])
def test_signatures_whose_hashes_collide_are_told_apart_by_their_bytes(collide: str) -> None:
    # Regression guard for the byte-for-byte confirmation: a hash collision must never put
    # two topologies in one group (one template would replay the wrong graph).
    sigs = [b"x" * 300_000, b"y" * 300_000, b"x" * 300_000, b"z"]
    hashes = [7, 7, 7, 7] if collide == "all" else [7, 7, 8, 9]
    assert native.group_by_signature(sigs, hashes) == [0, 1, 0, 2]


def test_one_hash_per_signature_is_required() -> None:
    with pytest.raises(Exception, match="one hash per signature"):
        native.group_by_signature([b"a", b"b"], [1])
