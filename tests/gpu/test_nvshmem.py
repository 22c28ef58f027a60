"""NVSHMEM on one GPU: a kiln-owned test kernel device-linked with NVSHMEM (built here with
nvcc and the installed nvidia-nvshmem-cu13), one PE bootstrapped with NVSHMEM's unique-id
bootstrap, in a graph that reads and writes the symmetric heap
(kiln_workloads.nvshmem_graph). SAVE and LOAD run under `kiln run`, each a fresh process.

- SAVE then LOAD: the restored graph's output tensor and heap bytes equal the program's own
  eager run of the kernel and SAVE's replay, bit for bit, on new input values. This depends
  on LOAD accepting kernel-argument pointers into NVSHMEM's region slot when SAVE recorded
  the mapping behind them (the symmetric buffer is one).
- LOAD where the program never reports NVSHMEM bootstrapped (so kiln cannot re-initialise its
  own copies of the archive's NVSHMEM module): kiln refuses the restore with a RestoreError
  naming NVSHMEM, and nothing replays.

Each test skips with the reason when NVSHMEM or nvcc is missing; a build failure fails with
nvcc's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kiln_workloads import nvshmem_build
from kiln_workloads.nvshmem_graph import kiln_run

pytestmark = pytest.mark.gpu

_MISSING = nvshmem_build.unavailable_reason()
needs_nvshmem = pytest.mark.skipif(_MISSING is not None, reason=f"{_MISSING}")


def _tail(text: str, n: int = 6000) -> str:
    return text[-n:]


def run_program(
    mode: str, archive: Path, out: Path, built: Built, *, skip_report: bool = False
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`kiln run --mode MODE --policy strict` around the program; its JSON result."""
    argv, env = kiln_run(mode, archive, out, *built, skip_report=skip_report)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if not out.is_file():
        raise AssertionError(
            f"{mode}: the program wrote no result (rc {proc.returncode})\n"
            f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    result["rc"] = proc.returncode
    if not result.get("ok"):
        result["stderr_tail"] = _tail(proc.stderr, 4000)
    print(json.dumps(result, indent=1, default=str)[:20000])  # shown in full when a test fails
    return result, proc


Built = tuple[Path, str]  # the build directory, the GPU architecture built for


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The kernel and shim built once for the module, in a fresh process (nvcc's output on
    failure)."""
    if _MISSING is not None:
        pytest.skip(_MISSING)
    d = tmp_path_factory.mktemp("nvshmem-build")
    proc = subprocess.run(
        [sys.executable, "-m", "kiln_workloads.nvshmem_build", "--build-dir", str(d)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    done = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0 and done.get("ok"), (
        f"building the NVSHMEM test kernel failed (rc {proc.returncode}):\n"
        f"{done.get('message', '')}\n--- stderr ---\n{_tail(proc.stderr)}"
    )
    return d, str(done["arch"])


@pytest.fixture(scope="module")
def saved(built: Built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """SAVE once for the module: (archive directory, result path)."""
    root = tmp_path_factory.mktemp("nvshmem")
    archive, out = root / "archive", root / "result.json"
    result, _ = run_program("save", archive, out, built)
    assert result["ok"], result
    assert result["mode"] == "save" and result["report"]["outcome"] == "saved", result
    assert result["bit_exact_vs_native"] and result["graph_wrote_outputs"], result
    return archive, out


@needs_nvshmem
def test_save_and_load_of_a_graph_reading_and_writing_the_symmetric_heap_are_bit_exact(
    saved: tuple[Path, Path], built: Built
) -> None:
    archive, out = saved
    loaded, _ = run_program("load", archive, out, built)
    assert loaded["ok"], loaded
    assert loaded["mode"] == "load" and loaded["restored"], loaded
    assert loaded["report"]["outcome"] == "restored", loaded
    assert loaded["bit_exact_vs_native"], loaded
    assert loaded["bit_exact_vs_save"], loaded
    assert loaded["graph_wrote_outputs"], loaded


@needs_nvshmem
def test_load_is_refused_when_nvshmem_is_never_reported_bootstrapped(
    saved: tuple[Path, Path], built: Built
) -> None:
    archive, out = saved
    refused, _ = run_program("load", archive, out, built, skip_report=True)
    assert not refused["ok"], refused
    assert refused["step"] == "capture_graph", refused  # nothing replayed
    assert refused["error"] == "RestoreError", refused
    assert "NVSHMEM" in refused["message"], refused
    assert refused["exit_code"] == 3, refused  # kiln stopped the start (policy strict)
