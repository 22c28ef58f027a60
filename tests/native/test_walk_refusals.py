"""What the SAVE walk refuses by name, on the fake driver: launch attributes kiln does not
restore, events shared with code outside the graph, tensor maps whose encoded address kiln
cannot reproduce. LOAD builds each graph here (the fake cannot capture) and the walk reads
it back as it reads a captured one."""

from __future__ import annotations

import gc
import struct
import uuid

import pytest
from kiln.errors import NonPersistableGraph
from kiln_testing import testing

from ._restore_fixture import DEV, GRAN, close_fake, native, open_fake_region

t = testing

DEVICE_UPDATABLE_KERNEL_NODE = 13
PROGRAMMATIC_EVENT = 7
PRIORITY = 8


@pytest.fixture
def buffer():
    try:
        t.forget_events_and_tensor_maps()
        yield open_fake_region(strict_context=False)
    finally:
        gc.collect()
        close_fake()
        t.forget_events_and_tensor_maps()


def image(*entries: str) -> bytes:
    lines = [f"//fake name t{uuid.uuid4().hex}"] + [f"//fake entry {e}" for e in entries]
    return ("\n".join(lines) + "\n").encode() + b"\0"


def kernel(entry: str, args: bytes, params, pointers, attributes=()) -> dict:
    return {
        "type": "kernel",
        "kernel": {
            "binary": 0,
            "entry": entry,
            "grid": (1, 1, 1),
            "block": (32, 1, 1),
            "shared_mem": 0,
            "extra_buffer": False,
            "args": args,
            "params": params,
            "region_pointers": pointers,
            "attributes": list(attributes),
            "function_attributes": [],
        },
    }


def graph_of(nodes: list[dict], events: int = 0) -> dict:
    return {
        "nodes": nodes,
        "edges": [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)],
        "event_count": events,
    }


def build(entries: tuple[str, ...], desc: dict):
    img = image(*entries)
    library = t.load_library(img)
    binary = t.record_library(library, img)
    kernels = native.make_kernel_table([img], [binary], device=-1)
    return t.build_kept_graph(native.GraphDesc.from_dict(desc), kernels, DEV)


def walk(graph) -> dict:
    return native.walk_graph(t.graph_handle(graph), DEV).to_dict()


def pointer_kernel(ptr: int, attributes=()) -> dict:
    return kernel("k0", struct.pack("<Q", ptr), [(0, 8)], [(0, ptr)], attributes)


# --- launch attributes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "name"),
    [
        (DEVICE_UPDATABLE_KERNEL_NODE, "DEVICE_UPDATABLE_KERNEL_NODE"),
        (PROGRAMMATIC_EVENT, "PROGRAMMATIC_EVENT"),
    ],
)
def test_a_launch_attribute_kiln_does_not_restore_is_refused_by_name(buffer, attribute, name):
    value = struct.pack("<Q56x", 1)
    graph = build(("k0 8",), graph_of([pointer_kernel(buffer, [(attribute, value)])]))
    with pytest.raises(
        NonPersistableGraph, match=rf"graph node 0\) carries launch attribute {name}"
    ):
        walk(graph)


def test_a_copied_launch_attribute_is_kept(buffer):
    value = struct.pack("<i60x", 3)
    graph = build(("k0 8",), graph_of([pointer_kernel(buffer, [(PRIORITY, value)])]))
    assert walk(graph)["nodes"][0]["kernel"]["attributes"] == [(PRIORITY, value)]


# --- events --------------------------------------------------------------------------------


def test_an_event_the_graph_waits_on_but_never_records_is_refused(buffer):
    desc = graph_of([pointer_kernel(buffer), {"type": "event_wait", "event": 0}], events=1)
    graph = build(("k0 8",), desc)
    with pytest.raises(
        NonPersistableGraph, match="graph node 1 .*waits on an event it never records"
    ):
        walk(graph)


def test_an_event_the_graph_records_but_never_waits_on_is_refused(buffer):
    desc = graph_of([{"type": "event_record", "event": 0}, pointer_kernel(buffer)], events=1)
    graph = build(("k0 8",), desc)
    with pytest.raises(
        NonPersistableGraph, match="graph node 0 .*records an event it never waits on"
    ):
        walk(graph)


def _recorded_and_waited(buffer: int) -> dict:
    return graph_of(
        [
            {"type": "event_record", "event": 0},
            pointer_kernel(buffer),
            {"type": "event_wait", "event": 0},
        ],
        events=1,
    )


def _event_of(graph) -> int:
    """The fake driver's event handle of the graph's event nodes."""
    return int(t.graph_events(t.graph_handle(graph))[0])


def test_an_event_recorded_and_waited_inside_the_graph_alone_is_kept(buffer):
    graph = build(("k0 8",), _recorded_and_waited(buffer))
    assert walk(graph)["event_count"] == 1
    assert native.event_violation() == ""


def test_an_event_code_outside_the_graph_used_first_is_refused(buffer):
    graph = build(("k0 8",), _recorded_and_waited(buffer))
    t.eager_event_use(_event_of(graph), "cuEventSynchronize")
    with pytest.raises(
        NonPersistableGraph, match=r"outside the graph also used \(cuEventSynchronize\)"
    ):
        walk(graph)


def test_an_event_code_outside_the_graph_uses_after_the_walk_is_a_violation(buffer):
    graph = build(("k0 8",), _recorded_and_waited(buffer))
    walk(graph)
    t.eager_event_use(_event_of(graph), "cuStreamWaitEvent")
    assert "cuStreamWaitEvent after the capture" in native.event_violation()


# --- tensor maps ---------------------------------------------------------------------------


def _map_bytes(words: list[int]) -> bytes:
    return struct.pack("<16Q", *(words + [0] * (16 - len(words))))


def test_a_tensor_map_holding_its_region_address_is_recorded_as_a_pointer(buffer):
    tensor_map = _map_bytes([buffer, 0x1234])
    t.record_tensor_map(tensor_map, buffer)
    graph = build(("tm 128",), graph_of([kernel("tm", tensor_map, [(0, 128)], [(0, buffer)])]))
    assert walk(graph)["nodes"][0]["kernel"]["region_pointers"] == [(0, buffer)]


def test_a_tensor_map_encoding_its_address_in_another_form_is_refused(buffer):
    # The map's words never equal the address it encodes: kiln could not check it at LOAD.
    tensor_map = _map_bytes([buffer >> 4, 0x1234])
    t.record_tensor_map(tensor_map, buffer)
    graph = build(("tm 128",), graph_of([kernel("tm", tensor_map, [(0, 128)], [])]))
    with pytest.raises(
        NonPersistableGraph, match="tensor map at argument byte 0 encodes .* cannot record"
    ):
        walk(graph)


def test_a_tensor_map_over_memory_no_allocation_holds_is_refused(buffer):
    free = buffer + 8 * GRAN  # inside the region, past every allocation
    tensor_map = _map_bytes([free >> 4])
    t.record_tensor_map(tensor_map, free)
    graph = build(("tm 128",), graph_of([kernel("tm", tensor_map, [(0, 128)], [])]))
    with pytest.raises(NonPersistableGraph, match="not in a live allocation"):
        walk(graph)


def test_a_128_byte_argument_that_is_no_known_tensor_map_is_left_to_the_word_audit(buffer):
    t.record_tensor_map(_map_bytes([buffer, 1]), buffer)  # another map
    args = _map_bytes([buffer >> 4, 7])
    graph = build(("tm 128",), graph_of([kernel("tm", args, [(0, 128)], [])]))
    assert walk(graph)["nodes"][0]["kernel"]["region_pointers"] == []


# --- unknown kernels ------------------------------------------------------------------------


def test_a_kernel_from_a_binary_kiln_never_saw_is_refused_with_what_kiln_saw(buffer):
    # Regression: the message guessed "loaded before kiln was enabled" for every unknown
    # kernel, also for those whose loads bypassed kiln (Triton's launcher).
    from kiln.errors import UnknownKernelError

    img = image("k0 8")
    kernels = native.make_kernel_table([img], [-1], device=-1)  # kiln's own load: never recorded
    graph = t.build_kept_graph(
        native.GraphDesc.from_dict(graph_of([pointer_kernel(buffer)])), kernels, DEV
    )
    with pytest.raises(
        UnknownKernelError,
        match=r"kernel k0 \(graph node 0\) comes from a binary kiln did not "
        r"record: .*binaries recorded while kiln was enabled",
    ):
        walk(graph)


def test_past_the_eager_event_capacity_every_event_claim_is_refused(buffer):
    # The registry is bounded (a server makes events for its whole life); once it cannot keep
    # every eager use, it cannot prove an event unshared.
    for handle in range(0x10_0000, 0x10_0000 + (1 << 18) + 1):
        t.eager_event_use(handle, "cuEventQuery")
    graph = build(("k0 8",), _recorded_and_waited(buffer))
    with pytest.raises(NonPersistableGraph, match="kiln cannot tell"):
        walk(graph)


def test_save_refuses_the_archive_when_eager_code_used_a_graphs_event_after_its_capture(
    buffer,
):
    from types import SimpleNamespace

    from kiln.graphs import store

    graph = build(("k0 8",), _recorded_and_waited(buffer))
    walk(graph)
    t.eager_event_use(_event_of(graph), "cuEventSynchronize")
    session = SimpleNamespace(window=(0, 0), graphs=[object()], region=None)
    with pytest.raises(NonPersistableGraph, match="cuEventSynchronize after the capture"):
        store.archive_sections(session)
