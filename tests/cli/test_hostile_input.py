"""The CLI on hostile input: every case of issue 23's list, each named after the bug it pins.

Strings from users, archives and reports are shown literally (no rich markup, no emoji
codes, lone surrogates and control characters escaped); malformed reports, FIFOs and
devices are refused by name with exit status 2; no case ends in a traceback."""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path

import pytest
from kiln.archive import dump_json, write_archive
from kiln.cli import adapters_cmd
from kiln.plugins import discover_adapters

from tests.cli.helpers import kiln

BASE = {"kiln_version": "0.1.0", "gpu_name": "H100", "kiln.rank": 0}


def fingerprint_archive(directory: Path, fingerprint: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "graphs.kiln"
    write_archive(path, {"fingerprint": dump_json(fingerprint)})
    return path


# --- rich markup and emoji codes --------------------------------------------------------


def test_verify_of_a_path_with_markup_is_no_markup_error(capsys, tmp_path: Path) -> None:
    path = tmp_path / "dir_[/]x"
    result = kiln(capsys, "verify", str(path))
    assert result.status == 2 and "dir_[/]x" in result.err


def test_config_shows_an_archive_root_with_markup_literally(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_ARCHIVE_ROOT", "/[/]x:x:")
    result = kiln(capsys, "config")
    assert result.status == 0 and "/[/]x:x:" in result.out


def test_diff_shows_markup_in_a_fingerprint_value_literally(capsys, tmp_path: Path) -> None:
    fingerprint_archive(tmp_path / "a", BASE)
    fingerprint_archive(tmp_path / "b", {**BASE, "gpu_name": "[/]x [bold]y :x:"})
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.status == 1 and "[/]x [bold]y :x:" in result.out


def test_adapters_shows_an_import_error_with_markup_literally(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = metadata.EntryPoint("broken", "no_such_module_[/]x:plugin", "kiln.adapters")
    monkeypatch.setattr(adapters_cmd, "discover_adapters", lambda: discover_adapters([broken]))
    result = kiln(capsys, "adapters")
    assert result.status == 1
    assert "no_such_module_[/]x" in result.out and "error" in result.out


def test_verify_of_etc_passwd_shows_its_bytes_without_emoji(capsys) -> None:
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd here")
    result = kiln(capsys, "verify", "/etc/passwd")
    assert result.status == 2  # not a kiln archive: unreadable input, as for inspect
    assert "not a kiln archive" in result.err
    assert "❌" not in result.err


def test_inspect_and_verify_agree_on_a_file_that_is_not_an_archive(capsys, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("root:x:0:0\n")
    assert kiln(capsys, "inspect", str(path)).status == 2
    assert kiln(capsys, "verify", str(path)).status == 2


def test_control_characters_in_archive_text_are_escaped(capsys, tmp_path: Path) -> None:
    fingerprint_archive(tmp_path / "a", BASE)
    fingerprint_archive(tmp_path / "b", {**BASE, "gpu_name": "\x1b[2Jcleared"})
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert "\x1b" not in result.out and "\\x1b[2Jcleared" in result.out


# --- kiln diff's time ---------------------------------------------------------------------


def test_diff_of_a_long_fingerprint_value_is_not_quadratic(capsys, tmp_path: Path) -> None:
    fingerprint_archive(tmp_path / "a", BASE)
    fingerprint_archive(tmp_path / "b", {**BASE, "gpu_name": "x" * 60_000})
    start = time.perf_counter()
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert time.perf_counter() - start < 2.0
    assert result.status == 1 and "more" in result.out and len(result.out) < 20_000


def test_diff_refuses_a_5_mb_fingerprint_value_at_once(capsys, tmp_path: Path) -> None:
    fingerprint_archive(tmp_path / "a", BASE)
    fingerprint_archive(tmp_path / "b", {**BASE, "gpu_name": "x" * 5_000_000})
    start = time.perf_counter()
    result = kiln(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert time.perf_counter() - start < 5.0
    assert result.status == 2 and "field 'gpu_name'" in result.err


# --- kiln report --------------------------------------------------------------------------

MALFORMED_REPORTS = {
    "a list": "[]",
    "a string": '"restored"',
    "null": "null",
    "an empty object": "{}",
    "total_s a word": '{"outcome": "restored", "total_s": "fast"}',
    "outcome markup": '{"outcome": "[/]x"}',
    "phases a list": '{"outcome": "restored", "phases_s": []}',
    "phase a word": '{"outcome": "restored", "phases_s": {"load": "slow"}}',
    "error a string": '{"outcome": "failed", "error": "boom"}',
    "graphs negative": '{"outcome": "restored", "graphs_restored": -1}',
    "not JSON": "{outcome",
    "infinite total": '{"outcome": "restored", "total_s": 1e999}',
}


@pytest.mark.parametrize("text", MALFORMED_REPORTS.values(), ids=MALFORMED_REPORTS.keys())
def test_report_of_a_malformed_report_is_an_error_not_a_crash(
    capsys, tmp_path: Path, text: str
) -> None:
    (tmp_path / "startup-report.json").write_text(text)
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "no startup report at" in result.err


def test_report_shows_markup_in_a_fallback_reason_literally(capsys, tmp_path: Path) -> None:
    report = {"outcome": "fallback", "fallback_reason": "[/]x :x: [red]", "phases_s": {}}
    (tmp_path / "startup-report.json").write_text(json.dumps(report))
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 0 and "[/]x :x: [red]" in result.out


def test_report_on_a_fifo_does_not_hang(capsys, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "startup-report.json")
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "a FIFO, not a regular file" in result.err


def test_report_through_a_symlink_to_dev_zero_reads_nothing(capsys, tmp_path: Path) -> None:
    (tmp_path / "startup-report.json").symlink_to("/dev/zero")
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "a device, not a regular file" in result.err


def test_report_of_a_huge_file_is_refused_unread(capsys, tmp_path: Path) -> None:
    with (tmp_path / "startup-report.json").open("wb") as out:
        out.truncate(64 << 20)  # sparse: 64 MiB of zeros
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "more than the 1048576 kiln reads" in result.err


# --- rough edges --------------------------------------------------------------------------


def test_run_errors_name_the_verb_not_an_empty_command(capsys, tmp_path: Path) -> None:
    result = kiln(capsys, "--config", str(tmp_path / "absent.toml"), "run", "--", "true")
    assert result.status == 2 and result.err.startswith("kiln run: error:")


def test_config_naming_a_directory_says_so(capsys, tmp_path: Path) -> None:
    result = kiln(capsys, "--config", str(tmp_path), "config")
    assert result.status == 2 and "is a directory" in result.err


def test_run_with_archive_naming_the_archive_file_says_what_to_use(capsys, tmp_path: Path) -> None:
    path = fingerprint_archive(tmp_path / "a", BASE)
    result = kiln(capsys, "run", "--dry-run", "--archive", str(path), "--", "true")
    assert result.status == 2
    assert "is not a directory" in result.err and f"use {path.parent}" in result.err


def test_a_fifo_in_place_of_the_archive_is_named_as_such(capsys, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "graphs.kiln")
    for verb in ("verify", "inspect"):
        result = kiln(capsys, verb, str(tmp_path / "graphs.kiln"))
        assert result.status == 2 and "is not a regular file" in result.err, verb
    result = kiln(capsys, "verify", str(tmp_path))
    assert result.status == 2 and "is not a regular file" in result.err


def test_adapters_says_when_the_engine_is_not_installed(capsys) -> None:
    try:
        metadata.distribution("vllm")
        pytest.skip("vLLM is installed here")
    except metadata.PackageNotFoundError:
        pass
    rows = json.loads(kiln(capsys, "adapters", "--json").out)
    vllm = [row for row in rows if row["engine"] == "vllm"]
    if not vllm:
        pytest.skip("kiln-vllm is not installed here")
    assert vllm[0]["status"] == "engine not installed"
    assert "engine not installed" in kiln(capsys, "adapters").out


def test_help_lists_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        kiln(capsys, "--help")
    out = capsys.readouterr().out
    assert "exit status (every command)" in out and "usage error" in out


def test_report_with_a_lone_surrogate_total_is_an_error_not_a_unicode_error(
    capsys, tmp_path: Path
) -> None:
    (tmp_path / "startup-report.json").write_text('{"outcome": "restored", "total_s": "\\udc80"}')
    result = kiln(capsys, "report", str(tmp_path))
    assert result.status == 2 and "lone surrogate" in result.err


def test_run_shows_a_command_with_terminal_escapes_literally(
    capsys, tmp_path: Path, preload: Path
) -> None:
    result = kiln(
        capsys, "run", "--dry-run", "--archive", str(tmp_path / "a"), "--", "echo", "\x1b[2J"
    )
    assert result.status == 0
    assert "\x1b" not in result.out and "\\x1b[2J" in result.out
