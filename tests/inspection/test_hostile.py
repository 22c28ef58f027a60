"""Hostile archives: verify_archive reports, never raises, and never falls back to its
catch-all ("verification stopped: unexpected ..."); each case meets a specific check."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kiln.inspection import verify_archive

from tests.inspection.archives import good_parts, sections, write

Patch = Callable[[dict[str, Any]], None]


def setter(*path_and_value: Any) -> Patch:
    *path, value = path_and_value

    def patch(m: dict[str, Any]) -> None:
        target: Any = m
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return patch


DELETE = object()

MANIFEST_PATCHES: dict[str, Patch] = {
    "device negative": setter("device", -1),
    "device a string": setter("device", "0"),
    "no device": setter("device", DELETE),
    "trajectory a number": setter("trajectory", 5),
    "trajectory entry short": setter("trajectory", [[0, 4096]]),
    "trajectory entry text": setter("trajectory", [["a", 1, 0]]),
    "trajectory entry empty": setter("trajectory", [[0, 0, 0]]),
    "trajectory entry kind": setter("trajectory", [[0, 1, 9]]),
    "window short": setter("window", [0]),
    "window reversed": setter("window", [3, 1]),
    "window text": setter("window", "all"),
    "binaries an object": setter("binaries", {"b0": 1}),
    "binary without fields": setter("binaries", [{"section": "b0"}]),
    "binary of a missing section": setter("binaries", 0, "section", "b9"),
    "binary sha not hex": setter("binaries", 0, "sha256", "zz" * 32),
    "binary size zero": setter("binaries", 0, "size", 0),
    "binary size text": setter("binaries", 1, "size", "many"),
    "graph without fields": setter("graphs", [{"name": "x"}]),
    "graphs twice the same": lambda m: m["graphs"].append(dict(m["graphs"][0])),
    "graph nodes huge": setter("graphs", 0, "nodes", 10**30),
    "graph kernels negative": setter("graphs", 1, "kernels", -1),
    "graph section is the manifest": setter("graphs", 0, "section", "manifest"),
    "graph section is a binary": setter("graphs", 1, "section", "b0"),
    "graph section is the fingerprint": setter("graphs", 1, "section", "fingerprint"),
    "input dtype unknown": setter("graphs", 0, "inputs", 0, "dtype", "float8"),
    "input shape negative": setter("graphs", 0, "inputs", 0, "shape", [-1, 64]),
    "input strides short": setter("graphs", 0, "inputs", 0, "strides", [1]),
    "input address zero": setter("graphs", 0, "inputs", 0, "address", 0),
    "input address huge": setter("graphs", 0, "inputs", 0, "address", 10**40),
    "input nbytes huge": setter("graphs", 0, "inputs", 0, "nbytes", 10**40),
    "inputs an object": setter("graphs", 0, "inputs", {"a": 1}),
    "output not an object": setter("graphs", 1, "outputs", [7]),
    "recipe a string": setter("recipe", "workload"),
    "recipe without kind": setter("recipe", {"workload": "decode"}),
}


@pytest.mark.parametrize("name", sorted(MANIFEST_PATCHES))
def test_hostile_manifest_fields(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "graphs.kiln", patch=MANIFEST_PATCHES[name])
    result = verify_archive(path)
    assert result["ok"] is False and result["problems"], name
    assert not any("unexpected" in p for p in result["problems"]), result["problems"]


FINGERPRINTS: dict[str, Any] = {
    "region_base a bool": {"region_base": True},
    "region_base text": {"region_base": "0x7f0000000000"},
    "region_size negative": {"region_size": -1},
    "region_base beyond 64 bits": {"region_base": 2**70},
    "format_version text": {"format_version": "1"},
}


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_hostile_fingerprints(tmp_path: Path, name: str) -> None:
    parts = good_parts()
    parts.fingerprint.update(FINGERPRINTS[name])
    result = verify_archive(write(tmp_path / "graphs.kiln", parts))
    assert result["ok"] is False and result["problems"], name
    assert not any("unexpected" in p for p in result["problems"]), result["problems"]


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"{}", b"null", b"[" * 200 + b"]" * 200, b'{"a": 1, "a": 2}', b"\xff\xfe{}"],
)
def test_hostile_json_sections(tmp_path: Path, data: bytes) -> None:
    for section in ("manifest", "fingerprint"):
        path = write(tmp_path / f"{section}.kiln", replace={section: data})
        result = verify_archive(path)
        assert result["ok"] is False and section in result["problems"][0], result
        assert not any("unexpected" in p for p in result["problems"])


def test_random_byte_flips_are_each_reported(tmp_path: Path) -> None:
    original = write(tmp_path / "orig.kiln").read_bytes()
    path = tmp_path / "graphs.kiln"
    rng = random.Random(20261122)
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.choice((1, 1, 2, 8))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if data == original:
            continue
        path.write_bytes(bytes(data))
        result = verify_archive(path)
        assert result["ok"] is False and result["problems"]
        assert not any("unexpected" in p for p in result["problems"]), result["problems"]


def test_every_truncation_is_reported(tmp_path: Path) -> None:
    original = write(tmp_path / "orig.kiln").read_bytes()
    path = tmp_path / "graphs.kiln"
    for length in range(0, len(original), 7):
        path.write_bytes(original[:length])
        result = verify_archive(path)
        assert result["ok"] is False and result["problems"], length


def test_random_edits_of_the_manifest_text_never_raise(tmp_path: Path) -> None:
    """Mutated manifests with valid checksums: parsed, rejected or (rarely) still valid;
    verify never raises and never needs its catch-all."""
    parts = good_parts()
    base = sections(parts)
    text = base["manifest"]
    rng = random.Random(7)
    alphabet = b'0123456789{}[]",:-.eE abcdefghijklmnopqrstuvwxyz'
    for i in range(200):
        data = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(alphabet)
        path = write(tmp_path / f"m{i % 4}.kiln", parts, replace={"manifest": bytes(data)})
        result = verify_archive(path)
        assert isinstance(result["ok"], bool)
        assert not any("unexpected" in p for p in result["problems"]), result["problems"]


def test_a_manifest_with_many_graphs_on_one_blob(tmp_path: Path) -> None:
    def patch(m: dict[str, Any]) -> None:
        first = m["graphs"][0]
        m["graphs"] = [{**first, "name": f"copy{i}"} for i in range(200)]

    result = verify_archive(write(tmp_path / "graphs.kiln", patch=patch))
    assert result["ok"] is True and result["checked"]["graphs"] == 200
