"""A small synthetic archive for CPU tests of LOAD on the fake driver: kernel images in the
fake's text form (see tests/native_support/src/testing/fake_graphs.h) and graph blobs in two topology
groups whose members differ in kernel arguments, grids and shared memory."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from kiln_testing import testing

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

DEV = 0
GRAN = 2 << 20
BASE = 0x7F0000000000
SIZE = 64 * GRAN
ENTRIES = ("k0", "k1", "k2")


def image(slot: int, *, delay_ms: int = 0, fail: bool = False, entries=ENTRIES) -> bytes:
    lines = [f"//fake name b{slot}"] + [f"//fake entry {e} 8,4" for e in entries]
    if delay_ms:
        lines.append(f"//fake delay-ms {delay_ms}")
    if fail:
        lines.append("//fake fail-load")
    return ("\n".join(lines) + "\n").encode() + b"\0"


CLUSTER_DIMENSION = 4  # CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION


def kernel(slot: int, entry: str, bs: int, ptr: int, shared: int = 0, cluster: int = 0) -> dict:
    """A kernel node; `cluster` > 0 launches it with that cluster size (a launch attribute
    exec updates cannot change)."""
    attributes = []
    if cluster:
        attributes.append((CLUSTER_DIMENSION, struct.pack("<3I", cluster, 1, 1).ljust(64, b"\0")))
    return {
        "type": "kernel",
        "kernel": {
            "binary": slot,
            "entry": entry,
            "grid": (bs, 1, 1),
            "block": (128, 1, 1),
            "shared_mem": shared,
            "extra_buffer": False,
            "args": struct.pack("<QI4x", ptr, bs),
            "params": [(0, 8), (8, 4)],
            "region_pointers": [(0, ptr)],
            "attributes": attributes,
            "function_attributes": [],
        },
    }


def graph(bs: int, nodes: int, slots: int, buffer: int, shared: int = 0) -> dict:
    """`nodes` kernels in a chain (their slots and entries fixed by position, so graphs of
    one node count share a topology), then a memset; arguments depend on `bs`."""
    ptr = buffer + 256 * bs
    ns = [kernel(i % slots, ENTRIES[i % 3], bs, ptr, shared if i == 0 else 0) for i in range(nodes)]
    ns.append({"type": "memset", "memset": (ptr, 0, 64, 1, 0, 1)})  # shape: topology
    return {
        "nodes": ns,
        "edges": [(i, i + 1, 0, 0, 0) for i in range(nodes)],
        "event_count": 0,
    }


@dataclass
class Archive:
    images: list[bytes]
    blobs: list[bytes]


def archive(buffer: int, *, slots: int = 6, fail_slot: int = -1, delay_ms: int = 0) -> Archive:
    """Eight graphs: batch sizes 8..1 (largest first, as engines capture), alternating
    between two topologies (7 and 4 kernels); the first graph of each group needs more
    shared memory than the others."""
    images = [image(s, delay_ms=delay_ms, fail=s == fail_slot) for s in range(slots)]
    blobs = []
    for k, bs in enumerate(range(8, 0, -1)):
        nodes = 7 if k % 2 == 0 else 4
        shared = 4096 * bs if k < 2 else 1024
        blobs.append(native.GraphDesc.from_dict(graph(bs, nodes, slots, buffer, shared)).encode())
    return Archive(images, blobs)


def open_fake_region(strict_context: bool = True) -> int:
    """A fresh fake driver and region; returns a backed buffer for the graphs' operands."""
    close_fake()
    testing.install_fake_driver(granularity=GRAN, strict_context=strict_context)
    native.region_open(DEV, BASE, SIZE, 0)
    return native.region_allocate(DEV, 4 * GRAN)


def close_fake() -> None:
    native.region_close(DEV)
    testing.uninstall_fake_driver()


def launch_records(graphs) -> dict[str, list[str]]:
    """What each graph launches through its template (switched there from another member:
    in order, then in reverse) and through its own executable; "reversed" is listed back
    in graph order."""
    n = len(graphs)
    testing.clear_fake_launches()
    graphs.wait_all(False)
    for i in list(range(n)) + list(reversed(range(n))):
        graphs.launch_template(i, 0)
    graphs.wait_all(True)
    for i in range(n):
        graphs.launch(i, 0)
    records = testing.fake_launches()
    return {"template": records[:n], "reversed": records[n : 2 * n][::-1], "own": records[2 * n :]}


def as_full_dependencies(record: str) -> str:
    """A launch record with every edge a full dependency (no ports, no type): what a merged
    template runs for a graph whose own executable has programmatic edges."""
    return re.sub(r"^(edge \d+>\d+) \S+$", r"\1 0,0,0", record, flags=re.MULTILINE)


def sections_and_manifest(arc: Archive) -> tuple[dict[str, bytes], SimpleNamespace]:
    """The archive's images as sections b0.., its blobs as g0.., and the manifest fields
    store.load_kernels / start_graphs read (no recorded groups or families)."""
    from kiln.archive.manifest import BinaryEntry

    sections = {f"b{i}": img for i, img in enumerate(arc.images)}
    sections.update({f"g{i}": blob for i, blob in enumerate(arc.blobs)})
    manifest = SimpleNamespace(
        binaries=[
            BinaryEntry(f"b{i}", hashlib.sha256(img).hexdigest(), len(img), "ptx")
            for i, img in enumerate(arc.images)
        ],
        graphs=[
            SimpleNamespace(section=f"g{i}", name=f"g{i}", inputs=[], outputs=[])
            for i in range(len(arc.blobs))
        ],
        groups=None,
        families=None,
        library_memory=None,
    )
    return sections, manifest
