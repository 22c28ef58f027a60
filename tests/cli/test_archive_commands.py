"""`kiln inspect`, `verify`, `diff` and `report` on archives."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from kiln.archive import dump_json, write_archive

from tests.cli.helpers import kiln


def make_archive(directory: Path, fingerprint: dict | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sections = {"graphs": b"\x00" * 16}
    if fingerprint is not None:
        sections["fingerprint"] = dump_json(fingerprint)
    path = directory / "graphs.kiln"
    write_archive(path, sections)
    return path


BASE = {"kiln_version": "0.1.0", "gpu_name": "H100", "vllm.model": "qwen3-8b", "kiln.rank": 0}


@pytest.fixture
def inspection(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stands in for kiln.inspection, which the core provides."""
    calls = types.SimpleNamespace(
        describe=[], verify=[], verify_result={"ok": True, "problems": []}
    )

    def describe_archive(path: Path) -> dict:
        calls.describe.append(path)
        return {"format_version": 1, "graphs": {"count": 2, "keys": ["full/bs=1", "full/bs=2"]}}

    def verify_archive(
        path: Path, gpu: bool, command: object = None, consent: object = None
    ) -> dict:
        calls.verify.append((path, gpu))
        return calls.verify_result

    module = types.ModuleType("kiln.inspection")
    module.describe_archive = describe_archive  # type: ignore[attr-defined]
    module.verify_archive = verify_archive  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kiln.inspection", module)
    return calls


def test_inspect_json_prints_the_cores_description(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    result = kiln(capsys, "inspect", str(tmp_path / "a"), "--json")
    assert result.status == 0
    assert json.loads(result.out)["graphs"]["count"] == 2
    assert inspection.describe == [path]  # a directory argument resolves to its graphs.kiln


def test_inspect_renders_the_description_for_people(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    result = kiln(capsys, "inspect", str(path))
    assert result.status == 0
    assert "format_version" in result.out and "full/bs=2" in result.out


def test_inspect_of_a_missing_archive_names_it(capsys, tmp_path: Path, inspection) -> None:
    result = kiln(capsys, "inspect", str(tmp_path / "nowhere"), "--json")
    assert result.status == 2
    error = json.loads(result.out)
    assert error["type"] == "ArchiveMissing" and "nowhere/graphs.kiln" in error["error"]
    assert inspection.describe == []


def test_verify_ok_exits_0(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    result = kiln(capsys, "verify", str(path))
    assert result.status == 0 and "OK" in result.out
    assert inspection.verify == [(path, False)]


def test_verify_with_problems_exits_1_and_lists_them(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    inspection.verify_result = {"ok": False, "problems": ["graph 'g' refers to kernel k [3]"]}
    result = kiln(capsys, "verify", str(path), "--gpu")
    assert result.status == 1
    assert "FAILED" in result.out and "graph 'g' refers to kernel k [3]" in result.out
    assert inspection.verify == [(path, True)]


def test_verify_json_passes_the_result_through(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    inspection.verify_result = {"ok": True, "problems": [], "sections": 3}
    result = kiln(capsys, "verify", str(path), "--json")
    assert result.status == 0 and json.loads(result.out)["sections"] == 3


def test_verify_refuses_a_malformed_result(capsys, tmp_path: Path, inspection) -> None:
    path = make_archive(tmp_path / "a", BASE)
    inspection.verify_result = {"ok": "yes"}
    result = kiln(capsys, "verify", str(path))
    assert result.status == 2 and "expected 'ok' and 'problems'" in result.err


def test_diff_of_identical_fingerprints_exits_0(capsys, tmp_path: Path) -> None:
    make_archive(tmp_path / "a", BASE)
    make_archive(tmp_path / "b", dict(BASE))
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.status == 0 and "identical (4 fields)" in result.out


def test_diff_lists_every_differing_field(capsys, tmp_path: Path) -> None:
    make_archive(tmp_path / "a", BASE)
    other = {**BASE, "gpu_name": "H200", "vllm.model": "llama3-8b", "vllm.tp": 2}
    del other["kiln.rank"]
    make_archive(tmp_path / "b", other)
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert result.status == 1
    report = json.loads(result.out)
    assert report["identical"] is False and report["fields"] == 5
    assert report["differences"] == [
        {"field": "gpu_name", "a": "H100", "b": "H200"},  # the archive's field order first
        {"field": "kiln.rank", "a": 0, "b": None},
        {"field": "vllm.model", "a": "qwen3-8b", "b": "llama3-8b"},
        {"field": "vllm.tp", "a": None, "b": 2},
    ]


def test_diff_shows_a_table_for_people(capsys, tmp_path: Path) -> None:
    make_archive(tmp_path / "a", BASE)
    make_archive(tmp_path / "b", {**BASE, "gpu_name": "H200"})
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.status == 1
    assert "1 of 4 fingerprint fields differ" in result.out
    assert "'H100'" in result.out and "'H200'" in result.out


def test_diff_of_an_archive_without_fingerprint_is_an_error(capsys, tmp_path: Path) -> None:
    make_archive(tmp_path / "a", BASE)
    make_archive(tmp_path / "b", None)
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.status == 2 and "missing section 'fingerprint'" in result.err


def test_diff_of_a_corrupt_archive_is_an_error(capsys, tmp_path: Path) -> None:
    make_archive(tmp_path / "a", BASE)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "graphs.kiln").write_bytes(b"KILNARC\x00garbage")
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.status == 2 and "kiln diff: error:" in result.err


def test_report_shows_the_last_startup_report(capsys, tmp_path: Path) -> None:
    directory = tmp_path / "a"
    directory.mkdir()
    report = {
        "outcome": "fallback",
        "engine": "vllm",
        "rank": 0,
        "mode": "native",
        "graphs_restored": 0,
        "graphs_captured": 51,
        "fallback_reason": "device_bound: fingerprint mismatch in field 'gpu_name'",
        "phases_s": {"device_bound": 0.25, "weights": 1.5},
        "total_s": 2.0,
    }
    (directory / "startup-report.json").write_text(json.dumps(report))
    human = kiln(capsys, "report", str(directory / "graphs.kiln"))
    assert human.status == 0
    assert "fallback" in human.out and "'gpu_name'" in human.out and "1.500" in human.out
    assert json.loads(kiln(capsys, "report", str(directory), "--json").out) == report


def test_report_says_how_many_graphs_had_their_own_executable_at_ready(
    capsys, tmp_path: Path
) -> None:
    directory = tmp_path / "a"
    directory.mkdir()
    report = {
        "outcome": "restored",
        "mode": "load",
        "load_builds": "background",
        "graphs_restored": 1938,
        "graphs_own_executable_at_ready": 400,
        "graphs_on_template_at_ready": 1538,
        "phases_s": {"restore": 3.0},
    }
    (directory / "startup-report.json").write_text(json.dumps(report))
    human = kiln(capsys, "report", str(directory))
    assert "400 graphs with their own executable, 1538 on templates" in human.out
    assert "(load_builds background)" in human.out


def test_report_without_one_says_so(capsys, tmp_path: Path) -> None:
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "no startup report" in result.err
