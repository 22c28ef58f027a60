"""`kiln run` execs the engine command with the right environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import Exec, kiln, python_printing_kiln_env
from tests.lifecycle.helpers import subprocess_env

TOY = [sys.executable, "-m", "kiln_test_adapter.engine"]


def test_save_execs_the_command_with_the_interposer_and_kiln_environment(
    capsys, preload: Path, execs: Exec, tmp_path: Path
) -> None:
    result = kiln(
        capsys, "run", "--mode", "save", "--archive", "arc", "--", "engine", "--port", "1"
    )
    assert result.status == 0
    (file, args, env) = execs.calls[0]
    assert (file, args) == ("engine", ["engine", "--port", "1"])
    assert env["LD_PRELOAD"] == str(preload)
    assert (env["KILN_ENABLE"], env["KILN_MODE"], env["KILN_POLICY"]) == ("1", "save", "strict")
    assert env["KILN_ARCHIVE"] == str(tmp_path / "cwd" / "arc")
    assert "kiln: SAVE" in result.err and result.out == ""


def test_policy_and_config_values_reach_the_engine(
    capsys, preload: Path, execs: Exec, tmp_path: Path
) -> None:
    config = tmp_path / "kiln.toml"
    config.write_text('log_level = "debug"\n[region]\nbase = 0x7e0000000000\nsize = "4GiB"\n')
    kiln(
        capsys, "--config", str(config), "run", "--mode", "save", "--policy", "fallback", "--", "e"
    )
    env = execs.env
    assert env["KILN_POLICY"] == "fallback"
    assert (env["KILN_REGION_BASE"], env["KILN_REGION_SIZE"]) == ("0x7e0000000000", "0x100000000")
    assert env["KILN_LOG_LEVEL"] == "debug"
    assert env["KILN_CONFIG"] == str(config)


def test_load_builds_reaches_the_engine_from_the_flag_or_the_environment(
    capsys, preload: Path, execs: Exec, monkeypatch: pytest.MonkeyPatch
) -> None:
    kiln(capsys, "run", "--mode", "save", "--", "e")
    kiln(capsys, "run", "--mode", "save", "--load-builds", "before-ready", "--", "e")
    monkeypatch.setenv("KILN_LOAD_BUILDS", "before-ready")
    kiln(capsys, "run", "--mode", "save", "--", "e")
    passed = [env["KILN_LOAD_BUILDS"] for _file, _args, env in execs.calls]
    assert passed == ["background", "before-ready", "before-ready"]


def test_an_existing_ld_preload_is_kept_after_the_interposer(
    capsys, preload: Path, execs: Exec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LD_PRELOAD", f"/opt/jemalloc.so {preload}")
    kiln(capsys, "run", "--mode", "save", "--", "e")
    assert execs.env["LD_PRELOAD"] == f"{preload}:/opt/jemalloc.so"


def test_the_command_may_follow_without_a_separator(capsys, preload: Path, execs: Exec) -> None:
    kiln(capsys, "run", "--mode", "save", "engine", "--flag")
    assert execs.calls[0][1] == ["engine", "--flag"]


def test_dry_run_json_shows_the_plan_and_execs_nothing(capsys, preload: Path, execs: Exec) -> None:
    result = kiln(capsys, "run", "--dry-run", "--json", "--archive", "a", "--", "engine")
    assert result.status == 0 and execs.calls == []
    plan = json.loads(result.out)
    assert (plan["mode"], plan["requested_mode"], plan["command"]) == ("save", "auto", ["engine"])
    assert plan["archive"].endswith("a/graphs.kiln")
    assert plan["environment"]["KILN_AUTO"] == "1"
    assert plan["environment"]["LD_PRELOAD"] == str(preload)


def test_without_a_command_it_is_an_error(capsys, preload: Path, execs: Exec) -> None:
    result = kiln(capsys, "run", "--mode", "save")
    assert result.status == 2 and "no engine command" in result.err
    assert execs.calls == []


def test_a_missing_interposer_is_an_error_under_strict(capsys, execs: Exec, monkeypatch) -> None:
    monkeypatch.setattr("kiln._paths.preload_library", lambda: Path("/nonexistent/libkiln.so"))
    result = kiln(capsys, "run", "--", "engine")
    assert result.status == 2 and "/nonexistent/libkiln.so not found" in result.err
    assert execs.calls == []


def test_a_missing_interposer_starts_natively_under_fallback(
    capsys, execs: Exec, monkeypatch
) -> None:
    monkeypatch.setattr("kiln._paths.preload_library", lambda: Path("/nonexistent/libkiln.so"))
    result = kiln(capsys, "run", "--policy", "fallback", "--", "engine")
    assert result.status == 0 and "starting natively" in result.err
    assert execs.env["KILN_ENABLE"] == "0" and "LD_PRELOAD" not in execs.env


def test_a_command_that_cannot_be_executed_exits_127(capsys, preload: Path) -> None:
    result = kiln(capsys, "run", "--mode", "save", "--", "/nonexistent/kiln-no-such-program")
    assert result.status == 127 and "cannot exec" in result.err


def test_a_real_exec_hands_the_environment_to_the_engine(tmp_path: Path, preload: Path) -> None:
    script = (
        "import sys, pathlib, kiln._paths as p;"
        f"p.preload_library = lambda: pathlib.Path({str(preload)!r});"
        "from kiln.cli import main;"
        "sys.exit(main(sys.argv[1:]))"
    )
    argv = ["run", "--mode", "load", "--policy", "fallback", "--archive", str(tmp_path / "a")]
    archive = tmp_path / "a"
    archive.mkdir()
    (archive / "graphs.kiln").write_bytes(b"")  # --mode load only needs it to exist
    child = subprocess.run(
        [sys.executable, "-c", script, *argv, "--", *python_printing_kiln_env()],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the assertion below shows stderr when it fails
    )
    assert child.returncode == 0, child.stderr
    env = json.loads(child.stdout)
    assert env["LD_PRELOAD"] == str(preload)
    assert (env["KILN_MODE"], env["KILN_POLICY"], env["KILN_ARCHIVE"]) == (
        "load",
        "fallback",
        str(archive),
    )


def test_save_then_auto_load_of_a_real_engine_process(
    capsys, preload: Path, tmp_path: Path, monkeypatch, toy_adapter
) -> None:
    child = Exec(run_child=True)
    monkeypatch.setattr("os.execvpe", child)
    first = kiln(capsys, "run", "--", *TOY)
    assert "kiln: SAVE" in first.err, first.err
    saved = json.loads(child.outputs[-1].stdout)
    assert saved["mode"] == "save" and saved["report"]["outcome"] == "saved"

    second = kiln(capsys, "run", "--", *TOY)
    assert "kiln: LOAD" in second.err and "matches" in second.err
    loaded = json.loads(child.outputs[-1].stdout)
    assert loaded["report"]["outcome"] == "restored"
    assert loaded["graphs"]["full/bs=1"] == "restored:full/bs=1"
    assert loaded["settings"]["graph_mode"] == "full"  # pinned by the adapter
    assert child.calls[-1][2]["TOY_DETERMINISTIC"] == "1"
    assert loaded["report"]["phases_s"]["process_start"] is not None

    changed = kiln(capsys, "run", "--", *TOY, "--graph-mode", "full")
    assert "kiln: SAVE" in changed.err  # another command line: another archive


def test_load_of_a_fifo_in_place_of_the_archive_names_it(
    capsys, tmp_path: Path, preload: Path, execs, toy_adapter
) -> None:
    archive = tmp_path / "a"
    archive.mkdir()
    os.mkfifo(archive / "graphs.kiln")
    result = kiln(
        capsys,
        "run",
        "--mode",
        "load",
        "--policy",
        "fallback",
        "--archive",
        str(archive),
        "--dry-run",
        "--",
        "python",
        "-m",
        "kiln_test_adapter.engine",
    )
    assert result.status == 0
    assert "is not a regular file" in result.out and "no archive at" not in result.out
