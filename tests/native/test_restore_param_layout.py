"""LOAD hands each kernel node's argument bytes to the driver, which reads one buffer per
parameter of the loaded function. An archive whose recorded layout disagrees with the
function (another image under the same name, a corrupt or hostile archive) must be refused
by name before any of its bytes reach the driver: with fewer recorded parameters than the
function takes, build_graph used to crash the process (the driver read past the recorded
parameter list)."""

from __future__ import annotations

import struct

import pytest
from kiln.errors import RestoreError
from kiln_testing import testing

from ._restore_fixture import DEV, archive, graph, native


def node(entry: str, args: bytes, params: list[tuple[int, int]], *, extra: bool = False) -> dict:
    return {
        "type": "kernel",
        "kernel": {
            "binary": 0,
            "entry": entry,
            "grid": (1, 1, 1),
            "block": (32, 1, 1),
            "shared_mem": 0,
            "extra_buffer": extra,
            "args": args,
            "params": params,
            "region_pointers": [],
            "attributes": [],
            "function_attributes": [],
        },
    }


def build(entry_sizes: str, *nodes: dict):
    """build_graph for a chain of `nodes` launching kernel k0 of an image whose k0 takes
    parameters of `entry_sizes` bytes (e.g. "8,4")."""
    img = ("//fake name layout\n//fake entry k0 " + entry_sizes + "\n").encode() + b"\0"
    desc = {
        "nodes": [{"type": "empty"}, *nodes],
        "edges": [(i, i + 1, 0, 0, 0) for i in range(len(nodes))],
        "event_count": 0,
    }
    kernels = native.make_kernel_table([img], [-1], device=DEV)
    return native.build_graph(native.GraphDesc.from_dict(desc), kernels, DEV)


def assert_nothing_built() -> None:
    stats = testing.fake_graph_stats()
    assert stats["live_graphs"] == 0 and stats["instantiations"] == 0, stats


def test_image_with_more_parameters_than_recorded_raises_instead_of_crashing(buffer) -> None:
    # The regression: the function takes three parameters, the archive recorded two.
    args = struct.pack("<QI4x", buffer, 7)
    with pytest.raises(
        RestoreError,
        match=r"kernel k0 \(graph node 1\): the archive records 2 parameters, "
        r"the loaded function takes 3",
    ):
        build("8,4,8", node("k0", args, [(0, 8), (8, 4)]))
    assert_nothing_built()


def test_image_with_fewer_parameters_than_recorded_is_refused(buffer) -> None:
    args = struct.pack("<QI4x", buffer, 7)
    with pytest.raises(RestoreError, match=r"records 2 parameters, the loaded function takes 1"):
        build("8", node("k0", args, [(0, 8), (8, 4)]))
    assert_nothing_built()


def test_parameter_of_another_size_is_refused(buffer) -> None:
    args = struct.pack("<QQ", buffer, 7)
    with pytest.raises(
        RestoreError,
        match=r"kernel k0 \(graph node 1\): parameter 1 is recorded at byte 8 with 4 bytes, "
        r"the loaded function has it at byte 8 with 8 bytes",
    ):
        build("8,8", node("k0", args, [(0, 8), (8, 4)]))
    assert_nothing_built()


def test_parameter_at_another_offset_is_refused(buffer) -> None:
    args = struct.pack("<IIQ", 1, 2, buffer)
    with pytest.raises(
        RestoreError, match=r"parameter 1 is recorded at byte 4 with 4 bytes, .* at byte 8 with 8"
    ):
        build("4,8", node("k0", args, [(0, 4), (4, 4)]))
    assert_nothing_built()


def test_argument_bytes_shorter_than_the_layout_are_refused(buffer) -> None:
    # The layout matches, but the bytes end inside it: the driver would read past them.
    with pytest.raises(
        RestoreError,
        match=r"kernel k0 \(graph node 2\): its 8 argument bytes do not cover the function's "
        r"parameters \(12 bytes\)",
    ):
        build(
            "8,4",
            node("k0", struct.pack("<QI4x", buffer, 1), [(0, 8), (8, 4)]),
            node("k0", struct.pack("<Q", buffer), [(0, 8), (8, 4)]),
        )
    assert_nothing_built()


def test_extra_buffer_shorter_than_the_functions_parameters_is_refused(buffer) -> None:
    with pytest.raises(RestoreError, match=r"its 8 argument bytes do not cover .* \(16 bytes\)"):
        build("8,8", node("k0", struct.pack("<Q", buffer), [], extra=True))
    assert_nothing_built()


def test_matching_layouts_build(buffer) -> None:
    args = struct.pack("<QI4x", buffer, 7)
    graph = build("8,4", node("k0", args, [(0, 8), (8, 4)]))
    assert graph.node_count == 2
    extra = build("8,4", node("k0", args, [], extra=True))
    assert extra.node_count == 2


def test_a_member_graph_with_another_layout_fails_its_family_at_wait(buffer) -> None:
    # Through the templates: one member's recorded layout disagrees with the archive's
    # image; the set reports it (no switch hands its bytes to the driver).
    arc = archive(buffer)
    desc = graph(5, 4, 6, buffer, 1024)  # what archive() encodes as graph 3
    assert native.GraphDesc.from_dict(desc).encode() == arc.blobs[3]
    desc["nodes"][2]["kernel"]["params"] = [(0, 8)]
    arc.blobs[3] = native.GraphDesc.from_dict(desc).encode()
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)
    graphs.start(False)
    with pytest.raises(
        RestoreError,
        match=r"kernel k2 \(graph node 2 of graph 3\): the archive records 1 parameter, "
        r"the loaded function takes 2",
    ):
        graphs.wait_all(False)
    del graphs, kernels
