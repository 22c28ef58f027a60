"""`kiln adapters`, `config`, `demo`, and the command line itself."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from kiln import __version__
from kiln.cli import main

from tests.cli.helpers import kiln
from tests.lifecycle.helpers import subprocess_env


def test_adapters_lists_the_installed_adapter_with_versions(capsys, toy_adapter) -> None:
    result = kiln(capsys, "adapters", "--json")
    assert result.status == 0
    toy = next(a for a in json.loads(result.out) if a["name"] == "toy")
    assert (toy["version"], toy["engine"], toy["engine_versions"]) == ("0.3.1", "toy", ">=0.3,<0.4")
    assert (toy["engine_installed"], toy["engine_supported"], toy["error"]) == ("0.3.1", True, None)


def test_adapters_table_for_people(capsys, toy_adapter) -> None:
    result = kiln(capsys, "adapters")
    assert result.status == 0
    assert "toy" in result.out and ">=0.3,<0.4" in result.out and "0.3.1" in result.out


def test_config_shows_values_and_their_sources(capsys, monkeypatch) -> None:
    monkeypatch.setenv("KILN_POLICY", "fallback")
    result = kiln(capsys, "config", "--json")
    shown = json.loads(result.out)
    assert shown["values"]["policy"] == "fallback"
    assert shown["sources"]["policy"] == "environment KILN_POLICY"
    assert shown["sources"]["mode"] == "default"


def test_config_errors_name_the_key(capsys, monkeypatch) -> None:
    monkeypatch.setenv("KILN_REGION_SIZE", "lots")
    result = kiln(capsys, "config")
    assert result.status == 2
    assert "config key 'region.size' (from environment KILN_REGION_SIZE)" in result.err


def test_a_config_file_named_on_the_command_line_is_used(capsys, tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('mode = "load"\n')
    shown = json.loads(kiln(capsys, "--config", str(path), "config", "--json").out)
    assert shown["file"] == str(path) and shown["values"]["mode"] == "load"


def test_demo_passes_its_arguments_to_the_core_demo(capsys, monkeypatch) -> None:
    received: list[list[str]] = []
    module = types.ModuleType("kiln.demo")
    module.main = lambda argv: received.append(argv) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kiln.demo", module)
    assert kiln(capsys, "demo", "--", "--layers", "2").status == 3
    assert received == [["--layers", "2"]]


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"kiln {__version__}"


def test_a_command_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2


def test_arguments_after_the_separator_are_refused_where_meaningless(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["adapters", "--", "x"])
    assert raised.value.code == 2
    assert "takes no arguments after --" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-m", "kiln.cli", "config", "--json"],
        env=subprocess_env(XDG_CONFIG_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(child.stdout)["values"]["mode"] == "auto"
