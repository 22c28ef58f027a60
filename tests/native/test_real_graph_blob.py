"""A graph captured on an H100 (the 2-layer Llama-shaped decode step at batch 1: cuBLAS
nvjet, cuDNN attention, PyTorch elementwise and index kernels; 152 nodes), described by
kiln's walk and stored as JSON: the blob codec must round-trip it exactly and compactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

DATA = Path(__file__).parent.parent / "data" / "decode_small_bs1_desc.json.gz"


def real_graph() -> Any:
    d = json.loads(gzip.decompress(DATA.read_bytes()))
    for node in d["nodes"]:
        if node["type"] == "kernel":
            k = node["kernel"]
            k["args"] = bytes.fromhex(k["args"])
            k["attributes"] = [(a, bytes.fromhex(v)) for a, v in k["attributes"]]
        elif node["type"] in ("memset", "memcpy"):
            node[node["type"]] = tuple(node[node["type"]])
    return native.GraphDesc.from_dict(d)


def test_a_real_graph_round_trips_exactly() -> None:
    g = real_graph()
    back = native.decode_graph(g.encode())
    assert back.to_dict() == g.to_dict()
    assert native.topology_signature(back) == native.topology_signature(g)
    assert g.node_count == 152 and g.kernel_count == 151


def test_a_real_graph_blob_stays_close_to_its_parameter_bytes() -> None:
    # Regression: the first blob layout repeated each kernel's name, parameter layout and
    # 64-byte launch attributes on every node (2.3x the parameter bytes); archives must stay
    # within 1.5x of binaries plus parameters.
    g = real_graph()
    assert len(g.encode()) <= 1.45 * g.param_bytes
