"""SAVE refuses a graph whose kernel arguments point into device memory outside the kiln
region: LOAD could not reproduce that memory, and the restored graph would read or write
whatever lives there. Graphs are built on the fake driver (which cannot capture) from a
recorded library and walked as SAVE walks a captured graph; the fake's device memory is
whatever is mapped, so a second region on another device stands for memory allocated
while kiln's region was not in use."""

from __future__ import annotations

import gc
import struct
import uuid
from collections.abc import Iterator

import pytest
from kiln.errors import ExternalPointerError
from kiln_testing import testing

from ._restore_fixture import DEV, GRAN, close_fake, native, open_fake_region

t = testing

OTHER_DEV = 1
OTHER_BASE = 0x7E0000000000


@pytest.fixture
def buffers() -> Iterator[tuple[int, int]]:
    """(a buffer inside the region, a mapped buffer outside it)."""
    try:
        inside = open_fake_region(strict_context=False)
        native.region_open(OTHER_DEV, OTHER_BASE, 16 * GRAN, 0)
        outside = native.region_allocate(OTHER_DEV, GRAN)
        yield inside, outside
    finally:
        gc.collect()
        native.region_close(OTHER_DEV)
        close_fake()


def image(*entries: str) -> bytes:
    lines = [f"//fake name x{uuid.uuid4().hex}"] + [f"//fake entry {e}" for e in entries]
    return ("\n".join(lines) + "\n").encode() + b"\0"


def kernel(entry: str, args: bytes, params, pointers, *, extra: bool = False) -> dict:
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
            "region_pointers": pointers,
            "attributes": [],
            "function_attributes": [],
        },
    }


def walk_built(img: bytes, nodes: list[dict]):
    """Builds `nodes` (a chain, binary slot 0) from a recorded library and walks the graph as SAVE does."""
    library = t.load_library(img)
    binary = t.record_library(library, img)
    desc = {"nodes": nodes, "edges": [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)]}
    desc["event_count"] = 0
    kernels = native.make_kernel_table([img], [binary], device=-1)
    graph = t.build_kept_graph(native.GraphDesc.from_dict(desc), kernels, DEV)
    return native.walk_graph(t.graph_handle(graph), DEV)


def test_kernel_argument_into_device_memory_outside_the_region_is_refused_at_save(
    buffers,
) -> None:
    inside, outside = buffers
    nodes = [
        kernel("k0", struct.pack("<QI4x", inside, 1), [(0, 8), (8, 4)], [(0, inside)]),
        kernel("k1", struct.pack("<I4xQ", 3, outside), [(0, 4), (8, 8)], []),
    ]
    with pytest.raises(ExternalPointerError) as err:
        walk_built(image("k0 8,4", "k1 4,8"), nodes)
    assert (
        f"kernel k1 (graph node 1): argument 1 (byte 8) holds 0x{outside:x}, which points into "
        "device memory outside the kiln region" in str(err.value)
    )


def test_pointer_into_the_middle_of_an_outside_allocation_is_refused(buffers) -> None:
    _, outside = buffers
    ptr = outside + 4096
    nodes = [kernel("k0", struct.pack("<Q", ptr), [(0, 8)], [])]
    with pytest.raises(ExternalPointerError, match=f"argument 0 \\(byte 0\\) holds 0x{ptr:x}"):
        walk_built(image("k0 8"), nodes)


def test_extra_buffer_word_into_device_memory_outside_the_region_is_refused(buffers) -> None:
    # Kernels launched with one `extra` buffer (cuBLAS, cuDNN) have no parameter layout:
    # every aligned word is audited and named by its byte.
    inside, outside = buffers
    args = struct.pack("<QQQ", inside, 5, outside)
    nodes = [kernel("k0", args, [], [(0, inside)], extra=True)]
    with pytest.raises(
        ExternalPointerError, match=f"argument -1 \\(byte 16\\) holds 0x{outside:x}"
    ):
        walk_built(image("k0 8,8,8"), nodes)


def test_the_same_graph_with_every_pointer_inside_the_region_is_persisted(buffers) -> None:
    # The refusal is about where the pointer goes, not the graph's shape.
    inside, _ = buffers
    nodes = [
        kernel("k0", struct.pack("<QI4x", inside, 1), [(0, 8), (8, 4)], [(0, inside)]),
        kernel("k1", struct.pack("<I4xQ", 3, inside + 64), [(0, 4), (8, 8)], [(8, inside + 64)]),
    ]
    walked = walk_built(image("k0 8,4", "k1 4,8"), nodes).to_dict()
    assert [n["kernel"]["region_pointers"] for n in walked["nodes"]] == [
        [(0, inside)],
        [(8, inside + 64)],
    ]
