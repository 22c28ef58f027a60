"""verify_archive(gpu=True): a restore in a fresh process under the interposer, driven by the
archive's recipe. The restore process is replaced by a fake here (no GPU on CPU runners);
tests/gpu runs the real one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kiln import _gpu
from kiln.inspection import gpu, verify_archive

from tests.inspection.archives import flip, good_parts, section_span, write

RECIPE = {"kind": "workload", "workload": "decode_small"}
LOAD_OK = {
    "ok": True,
    "mode": "load",
    "restore_seconds": 0.05,
    "graphs": {"decode/bs=1": {"eager_check_ok": True}, "decode/bs=2": {"eager_check_ok": True}},
    "all_bit_exact_vs_save_native": True,
    "all_eager_checks_ok": True,
    "failing_graphs": [],
    "device_name": "NVIDIA H100 80GB HBM3",
}


@dataclass
class FakeRestore:
    """Stands in for subprocess.run of the restore process; writes `result` to --out."""

    result: Any = field(default_factory=lambda: dict(LOAD_OK))
    returncode: int = 0
    stderr: str = ""
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    seen_archive: list[Path] = field(default_factory=list)

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((command, kwargs["env"]))
        archive_dir = Path(command[command.index("--archive") + 1])
        self.seen_archive.append((archive_dir / "graphs.kiln").resolve())
        assert (archive_dir / "reference.pt").is_file()
        if self.result is not None:
            out = Path(command[command.index("--out") + 1])
            out.write_text(self.result if isinstance(self.result, str) else json.dumps(self.result))
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


@pytest.fixture
def preload(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    library = tmp_path / "lib" / "libkiln_preload.so"
    library.parent.mkdir()
    library.write_bytes(b"fake interposer")
    monkeypatch.setattr(gpu, "preload_library", lambda: library)
    return library


@pytest.fixture
def gpu_here(monkeypatch: pytest.MonkeyPatch, preload: Path) -> FakeRestore:
    fake = FakeRestore()
    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu.subprocess, "run", fake)
    return fake


def recipe_archive(tmp_path: Path, recipe: dict[str, Any] | None = RECIPE) -> Path:
    parts = good_parts()
    parts.recipe = recipe
    path = write(tmp_path / "a" / "graphs.kiln", parts)
    (path.parent / "reference.pt").write_bytes(b"reference outputs")
    return path


# --- no GPU, no recipe -------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU driver")
def test_without_a_gpu_it_says_so(tmp_path: Path) -> None:
    result = verify_archive(recipe_archive(tmp_path), True)
    assert result["ok"] is True and result["problems"] == []
    assert result["gpu"] == {
        "ran": False,
        "skipped": "no GPU can be used here: no NVIDIA driver on this machine "
        "(nvidia-smi not found)",
    }


def test_verify_gpu_without_a_gpu_skips_rather_than_fails_a_good_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: "torch sees no CUDA device")
    result = verify_archive(recipe_archive(tmp_path), gpu=True)
    assert result["ok"] is True and result["problems"] == []
    assert result["gpu"]["skipped"] == "no GPU can be used here: torch sees no CUDA device"


def test_without_a_recipe_it_needs_one(tmp_path: Path, gpu_here: FakeRestore) -> None:
    result = verify_archive(recipe_archive(tmp_path, None), gpu=True)
    assert result["ok"] is False and len(result["problems"]) == 1
    problem = result["problems"][0]
    assert "GPU verification needs a recipe" in problem
    assert (
        "the 2 allocations before its capture window belong to a program kiln cannot re-run"
        in problem
    )
    assert gpu_here.calls == []


def test_without_gpu_or_recipe_both_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: "no NVIDIA driver")
    result = verify_archive(recipe_archive(tmp_path, None), gpu=True)
    assert len(result["problems"]) == 1 and "needs a recipe" in result["problems"][0]
    assert result["ok"] is False and result["gpu"] == {"ran": False}


def test_a_recipe_of_another_kind(tmp_path: Path, gpu_here: FakeRestore) -> None:
    result = verify_archive(recipe_archive(tmp_path, {"kind": "vllm", "model": "x"}), gpu=True)
    assert result["problems"] == [
        (
            "GPU verification re-runs recipes of kind 'workload' only; this archive's recipe "
            "has kind 'vllm'"
        )
    ]
    assert gpu_here.calls == []


def test_a_workload_recipe_without_a_workload(tmp_path: Path, gpu_here: FakeRestore) -> None:
    result = verify_archive(recipe_archive(tmp_path, {"kind": "workload"}), gpu=True)
    assert result["problems"] == ["the archive's workload recipe names no workload (None)"]


def test_without_the_save_reference_outputs(tmp_path: Path, gpu_here: FakeRestore) -> None:
    path = recipe_archive(tmp_path)
    (path.parent / "reference.pt").unlink()
    (problem,) = verify_archive(path, gpu=True)["problems"]
    assert "compares the restore with the SAVE process's outputs" in problem
    assert str(path.parent / "reference.pt") in problem
    assert gpu_here.calls == []


def test_a_damaged_archive_is_not_restored(tmp_path: Path, gpu_here: FakeRestore) -> None:
    path = recipe_archive(tmp_path)
    offset, _ = section_span(path, "b0")
    flip(path, offset)
    result = verify_archive(path, gpu=True)
    assert len(result["problems"]) == 1 and "section 'b0'" in result["problems"][0]
    assert result["gpu"]["skipped"] == "the archive failed the CPU checks; it is not restored"
    assert gpu_here.calls == []


def test_an_unreadable_archive_is_not_restored(tmp_path: Path, gpu_here: FakeRestore) -> None:
    path = tmp_path / "graphs.kiln"
    path.write_bytes(b"KILNARC\x00 and then nothing useful")
    result = verify_archive(path, gpu=True)
    assert result["gpu"] == {"ran": False, "skipped": "the manifest could not be read"}
    assert len(result["problems"]) == 1 and gpu_here.calls == []


# --- the restore ---------------------------------------------------------------------------


def test_a_bit_exact_restore_passes(tmp_path: Path, gpu_here: FakeRestore, preload: Path) -> None:
    path = recipe_archive(tmp_path)
    result = verify_archive(path, gpu=True)
    assert result["ok"] is True and result["problems"] == []
    assert result["gpu"] == {
        "ran": True,
        "workload": "decode_small",
        "exit_status": 0,
        "restore_seconds": 0.05,
        "all_bit_exact_vs_save_native": True,
        "all_eager_checks_ok": True,
        "device_name": "NVIDIA H100 80GB HBM3",
        "graphs": 2,
    }
    ((command, env),) = gpu_here.calls
    assert command[:3] == [sys.executable, "-m", "kiln_workloads.run"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args["--workload"] == "decode_small" and args["--mode"] == "load"
    assert args["--out"].startswith(args["--archive"])
    assert gpu_here.seen_archive == [path.resolve()]
    assert env["LD_PRELOAD"] == str(preload) and env["KILN_ENABLE"] == "1"
    import kiln

    assert env["PYTHONPATH"].split(":")[0] == str(Path(kiln.__file__).resolve().parent.parent)


def test_the_restore_runs_for_an_archive_of_any_name(tmp_path: Path, gpu_here: FakeRestore) -> None:
    path = recipe_archive(tmp_path)
    other = path.rename(path.parent / "decode.kiln")
    assert verify_archive(other, gpu=True)["ok"] is True
    assert gpu_here.seen_archive == [other.resolve()]


def test_a_failed_restore_names_its_error(tmp_path: Path, gpu_here: FakeRestore) -> None:
    gpu_here.result = {
        "ok": False,
        "mode": "load",
        "error_class": "AllocationDriftError",
        "error": "allocation #1 differs from SAVE",
    }
    gpu_here.returncode = 1
    result = verify_archive(recipe_archive(tmp_path), gpu=True)
    assert result["problems"] == [
        (
            "GPU verification (workload 'decode_small'): the restore failed: "
            "AllocationDriftError: allocation #1 differs from SAVE"
        )
    ]
    assert result["gpu"]["ran"] is True and result["gpu"]["exit_status"] == 1


def test_outputs_differing_from_save_name_the_graphs(tmp_path: Path, gpu_here: FakeRestore) -> None:
    gpu_here.result = {
        **LOAD_OK,
        "all_bit_exact_vs_save_native": False,
        "failing_graphs": ["decode/bs=2"],
    }
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert "differ from the SAVE process's native replay: decode/bs=2" in problem


def test_outputs_differing_from_eager_name_the_graphs(
    tmp_path: Path, gpu_here: FakeRestore
) -> None:
    graphs = {"decode/bs=1": {"eager_check_ok": False}, "decode/bs=2": {"eager_check_ok": True}}
    gpu_here.result = {**LOAD_OK, "all_eager_checks_ok": False, "graphs": graphs}
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert "differ from eager execution in this process: decode/bs=1" in problem


def test_a_restore_process_that_wrote_nothing(tmp_path: Path, gpu_here: FakeRestore) -> None:
    gpu_here.result = None
    gpu_here.returncode = -11
    gpu_here.stderr = "lots of log\nSegmentation fault\n"
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert "wrote no result (exit status -11): lots of log | Segmentation fault" in problem


def test_a_workload_recipe_without_the_workloads_installed_says_which_package(
    tmp_path: Path, gpu_here: FakeRestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kiln's workloads are test and benchmark code outside the runtime package: a runtime-only
    # install restores no workload recipe, and says what is missing instead of a traceback.
    real = gpu.importlib.util.find_spec
    monkeypatch.setattr(
        gpu.importlib.util, "find_spec", lambda name: None if name == gpu.WORKLOADS else real(name)
    )
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert "kiln_workloads" in problem and "not installed" in problem
    assert gpu_here.calls == []


def test_a_restore_result_that_is_not_json(tmp_path: Path, gpu_here: FakeRestore) -> None:
    gpu_here.result = "{not json"
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert "result is unreadable" in problem


def test_a_restore_that_hangs(
    tmp_path: Path, gpu_here: FakeRestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(command: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(gpu.subprocess, "run", hang)
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert f"did not finish within {gpu.TIMEOUT_S} s" in problem


def test_without_the_interposer_installed(
    tmp_path: Path, gpu_here: FakeRestore, preload: Path
) -> None:
    preload.unlink()
    (problem,) = verify_archive(recipe_archive(tmp_path), gpu=True)["problems"]
    assert f"kiln's interposer {preload} is not installed" in problem
    assert gpu_here.calls == []


def test_gpu_reason_checks_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu.shutil, "which", lambda name: None)
    assert gpu.gpu_unavailable_reason() == "no NVIDIA driver on this machine (nvidia-smi not found)"
    monkeypatch.setattr(_gpu.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(_gpu.importlib.util, "find_spec", lambda name: None)
    assert gpu.gpu_unavailable_reason() == "torch is not installed"
