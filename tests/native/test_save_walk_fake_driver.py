"""SAVE's side on the fake driver: how a graph's kernel handles are identified and how the
walk reads a graph back. LOAD builds the graphs here (the fake cannot capture), from
libraries the application loaded and kiln recorded, so their functions reach the walk
with handles the registry never saw, as cudart's per-context functions do on a GPU."""

from __future__ import annotations

import gc
import itertools
import struct
import uuid

import pytest
from kiln.errors import NonPersistableGraph
from kiln_testing import testing

from ._restore_fixture import DEV, close_fake, native, open_fake_region

t = testing

PRIORITY = 8  # CU_LAUNCH_ATTRIBUTE_PRIORITY
# What the walk reads of every kernel's function: the attributes an application sets.
FUNCTION_ATTRIBUTES = [(8, 1024), (9, 0), (14, 0), (15, 0)]


@pytest.fixture
def buffer():
    try:
        yield open_fake_region(strict_context=False)
    finally:
        gc.collect()
        close_fake()


def image(*entries: str) -> bytes:
    """A library no other test loads: binary ids and the walk's layout cache are per process."""
    lines = [f"//fake name t{uuid.uuid4().hex}"] + [f"//fake entry {e}" for e in entries]
    return ("\n".join(lines) + "\n").encode() + b"\0"


def load_recorded(img: bytes) -> tuple[int, int]:
    library = t.load_library(img)
    return library, t.record_library(library, img)


def calls(name: str) -> int:
    return t.fake_graph_stats()[name]


# --- identification ----------------------------------------------------------------------


def test_a_function_no_hook_saw_is_identified_by_its_library(buffer) -> None:
    library, binary = load_recorded(image("k0 8,4", "k1 8"))
    assert t.identify_kernel(t.unrecorded_function(library, "k1")) == (binary, "k1")


def test_identifying_a_handle_again_asks_no_library(buffer) -> None:
    library, binary = load_recorded(image("k0 8,4"))
    function = t.unrecorded_function(library, "k0")
    before = calls("library_get_kernel_calls")
    assert t.identify_kernel(function) == (binary, "k0")
    assert calls("library_get_kernel_calls") > before
    before = calls("library_get_kernel_calls")
    assert t.identify_kernel(function) == (binary, "k0")
    assert calls("library_get_kernel_calls") == before


def test_an_unload_makes_identification_ask_the_libraries_again(buffer) -> None:
    library, binary = load_recorded(image("k0 8,4"))
    other, _ = load_recorded(image("k0 8,4"))
    function = t.unrecorded_function(library, "k0")
    assert t.identify_kernel(function) == (binary, "k0")
    t.unload_library(other)
    before = calls("library_get_kernel_calls")
    assert t.identify_kernel(function) == (binary, "k0")
    assert calls("library_get_kernel_calls") > before


def test_a_function_of_an_unloaded_library_is_no_longer_identified(buffer) -> None:
    # Its handle may be reused by a later load: a remembered identity would name the wrong kernel.
    library, binary = load_recorded(image("k0 8,4"))
    function = t.unrecorded_function(library, "k0")
    assert t.identify_kernel(function) == (binary, "k0")
    t.unload_library(library)
    assert t.identify_kernel(function) is None


def test_an_unknown_handle_has_no_identity(buffer) -> None:
    load_recorded(image("k0 8,4"))
    assert t.identify_kernel(0x5EED0) is None
    assert t.identify_kernel(0x5EED0) is None


def test_a_failed_identification_is_not_remembered(buffer) -> None:
    img = image("k0 8,4")
    load_recorded(image("k0 8,4"))  # a recorded library that does not hold the function
    library = t.load_library(img)  # loaded before kiln was enabled: not recorded
    function = t.unrecorded_function(library, "k0")
    for _ in range(2):
        before = calls("library_get_kernel_calls")
        assert t.identify_kernel(function) is None
        assert calls("library_get_kernel_calls") > before
    binary = t.record_library(library, img)
    assert t.identify_kernel(function) == (binary, "k0")


# --- handles of unloaded binaries -------------------------------------------------------
# What the hooks recorded for a module's or library's handles must go when it is unloaded:
# the driver may hand the same handle values to a later load of another binary, and SAVE
# would archive (and LOAD run) the old kernel for a graph node of the new one.

# Module and function handles for the fake driver's missing modules: never a real pointer,
# and unique in the process (the registry outlives each test).
_made_up = itertools.count(0x7E57_0000_0000, 0x10)


def made_up() -> int:
    return next(_made_up)


def reuse(*entries: str) -> bytes:
    """An image whose load takes the handles of the library unloaded last."""
    return image(*entries).replace(b"\n", b"\n//fake reuse-handles\n", 1)


def test_handle_reused_after_unload_is_not_identified_as_the_old_kernel(buffer) -> None:
    old, old_binary = load_recorded(image("k0 8,4"))
    kernel, function = t.recorded_function(old, "k0")
    assert t.identify_kernel(function) == t.identify_kernel(kernel) == (old_binary, "k0")
    t.unload_library(old)
    new_img = reuse("k0 8,4")
    new, new_binary = load_recorded(new_img)
    assert new_binary != old_binary
    # The new library's handles are the old ones, as the driver may hand them out.
    assert (new, t.unrecorded_function(new, "k0")) == (old, function)
    assert t.identify_kernel(function) == t.identify_kernel(kernel) == (new_binary, "k0")


def test_handle_reused_after_unload_by_an_unrecorded_load_has_no_identity(buffer) -> None:
    old, old_binary = load_recorded(image("k0 8,4"))
    kernel, function = t.recorded_function(old, "k0")
    assert t.identify_kernel(function) == (old_binary, "k0")
    t.unload_library(old)
    new = t.load_library(reuse("k0 8,4"))  # kiln never saw it: its kernels cannot be archived
    assert (new, t.unrecorded_function(new, "k0")) == (old, function)
    assert t.identify_kernel(function) is None
    assert t.identify_kernel(kernel) is None


def test_handle_reused_after_an_unseen_unload_is_not_identified_as_the_old_kernel(buffer) -> None:
    # An unload while kiln was disabled leaves its records; a load that returns the same
    # handle shows that the earlier binary behind it is gone.
    old, old_binary = load_recorded(image("k0 8,4"))
    kernel, function = t.recorded_function(old, "k0")
    assert t.identify_kernel(function) == (old_binary, "k0")
    t.unload_library(old, hooked=False)
    new, new_binary = load_recorded(reuse("k0 8,4"))
    assert (new, t.unrecorded_function(new, "k0")) == (old, function)
    assert t.identify_kernel(function) == t.identify_kernel(kernel) == (new_binary, "k0")


def test_unload_of_one_handle_keeps_the_same_binary_loaded_elsewhere_identified(buffer) -> None:
    img = image("k0 8,4")
    first, binary = load_recorded(img)
    second, again = load_recorded(img)
    assert again == binary  # one binary (content-deduplicated), two live libraries
    gone = t.recorded_function(first, "k0")
    kept = t.recorded_function(second, "k0")
    t.unload_library(first)
    assert [t.identify_kernel(h) for h in gone] == [None, None]
    # The other library's handles are still known from their hooks: no driver search.
    before = calls("library_get_kernel_calls")
    assert [t.identify_kernel(h) for h in kept] == [(binary, "k0")] * 2
    assert calls("library_get_kernel_calls") == before
    assert native.binary_loaded(binary)


def test_a_function_of_an_unloaded_module_is_no_longer_identified(buffer) -> None:
    binary = native.record_image(image("k0 8,4"), "test")
    module, kept_module, function, kept = made_up(), made_up(), made_up(), made_up()
    t.record_module(module, binary)
    t.record_module(kept_module, binary)
    t.record_module_function(function, module, "k0")
    t.record_module_function(kept, kept_module, "k0")
    assert t.identify_kernel(function) == (binary, "k0")
    t.unload_module(module)
    assert t.identify_kernel(function) is None
    assert t.identify_kernel(kept) == (binary, "k0")


def test_a_library_unload_forgets_its_modules_and_their_functions(buffer) -> None:
    # cuLibraryGetModule's module (and what cuModuleGetFunction found in it) dies with its library.
    library, binary = load_recorded(image("k0 8,4"))
    module, function = made_up(), made_up()
    t.record_library_module(module, library)
    t.record_module_function(function, module, "k0")
    assert t.identify_kernel(function) == (binary, "k0")
    t.unload_library(library)
    assert t.identify_kernel(function) is None
    assert not native.binary_loaded(binary)  # LOAD must not resolve kernels from the dead module
    late = made_up()
    t.record_module_function(late, module, "k0")  # the dead module names no binary now
    assert t.identify_kernel(late) is None


# --- the walk ------------------------------------------------------------------------------


def kernel(slot: int, entry: str, args: bytes, params, pointers, attributes=()) -> dict:
    return {
        "type": "kernel",
        "kernel": {
            "binary": slot,
            "entry": entry,
            "grid": (4, 2, 1),
            "block": (128, 1, 1),
            "shared_mem": 512,
            "extra_buffer": False,
            "args": args,
            "params": params,
            "region_pointers": pointers,
            "attributes": list(attributes),
            "function_attributes": FUNCTION_ATTRIBUTES,
        },
    }


def description(slot: int, ptr: int) -> dict:
    """Kernels of two entries (one with a launch priority), an event, a memset, an empty node."""
    priority = [(PRIORITY, struct.pack("<i60x", 3))]
    nodes = [
        kernel(slot, "k0", struct.pack("<QI", ptr, 7), [(0, 8), (8, 4)], [(0, ptr)]),
        {"type": "event_record", "event": 0},
        kernel(slot, "k1", struct.pack("<Q", ptr + 64), [(0, 8)], [(0, ptr + 64)], priority),
        {"type": "event_wait", "event": 0},
        kernel(slot, "k0", struct.pack("<QI", ptr + 128, 9), [(0, 8), (8, 4)], [(0, ptr + 128)]),
        {"type": "memset", "memset": (ptr, 0, 64, 1, 0, 1)},
        {"type": "empty"},
    ]
    return {
        "nodes": nodes,
        "edges": [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)],
        "event_count": 1,
    }


def with_binary(desc: dict, binary: int) -> dict:
    for node in desc["nodes"]:
        if node["type"] == "kernel":
            node["kernel"]["binary"] = binary
    return desc


def build(img: bytes, binary: int, desc: dict):
    """The description as a graph of the fake driver, its kernels from the recorded library
    (the application's, which the kernel table does not own)."""
    kernels = native.make_kernel_table([img], [binary], device=-1)
    return t.build_kept_graph(native.GraphDesc.from_dict(desc), kernels, DEV)


def walk(graph) -> dict:
    return native.walk_graph(t.graph_handle(graph), DEV).to_dict()


def test_a_built_graph_walks_back_to_its_description(buffer) -> None:
    img = image("k0 8,4", "k1 8")
    _, binary = load_recorded(img)
    desc = description(0, buffer)
    graph = build(img, binary, desc)
    assert walk(graph) == with_binary(desc, binary)


def test_walking_again_asks_the_driver_for_no_identity_or_parameter_layout(buffer) -> None:
    img = image("k0 8,4", "k1 8")
    _, binary = load_recorded(img)
    desc = description(0, buffer)
    graph = build(img, binary, desc)
    before = calls("param_info_calls"), calls("library_get_kernel_calls")
    first = walk(graph)
    # Each entry's layout is read once (two parameters and one past the end for k0).
    assert calls("param_info_calls") - before[0] == 3 + 2
    assert calls("library_get_kernel_calls") > before[1]
    # A second graph of the same kernels, as the next batch size's capture would be.
    again = build(img, binary, desc)
    before = calls("param_info_calls"), calls("library_get_kernel_calls")
    assert walk(again) == walk(graph) == first
    assert (calls("param_info_calls"), calls("library_get_kernel_calls")) == before


def test_an_implausible_parameter_layout_fails_every_walk(buffer) -> None:
    # A failure is not remembered: the next walk reads the layout and fails the same way.
    size = 2 << 20
    img = image(f"huge {size}")
    _, binary = load_recorded(img)
    desc = {
        "nodes": [kernel(0, "huge", bytes(size), [(0, size)], [])],
        "edges": [],
        "event_count": 0,
    }
    graph = build(img, binary, desc)
    for _ in range(2):
        before = calls("param_info_calls")
        with pytest.raises(NonPersistableGraph, match="kernel huge: implausible parameter layout"):
            walk(graph)
        assert calls("param_info_calls") > before
