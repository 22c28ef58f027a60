"""Property-based tests: each reader of untrusted input either accepts its input or raises
the error that names the defect; nothing else escapes (bounded for CI; the long campaign is
bench/hostile_campaign.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiln.archive import ArchiveReader, dump_json, load_json, write_archive
from kiln.archive.manifest import Manifest
from kiln.errors import ArchiveCorrupt, ArchiveError
from kiln.lifecycle.archive_io import checked_fingerprint
from kiln.lifecycle.record import LifecycleRecord
from kiln.lifecycle.report_reader import ReportUnreadable, read_report

from tests.hostile.strategies import CI_EXAMPLES, json_values, mutated, patched_json

pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

from tests.inspection.archives import good_parts, manifest_json

SECTIONS = {"fingerprint": dump_json({"gpu_name": "H100"}), "blob": bytes(range(130))}
CI = settings(
    max_examples=CI_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "graphs.kiln"
    write_archive(path, SECTIONS)
    return path.read_bytes()


@CI
@given(data=st.data())
def test_the_archive_reader_accepts_only_the_original(
    tmp_path: Path, archive_bytes: bytes, data: st.DataObject
) -> None:
    hostile = data.draw(mutated(archive_bytes) | st.binary(max_size=512))
    path = tmp_path / "graphs.kiln"
    path.write_bytes(hostile)
    try:
        with ArchiveReader(path, verify=True) as reader:
            contents = {name: bytes(reader.section(name)) for name in reader.names}
    except ArchiveError as err:
        assert str(err)
        return
    assert contents == SECTIONS  # every accepted archive is the one written


@CI
@given(data=st.binary(max_size=256) | json_values.map(lambda v: json.dumps(v).encode()))
def test_json_sections_decode_or_name_the_section(data: bytes) -> None:
    try:
        assert isinstance(load_json(data, "s"), dict)
    except ArchiveCorrupt as err:
        assert "section 's'" in str(err)


GOOD_MANIFEST = manifest_json(good_parts())
SECTION_NAMES = {"b0", "b1", "g0", "g1", "fingerprint", "manifest"}


@CI
@given(doc=patched_json(GOOD_MANIFEST))
def test_the_manifest_reader_raises_only_archive_corrupt(doc: Any) -> None:
    try:
        manifest = Manifest.from_json(doc, SECTION_NAMES)
    except ArchiveCorrupt as err:
        assert str(err).startswith("manifest")
        return
    # Accepted: everything it holds is in range.
    assert manifest.device >= 0 and 0 <= manifest.window[0] <= manifest.window[1]
    assert all(g.section in SECTION_NAMES and g.nodes >= 0 for g in manifest.graphs)
    assert all(b.size > 0 for b in manifest.binaries)


GOOD_RECORD = {
    "version": 1,
    "engine": "toy",
    "kv_capacity": {"num_blocks": 1000},
    "warmup": {"profile_run": "skip"},
    "graphs": ["full/bs=1"],
}


@CI
@given(doc=patched_json(GOOD_RECORD))
def test_the_lifecycle_record_reader_bounds_the_kv_capacity(doc: Any) -> None:
    try:
        record = LifecycleRecord.from_json(doc)
    except ArchiveCorrupt as err:
        assert "section 'lifecycle'" in str(err)
        return
    if record.kv_capacity is not None:
        assert record.kv_capacity
        assert all(type(v) is int and 0 <= v < 1 << 63 for v in record.kv_capacity.values())


@CI
@given(doc=patched_json({"gpu_name": "H100", "region_base": 1 << 40, "tp": 2}))
def test_the_fingerprint_reader_accepts_flat_bounded_scalars(doc: Any) -> None:
    try:
        fields = checked_fingerprint(doc)
    except ArchiveCorrupt as err:
        assert "section 'fingerprint'" in str(err)
        return
    for value in fields.values():
        assert value is None or isinstance(value, str | int | float | bool)
        assert not isinstance(value, int) or -(1 << 63) <= value < 1 << 63


GOOD_REPORT = {
    "outcome": "restored",
    "engine": "toy",
    "mode": "load",
    "rank": 0,
    "graphs_restored": 4,
    "phases_s": {"restore": 0.5},
    "total_s": 1.5,
    "error": None,
}


@CI
@given(
    data=patched_json(GOOD_REPORT).map(lambda d: json.dumps(d).encode()) | st.binary(max_size=200)
)
def test_the_report_reader_validates_or_names_the_report(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "startup-report.json"
    path.write_bytes(data)
    try:
        _, report = read_report(path)
    except ReportUnreadable as err:
        assert "no startup report at" in str(err)
        return
    assert report.outcome in ("saved", "restored", "fallback", "failed")
    assert report.total_s is None or report.total_s >= 0
