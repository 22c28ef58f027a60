"""kiln.env_settings: checked counts and switches from the environment."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from kiln import env_settings
from kiln.config import ConfigError, load_config
from kiln.env_settings import count_setting, switch_setting
from kiln.errors import KilnError
from kiln.region import DEFAULT_BASE, Region, RegionConfig


def test_a_count_comes_from_the_argument_then_the_environment_then_the_default() -> None:
    assert count_setting("N", 3, "things", environ={}) == 3
    assert count_setting("N", 3, "things", environ={"N": "0"}) == 0
    assert count_setting("N", 3, "things", 7, environ={"N": "0"}) == 7


@pytest.mark.parametrize(
    ("raw", "message"), [("", "N='' is not a count of things"), ("-2", ">= 0")]
)
def test_a_bad_count_names_the_variable_or_the_bound(raw: str, message: str) -> None:
    with pytest.raises(KilnError, match=message):
        count_setting("N", 3, "things", environ={"N": raw})


def test_a_switch_is_on_unless_zero_and_refuses_other_values_with_their_meaning() -> None:
    assert switch_setting("S", "go", "stop", environ={}) is True
    assert switch_setting("S", "go", "stop", environ={"S": "0"}) is False
    with pytest.raises(KilnError, match=r"S='on': use 1 \(go\) or 0 \(stop\)"):
        switch_setting("S", "go", "stop", environ={"S": "on"})


# --- one parser for every KILN_* variable ---------------------------------------------------

CORE = Path(env_settings.__file__).resolve().parent


def _kiln_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("KILN_")
        and id(node) not in docstrings
    ]


def test_every_kiln_variable_is_named_in_env_settings_only() -> None:
    # kiln.workloads holds test workloads (launched as scripts), not kiln's settings.
    sources = [
        p
        for p in CORE.rglob("*.py")
        if p.name != "env_settings.py" and "workloads" not in p.relative_to(CORE).parts
    ]
    found = [
        f"{p.relative_to(CORE)}:{line}: {text}" for p in sources for line, text in _kiln_literals(p)
    ]
    assert found == []
    constants = {v for k, v in vars(env_settings).items() if k.isupper() and isinstance(v, str)}
    assert constants - {env_settings.PREFIX} == set(env_settings.VARIABLES)


def test_kiln_region_size_64gib_passes_the_config_and_works_in_region(monkeypatch) -> None:
    # Bug: KILN_REGION_SIZE=64GiB passed the config but kiln.Region() raised ValueError
    # (its own int(raw, 0) parser).
    monkeypatch.setenv("KILN_REGION_SIZE", "64GiB")
    monkeypatch.setenv("KILN_REGION_PREALLOC", "1GiB")
    monkeypatch.delenv("KILN_REGION_BASE", raising=False)
    assert load_config(environ={"KILN_REGION_SIZE": "64GiB"}).region_size == 64 << 30
    config = Region(device=1).config
    assert config == RegionConfig(
        1, DEFAULT_BASE + (64 << 30), 64 << 30, 1 << 30
    )  # device 1: slot 1


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("KILN_REGION_SIZE", "64 gigs", "environment KILN_REGION_SIZE"),
        ("KILN_REGION_SIZE", "3MiB", "multiple of 2 MiB"),
        ("KILN_REGION_BASE", "0x1000000000000", "below 2\\*\\*48"),
        ("KILN_REGION_PREALLOC", "lots", "environment KILN_REGION_PREALLOC"),
    ],
)
def test_a_bad_region_variable_is_a_config_error_naming_it(monkeypatch, name, raw, message) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=message):
        Region()


def test_a_region_ending_above_the_address_space_is_refused_from_the_environment() -> None:
    environ = {"KILN_REGION_BASE": "0xff0000000000", "KILN_REGION_SIZE": "2TiB"}
    with pytest.raises(ConfigError, match="ends above 2\\*\\*48"):
        RegionConfig.from_env(0, environ)


def test_bad_counts_and_switches_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        count_setting("N", 3, "things", environ={"N": "x"})
    with pytest.raises(ConfigError):
        switch_setting("S", "go", "stop", environ={"S": "yes"})


@pytest.mark.parametrize(
    ("raw", "level"),
    [("WARN", "warning"), ("warning", "warning"), ("trace", "trace"), ("off", "off")],
)
def test_python_takes_every_log_level_the_native_core_takes(raw: str, level: str) -> None:
    assert load_config(environ={"KILN_LOG_LEVEL": raw}).log_level == level


def test_kiln_log_is_a_deprecated_name_of_kiln_log_level() -> None:
    with pytest.warns(DeprecationWarning, match="KILN_LOG_LEVEL"):
        config = load_config(environ={"KILN_LOG": "debug"})
    assert config.log_level == "debug"
    assert config.sources["log_level"] == "environment KILN_LOG"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(environ={"KILN_LOG": "debug", "KILN_LOG_LEVEL": "error"})
    assert config.log_level == "error"


def _native_level_warning(environ: dict[str, str]) -> str:
    pytest.importorskip("kiln._native", reason="kiln's native extension is not built")
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_LOG", "KILN_LOG_LEVEL")}
    code = "import kiln._native as n; n.set_log_level('warn')"  # reads the variable first
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env={**env, **environ},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_native_and_python_log_levels_are_one_variable() -> None:
    # Bug: the native core read KILN_LOG, Python KILN_LOG_LEVEL: one setting, two names.
    assert "KILN_LOG_LEVEL=loud is not one of" in _native_level_warning({"KILN_LOG_LEVEL": "loud"})
    assert _native_level_warning({"KILN_LOG_LEVEL": "DEBUG"}) == ""
    assert "KILN_LOG=loud" in _native_level_warning({"KILN_LOG": "loud"})
    assert _native_level_warning({"KILN_LOG_LEVEL": "info", "KILN_LOG": "loud"}) == ""
