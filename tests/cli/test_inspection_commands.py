"""`kiln inspect` and `kiln verify` end to end, with the real kiln.inspection, on archives
built in the test (tests/inspection/archives.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import kiln

pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

from tests.inspection.archives import GAP, flip, good_parts, section_span, set_pointer, write


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write(tmp_path / "a" / "graphs.kiln")


def test_inspect_json(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    result = kiln(capsys, "inspect", str(archive.parent), "--json")
    assert result.status == 0, result.err
    described = json.loads(result.out)
    assert [g["name"] for g in described["graphs"]] == ["decode/bs=1", "decode/bs=2"]
    assert described["path"] == str(archive)
    assert described["fingerprint"]["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert [k["entry"] for k in described["kernels"]] == ["add", "mul"]


def test_inspect_for_people(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    result = kiln(capsys, "inspect", str(archive))
    assert result.status == 0, result.err
    for shown in ("fingerprint", "decode/bs=2", "kernels", "binaries", "sizes", "window"):
        assert shown in result.out


def test_inspect_of_a_damaged_archive_is_an_error(
    capsys: pytest.CaptureFixture[str], archive: Path
) -> None:
    offset, _ = section_span(archive, "g0")
    flip(archive, offset)
    result = kiln(capsys, "inspect", str(archive), "--json")
    assert result.status == 2
    error = json.loads(result.out)
    assert error["type"] == "ArchiveCorrupt" and "section 'g0' checksum mismatch" in error["error"]


def test_verify_ok(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    result = kiln(capsys, "verify", str(archive.parent))
    assert result.status == 0, result.err
    assert f"OK: {archive}" in result.out


def test_verify_json(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    result = kiln(capsys, "verify", str(archive), "--json")
    assert result.status == 0
    report = json.loads(result.out)
    assert report["ok"] is True and report["problems"] == [] and report["checked"]["graphs"] == 2


def test_verify_lists_problems_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    parts = good_parts()
    set_pointer(parts.graphs[1].desc["nodes"][0], 1, GAP)
    parts.graphs[0].desc["nodes"][0]["kernel"]["binary"] = 4
    path = write(tmp_path / "b" / "graphs.kiln", parts)
    result = kiln(capsys, "verify", str(path))
    assert result.status == 1
    assert f"FAILED: {path}" in result.out
    assert "  - graph 'decode/bs=1' node 0 (kernel 'add') uses binary slot 4" in result.out
    assert (
        f"graph 'decode/bs=2' node 0 (kernel 'add') argument byte 8: address 0x{GAP:x}"
        in result.out
    )


def test_verify_of_a_truncated_archive(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    archive.write_bytes(archive.read_bytes()[:-10])
    result = kiln(capsys, "verify", str(archive), "--json")
    assert result.status == 1
    report = json.loads(result.out)
    assert report["ok"] is False and "truncated" in report["problems"][0]


def test_verify_gpu_without_a_gpu(
    capsys: pytest.CaptureFixture[str], archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.inspection import gpu

    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: "no NVIDIA driver on this machine")
    result = kiln(capsys, "verify", str(archive), "--gpu")
    assert result.status == 1  # the archive has no recipe: a GPU check could not restore it
    assert "GPU verification needs a recipe" in result.out


def test_verify_of_a_missing_archive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = kiln(capsys, "verify", str(tmp_path / "nowhere"))
    assert result.status == 2 and "nowhere/graphs.kiln" in result.err


# --- hostile input (issue 23) -------------------------------------------------------------


def test_inspect_of_a_fingerprint_holding_a_lone_surrogate_is_no_unicode_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fingerprint = json.dumps({"gpu_name": "\udc80", "region_base": 1 << 40}).encode()
    path = write(tmp_path / "a" / "graphs.kiln", replace={"fingerprint": fingerprint})
    result = kiln(capsys, "inspect", str(path))
    assert result.status == 0 and "\\udc80" in result.out


def test_a_malformed_manifest_names_the_field_not_a_key_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def no_group_key(m: dict) -> None:
        m["groups"] = [{"template": "decode/bs=1", "members": [], "differing": []}]

    path = write(tmp_path / "a" / "graphs.kiln", patch=no_group_key)
    result = kiln(capsys, "verify", str(path))
    assert result.status == 1
    assert "KeyError" not in result.out
    assert "missing required field `key` - at `$.groups[0]`" in result.out


def test_verify_gpu_without_a_gpu_skips_a_good_archive_and_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.inspection import gpu

    parts = good_parts()
    parts.recipe = {"kind": "workload", "workload": "decode_small"}
    path = write(tmp_path / "a" / "graphs.kiln", parts)
    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: "no NVIDIA driver here")
    result = kiln(capsys, "verify", str(path), "--gpu")
    assert result.status == 0
    assert "OK" in result.out and "GPU check skipped" in result.out
    assert "FAILED" not in result.out
