"""The pointer audit: every device address a graph uses, and every input and output tensor,
must lie inside one allocation of the archive's recorded trajectory, except the kernel
arguments the manifest records as pointers into a communication library's mapping
(kiln.archive.library_memory; LOAD checks those against the mappings it verified). The
ranges are the ones LOAD checks against live allocations (native/src/graph/build.cpp,
check_backed)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from kiln.graphs.tensors import TensorSpec
from kiln.inspection.allocations import Allocations
from kiln.inspection.problems import Problems


def node_ranges(
    index: int, node: Mapping[str, Any], library: Collection[tuple[int, int, int]] = ()
) -> Iterator[tuple[str, int, int]]:
    """(what, address, length) of every device range graph node ``index`` uses, but the
    kernel arguments in `library` ((node, argument byte, address) of recorded pointers into
    library mappings)."""
    kind = node.get("type")
    if kind == "kernel":
        kernel = node["kernel"]
        for arg_offset, address in kernel["region_pointers"]:
            if (index, arg_offset, address) in library:
                continue
            yield (
                f"node {index} (kernel {kernel['entry']!r}) argument byte {arg_offset}",
                address,
                1,
            )
    elif kind == "memset":
        dst, pitch, width, height, _value, element_size = node["memset"]
        rows = height or 1
        yield f"node {index} (memset)", dst, (rows - 1) * pitch + width * element_size
    elif kind == "memcpy":
        (
            src,
            sx,
            sy,
            sz,
            spitch,
            sheight,
            dst,
            dx,
            dy,
            dz,
            dpitch,
            dheight,
            width,
            height,
            depth,
        ) = node["memcpy"]
        depth, height = depth or 1, height or 1
        src_rows, dst_rows = sheight or height, dheight or height
        yield (
            f"node {index} (memcpy source)",
            src + sx + sy * spitch + sz * spitch * src_rows,
            (depth - 1) * spitch * src_rows + (height - 1) * spitch + width,
        )
        yield (
            f"node {index} (memcpy destination)",
            dst + dx + dy * dpitch + dz * dpitch * dst_rows,
            (depth - 1) * dpitch * dst_rows + (height - 1) * dpitch + width,
        )


def audit_graph(
    graph: str,
    nodes: Sequence[Mapping[str, Any]],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    allocations: Allocations,
    problems: Problems,
    library: Collection[tuple[int, int, int]] = (),
) -> int:
    """Report every range of graph ``graph`` outside the allocations, but the recorded
    pointers into library mappings in `library` (see :func:`node_ranges`); returns how many
    ranges were checked."""
    checked = 0
    for index, node in enumerate(nodes):
        for what, address, length in node_ranges(index, node, library):
            checked += 1
            _check(f"graph {graph!r} {what}", address, length, allocations, problems)
    for role, specs in (("input", inputs), ("output", outputs)):
        for i, spec in enumerate(specs):
            checked += 1
            what = f"graph {graph!r} {role} {i} ({spec.dtype}{list(spec.shape)})"
            _check(what, spec.address, spec.nbytes, allocations, problems)
    return checked


def _check(
    what: str, address: int, length: int, allocations: Allocations, problems: Problems
) -> None:
    if allocations.owner(address, length) is not None:
        return
    if length <= 1:
        shown = f"address 0x{address:x}"
    else:
        shown = f"range [0x{address:x}, +{length} bytes)"
    problems.add(
        f"{what}: {shown} ({allocations.where(address)}) does not lie inside one allocation "
        "of the recorded trajectory"
    )
