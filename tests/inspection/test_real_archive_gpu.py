"""On a GPU: archives that kiln.save really wrote pass verify_archive (the pointer audit has
no false positives on real graphs), and verify_archive(gpu=True) restores them bit-exact in
a fresh process once the archive carries a workload recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kiln._gpu import gpu_unavailable_reason
from kiln.archive import ArchiveReader, dump_json, load_json, write_archive
from kiln.inspection import describe_archive, verify_archive

pytestmark = pytest.mark.gpu


_REASON = gpu_unavailable_reason()
if _REASON is not None:
    pytestmark = [pytest.mark.gpu, pytest.mark.skip(reason=f"needs a GPU: {_REASON}")]


def _save(workload: str, directory: Path) -> Path:
    from kiln.inspection.gpu import restore_env

    out = directory / "save.json"
    proc = subprocess.run(
        [sys.executable, "-m", "kiln_workloads.run", "--workload", workload, "--mode", "save"]
        + ["--archive", str(directory), "--out", str(out)],
        env=restore_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.exists(), proc.stderr[-4000:]
    assert json.loads(out.read_text())["ok"], out.read_text()
    return directory / "graphs.kiln"


def _with_recipe(path: Path, workload: str) -> None:
    """Rewrite the archive with a workload recipe in its manifest (kiln_workloads.run does
    not record one yet)."""
    with ArchiveReader(path) as reader:
        sections = {name: bytes(reader.section(name)) for name in reader.names}
    manifest = load_json(sections["manifest"], "manifest")
    manifest["recipe"] = {"kind": "workload", "workload": workload}
    sections["manifest"] = dump_json(manifest)
    write_archive(path, sections)


@pytest.mark.parametrize("workload", ["matmul", "decode_small"])
def test_a_saved_archive_verifies_and_restores(workload: str, tmp_path: Path) -> None:
    path = _save(workload, tmp_path)
    cpu = verify_archive(path)
    assert cpu["ok"], cpu["problems"]
    assert cpu["checked"]["ranges_audited"] > 0
    described = describe_archive(path)
    assert described["graphs"] and described["kernels"] and described["binaries"]

    no_recipe = verify_archive(path, gpu=True)
    assert not no_recipe["ok"] and "needs a recipe" in no_recipe["problems"][0]

    _with_recipe(path, workload)
    restored = verify_archive(path, gpu=True)
    assert restored["ok"], restored
    assert restored["gpu"]["ran"] and restored["gpu"]["all_bit_exact_vs_save_native"]
