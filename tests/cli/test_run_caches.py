"""`kiln run` and the engine caches: pinned below a kiln-owned directory, stored at SAVE,
verified and installed before the engine starts at LOAD, reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kiln.archive import ArchiveReader
from kiln.archive.caches import MANIFEST_SECTION
from kiln.lifecycle import cache_dirs

from tests.cli.helpers import Exec, kiln

TOY = [sys.executable, "-m", "kiln_test_adapter.engine"]


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch) -> Exec:
    runner = Exec(run_child=True)
    monkeypatch.setattr("os.execvpe", runner)
    monkeypatch.setenv("TOY_TRITON_KERNEL", "1")
    return runner


def start(capsys, child: Exec, archive: Path, mode: str, *options: str) -> dict:
    result = kiln(capsys, "run", "--mode", mode, "--archive", str(archive), *options, "--", *TOY)
    assert result.status == 0, result.err
    return json.loads(child.outputs[-1].stdout)


def test_save_stores_the_compiled_kernel_and_load_installs_it_before_the_engine_starts(
    capsys, preload: Path, tmp_path: Path, child: Exec, toy_adapter
) -> None:
    archive = tmp_path / "arc"
    saved = start(capsys, child, archive, "save")
    assert saved["kernel_cache"] == "compiled"
    save_env = child.calls[-1][2]
    assert save_env["TRITON_CACHE_DIR"] == str(archive / "caches" / "save" / "triton")
    assert save_env["TORCHINDUCTOR_CACHE_DIR"] == str(archive / "caches" / "save" / "inductor")
    caches = saved["report"]["caches"]
    assert caches["stored"]["entries"] == 2  # the kernel and its group file, not the lock
    assert caches["compiled"]["by_kind"] == {"triton": 2}
    with ArchiveReader(archive / "graphs.kiln") as reader:
        assert MANIFEST_SECTION in reader

    loaded = start(capsys, child, archive, "load")
    load_env = child.calls[-1][2]
    assert load_env["TRITON_CACHE_DIR"].startswith(str(archive / "caches" / "load-"))
    assert loaded["kernel_cache"] == "hit"  # found, group paths moved to the new directory
    caches = loaded["report"]["caches"]
    assert caches["from_archive"]["entries"] == 2
    assert caches["from_archive"]["by_kind"] == {"triton": 2}
    assert caches["compiled"]["files"] == 0 and caches["refused"] is None


def test_load_without_the_archive_caches_compiles_and_the_report_lists_it(
    capsys, preload: Path, tmp_path: Path, child: Exec, toy_adapter, monkeypatch
) -> None:
    archive = tmp_path / "arc"
    monkeypatch.delenv("TOY_TRITON_KERNEL")
    start(capsys, child, archive, "save")  # nothing compiled: the archive stores no file
    monkeypatch.setenv("TOY_TRITON_KERNEL", "1")
    loaded = start(capsys, child, archive, "load")
    assert loaded["kernel_cache"] == "compiled"
    compiled = loaded["report"]["caches"]["compiled"]
    assert compiled["by_kind"] == {"triton": 2}
    assert "triton/c0ffee/fused_add.cubin" in compiled["paths"]


def test_a_cache_variable_the_user_set_is_refused_by_name(
    capsys, preload: Path, tmp_path: Path, execs: Exec, monkeypatch, toy_adapter
) -> None:
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))
    result = kiln(capsys, "run", "--mode", "save", "--policy", "fallback", "--", *TOY)
    assert result.status != 0 and execs.calls == []
    assert "'TRITON_CACHE_DIR'" in result.err and "kiln owns the engine's compile caches" in (
        result.err
    )
    assert not (tmp_path / "mine").exists()


def test_dry_run_shows_the_cache_directory_and_creates_nothing(
    capsys, preload: Path, tmp_path: Path, execs: Exec, toy_adapter
) -> None:
    archive = tmp_path / "arc"
    result = kiln(capsys, "run", "--dry-run", "--json", "--archive", str(archive), "--", *TOY)
    plan = json.loads(result.out)
    assert plan["cache_dir"] == str(archive / "caches" / "save")
    assert plan["environment"]["TRITON_CACHE_DIR"] == str(archive / "caches" / "save" / "triton")
    assert plan["environment"]["KILN_CACHE_DIR"] == plan["cache_dir"]
    assert not archive.exists()


def _other_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cache_dirs.key_fields

    def key_fields(fields):
        return {**real(fields), "cache.triton_version": "9.9.9"}

    monkeypatch.setattr(cache_dirs, "key_fields", key_fields)


def test_load_refuses_caches_built_with_another_triton_under_strict(
    capsys, preload: Path, tmp_path: Path, child: Exec, toy_adapter, monkeypatch
) -> None:
    archive = tmp_path / "arc"
    start(capsys, child, archive, "save")
    _other_triton(monkeypatch)  # the launcher's side only: this machine "has" Triton 9.9.9
    result = kiln(capsys, "run", "--mode", "load", "--archive", str(archive), "--", *TOY)
    assert result.status != 0 and len(child.calls) == 1  # the engine never started
    assert "cache.triton_version" in result.err and "9.9.9" in result.err


def test_load_starts_with_an_empty_cache_directory_under_fallback_and_says_why(
    capsys, preload: Path, tmp_path: Path, child: Exec, toy_adapter, monkeypatch
) -> None:
    archive = tmp_path / "arc"
    start(capsys, child, archive, "save")
    _other_triton(monkeypatch)
    loaded = start(capsys, child, archive, "load", "--policy", "fallback")
    assert loaded["kernel_cache"] == "compiled"  # nothing was installed
    caches = loaded["report"]["caches"]
    assert caches["from_archive"] is None and "cache.triton_version" in caches["refused"]
    assert loaded["report"]["outcome"] == "restored"  # the graphs still came from the archive
