"""kiln verify --gpu never runs a command stored in an archive without consent.

The GPU check is faked to be possible (no GPU on CPU runners); the commands are real
processes, so a marker file tells whether a command ran. Whoever writes an archive can
write its recipe and recompute its checksums: "OK" from the CPU checks is no consent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kiln.inspection import gpu, verify_archive

from tests.cli.helpers import kiln
from tests.inspection.archives import good_parts, write


def command_archive(tmp_path: Path, marker: Path) -> Path:
    parts = good_parts()
    parts.recipe = {
        "kind": "command",
        "argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
    }
    return write(tmp_path / "a" / "graphs.kiln", parts)


@pytest.fixture
def gpu_possible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "gpu_unavailable_reason", lambda: None)


def test_verify_gpu_does_not_run_the_archives_sh_c_recipe(
    tmp_path: Path, gpu_possible: None
) -> None:
    marker = tmp_path / "ran"
    result = verify_archive(command_archive(tmp_path, marker), gpu=True)
    assert not marker.exists()
    assert result["gpu"]["ran"] is False
    assert "runs no command stored in an archive without consent" in result["gpu"]["skipped"]
    assert result["gpu"]["stored_command"][0] == sys.executable


def test_refused_consent_runs_nothing(tmp_path: Path, gpu_possible: None) -> None:
    marker = tmp_path / "ran"
    asked: list[list[str]] = []

    def refuse(argv: list[str]) -> bool:
        asked.append(argv)
        return False

    verify_archive(command_archive(tmp_path, marker), gpu=True, consent=refuse)
    assert len(asked) == 1 and not marker.exists()


def test_the_cli_without_a_terminal_never_consents(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gpu_possible: None
) -> None:
    marker = tmp_path / "ran"
    path = command_archive(tmp_path, marker)
    result = kiln(capsys, "verify", str(path), "--gpu", "--ask")  # stdin is no terminal here
    assert not marker.exists()
    assert "--ask needs a terminal" in result.err
    assert "GPU check skipped" in result.out and "the archive stores:" in result.out


def test_the_users_own_command_is_the_one_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gpu_possible: None
) -> None:
    stored, given = tmp_path / "stored-ran", tmp_path / "given-ran"
    path = command_archive(tmp_path, stored)
    command = [sys.executable, "-c", f"open({str(given)!r}, 'w').close()"]
    result = kiln(capsys, "verify", str(path), "--gpu", "--json", "--", *command)
    assert given.exists() and not stored.exists()
    assert '"ran": true' in result.out


def test_a_command_after_dashes_needs_gpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = command_archive(tmp_path, tmp_path / "ran")
    result = kiln(capsys, "verify", str(path), "--", "true")
    assert result.status == 2 and "--gpu only" in result.err
