"""Small, well-formed archives built in the tests (no GPU): graph descriptions made with
GraphDesc.from_dict, PTX kernel images, a trajectory, fingerprint and manifest, written
with write_archive in the layout kiln.save uses. Tests change the parts before writing."""

from __future__ import annotations

import copy
import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.archive import dump_json, write_archive
from kiln.archive.manifest import FINGERPRINT, MANIFEST, BinaryEntry, GraphEntry, Manifest
from kiln.graphs.tensors import TensorSpec
from kiln.native import native

MiB = 1 << 20
BASE = 0x7F0000000000
REGION_SIZE = 1 << 34
# Two allocations before the capture window, two inside; a 1 MiB gap after #2.
TRAJECTORY = [(0, 2 * MiB, 0), (2 * MiB, 2 * MiB, 0), (4 * MiB, 1 * MiB, 0), (6 * MiB, 4 * MiB, 3)]
WINDOW = (2, 4)
GAP = BASE + 5 * MiB  # inside the region, in no allocation

PTX_ADD = (
    b"//\n.version 8.0\n.target sm_90\n.address_size 64\n.visible .entry add()\n{\n\tret;\n}\n\x00"
)
PTX_MUL = (
    b"//\n.version 8.0\n.target sm_90\n.address_size 64\n.visible .entry mul()\n{\n\tret;\n}\n\x00"
)

FINGERPRINT_FIELDS = {
    "format_version": 1,
    "kiln_version": "0.1.0",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "driver_version": 13000,
    "cuda_runtime": "13.0",
    "torch_version": "2.11.0+cu130",
    "region_base": BASE,
    "region_size": REGION_SIZE,
}


def at(allocation: int, offset: int = 0) -> int:
    """An address ``offset`` bytes into trajectory allocation ``allocation``."""
    return BASE + TRAJECTORY[allocation][0] + offset


def kernel(slot: int, entry: str, pointers: Iterable[int]) -> dict[str, Any]:
    """A kernel node whose arguments are the given pointers and an int."""
    pointers = list(pointers)
    args = b"".join(struct.pack("<Q", p) for p in pointers) + struct.pack("<ii", 7, 0)
    return {
        "type": "kernel",
        "kernel": {
            "binary": slot,
            "entry": entry,
            "grid": (4, 1, 1),
            "block": (128, 1, 1),
            "shared_mem": 0,
            "extra_buffer": False,
            "args": args,
            "params": [(8 * i, 8) for i in range(len(pointers))] + [(8 * len(pointers), 4)],
            "region_pointers": [(8 * i, p) for i, p in enumerate(pointers)],
            "attributes": [],
            "function_attributes": [],
        },
    }


def set_pointer(node: dict[str, Any], index: int, address: int) -> None:
    """Point kernel argument ``index`` (and its region pointer record) at ``address``."""
    k = node["kernel"]
    args = bytearray(k["args"])
    struct.pack_into("<Q", args, 8 * index, address)
    k["args"] = bytes(args)
    k["region_pointers"][index] = (8 * index, address)


def memset(dst: int, width: int) -> dict[str, Any]:
    return {"type": "memset", "memset": (dst, 0, width, 1, 0, 4)}


def memcpy(src: int, dst: int, width: int) -> dict[str, Any]:
    return {"type": "memcpy", "memcpy": (src, 0, 0, 0, 0, 0, dst, 0, 0, 0, 0, 0, width, 1, 1)}


def chain(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    edges = [(i, i + 1, 0, 0, 0) for i in range(len(nodes) - 1)]
    return {"nodes": nodes, "edges": edges, "event_count": 0}


@dataclass
class GraphPart:
    name: str
    desc: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass
class Parts:
    """What the archive will hold; change any of it, then :func:`write`."""

    graphs: list[GraphPart]
    binaries: list[tuple[bytes, str]]
    fingerprint: dict[str, Any] = field(default_factory=lambda: dict(FINGERPRINT_FIELDS))
    trajectory: list[tuple[int, int, int]] = field(default_factory=lambda: list(TRAJECTORY))
    window: tuple[int, int] = WINDOW
    recipe: dict[str, Any] | None = None


def good_parts() -> Parts:
    x = TensorSpec(at(2), (1, 64), (64, 1), "float32", 256)
    y = TensorSpec(at(3), (1, 64), (64, 1), "bfloat16", 128)
    bs1 = chain(
        [
            kernel(0, "add", [at(2), at(3, 64)]),
            memset(at(2, 4096), 256),
            kernel(1, "mul", [at(3)]),
            memcpy(at(2), at(3, 1024), 512),
        ]
    )
    bs2 = chain(
        [
            kernel(0, "add", [at(0), at(2, 512)]),
            kernel(0, "add", [at(1, 8)]),
            kernel(1, "mul", [at(3, 4 * MiB - 8)]),
        ]
    )
    x2 = TensorSpec(at(2, 512), (2, 64), (64, 1), "float32", 512)
    return Parts(
        graphs=[GraphPart("decode/bs=1", bs1, [x], [y]), GraphPart("decode/bs=2", bs2, [x2], [y])],
        binaries=[(PTX_ADD, "ptx"), (PTX_MUL, "ptx")],
    )


def blob(desc: Mapping[str, Any]) -> bytes:
    return bytes(native().GraphDesc.from_dict(dict(desc)).encode())


def manifest_json(parts: Parts) -> dict[str, Any]:
    binaries = [
        BinaryEntry(f"b{i}", hashlib.sha256(data).hexdigest(), len(data), kind)
        for i, (data, kind) in enumerate(parts.binaries)
    ]
    graphs = []
    for i, g in enumerate(parts.graphs):
        d = native().GraphDesc.from_dict(dict(g.desc))
        graphs.append(
            GraphEntry(g.name, f"g{i}", d.node_count, d.kernel_count, g.inputs, g.outputs)
        )
    manifest = Manifest(0, parts.trajectory, parts.window, binaries, graphs, recipe=parts.recipe)
    return manifest.to_json()


def sections(
    parts: Parts, patch: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, bytes]:
    """The sections kiln.save would write for ``parts``; ``patch`` edits the manifest's JSON."""
    out: dict[str, bytes] = {}
    for i, (data, _) in enumerate(parts.binaries):
        out[f"b{i}"] = data
    for i, g in enumerate(parts.graphs):
        out[f"g{i}"] = blob(g.desc)
    out[FINGERPRINT] = dump_json(parts.fingerprint)
    raw = manifest_json(parts)
    if patch is not None:
        patch(raw)
    out[MANIFEST] = dump_json(raw)
    return out


def write(
    path: Path,
    parts: Parts | None = None,
    *,
    patch: Callable[[dict[str, Any]], None] | None = None,
    drop: Iterable[str] = (),
    replace: Mapping[str, bytes] | None = None,
) -> Path:
    """Write an archive of ``parts`` (default: :func:`good_parts`) to ``path``; ``drop``
    leaves sections out, ``replace`` swaps their bytes (checksummed as written)."""
    parts = good_parts() if parts is None else parts
    data = sections(parts, patch)
    for name in drop:
        del data[name]
    data.update(replace or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_archive(path, data)
    return path


def section_span(path: Path, name: str) -> tuple[int, int]:
    """(offset, length) of section ``name``, read from the table by the documented layout."""
    data = path.read_bytes()
    count = struct.unpack_from("<I", data, 16)[0]
    for i in range(count):
        raw, offset, length, _ = struct.unpack_from("<32sQQ32s", data, 32 + 80 * i)
        if raw.rstrip(b"\0").decode() == name:
            return offset, length
    raise KeyError(name)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def deep(parts: Parts) -> Parts:
    return copy.deepcopy(parts)
