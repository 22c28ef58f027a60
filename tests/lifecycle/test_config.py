"""Config: one TOML file, KILN_* overrides, flags; validation errors name the key and source."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.config import Config, ConfigError, Mode, Policy, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiln.toml"
    path.write_text(text)
    return path


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **values,
    }


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    config = load_config(environ=env(tmp_path), cwd=tmp_path)
    assert (config.mode, config.policy, config.log_level) == (Mode.AUTO, Policy.STRICT, "info")
    assert config.archive_dir is None
    assert config.archive_root == tmp_path / "cache" / "kiln" / "archives"
    assert config.config_file is None
    assert set(config.sources.values()) == {"default"}


def test_file_values_are_read_and_paths_resolved_against_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'mode = "save"\npolicy = "fallback"\nlog_level = "DEBUG"\n'
        'disable_adapters = ["sglang"]\n'
        '[archive]\ndir = "archives/llama"\n'
        '[region]\nbase = 0x7e0000000000\nsize = "64GiB"\n',
    )
    config = load_config(path, environ=env(tmp_path))
    assert (config.mode, config.policy, config.log_level) == (Mode.SAVE, Policy.FALLBACK, "debug")
    assert config.archive_dir == tmp_path / "archives" / "llama"
    assert (config.region_base, config.region_size) == (0x7E0000000000, 64 << 30)
    assert config.disable_adapters == ("sglang",)
    assert config.sources["mode"] == f"file {path}"


def test_the_file_is_found_in_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path, 'policy = "fallback"\n')
    assert load_config(environ=env(tmp_path), cwd=tmp_path).policy is Policy.FALLBACK


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "save"\npolicy = "fallback"\n')
    environ = env(tmp_path, KILN_MODE="load", KILN_REGION_SIZE="0x40000000")
    config = load_config(path, environ=environ, overrides={"policy": "strict"})
    assert (config.mode, config.policy, config.region_size) == (Mode.LOAD, Policy.STRICT, 1 << 30)
    assert config.sources["mode"] == "environment KILN_MODE"
    assert config.sources["policy"] == "command line"


def test_kiln_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "load"\n')
    config = load_config(environ=env(tmp_path, KILN_CONFIG=str(path)), cwd=tmp_path / "elsewhere")
    assert config.mode is Mode.LOAD and config.config_file == path


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('mode = "fast"\n', "mode", "expected one of save, load, auto"),
        ("policy = 1\n", "policy", "expected one of strict, fallback"),
        ('load_builds = "later"\n', "load_builds", "expected one of background, before-ready"),
        ('log_level = "loud"\n', "log_level", "expected one of debug"),
        ("[region]\nbase = 0x1000\n", "region.base", "multiple of 2 MiB"),
        ("[region]\nbase = 0x1000000000000\n", "region.base", "below 2**48"),
        ('[region]\nsize = "64GB"\n', "region.size", "KiB/MiB/GiB/TiB"),
        ("[region]\nsize = true\n", "region.size", "got True"),
        ("[region]\nsize = 0\n", "region.size", "positive"),
        ('[archive]\ndir = ""\n', "archive.dir", "non-empty path"),
        ("disable_adapters = [1]\n", "disable_adapters", "list of adapter names"),
        ('[region]\nbase = 0xff0000000000\nsize = "2TiB"\n', "region.size", "ends above 2**48"),
    ],
)
def test_invalid_file_values_name_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=env(tmp_path))
    err = raised.value
    assert err.key == key
    assert f"config key {key!r}" in str(err) and fragment in str(err)
    assert str(path) in err.source


def test_invalid_environment_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ=env(tmp_path, KILN_POLICY="maybe"), cwd=tmp_path)
    assert raised.value.key == "policy"
    assert "environment KILN_POLICY" in str(raised.value)


def test_an_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[region]\nsise = 1\n")
    with pytest.raises(ConfigError, match=r"'region.sise'.*did you mean 'region.size'"):
        load_config(path, environ=env(tmp_path))


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mode = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as raised:
        load_config(path, environ=env(tmp_path))
    assert str(path) in str(raised.value)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ=env(tmp_path))


def test_the_environment_reproduces_the_config_in_engine_processes(tmp_path: Path) -> None:
    path = write(tmp_path, 'policy = "fallback"\n[region]\nbase = 0x7e0000000000\nsize = "2GiB"\n')
    config = load_config(path, environ=env(tmp_path), overrides={"archive.dir": "/srv/a"})
    again = load_config(environ=env(tmp_path, **config.to_environment()), cwd=tmp_path)
    assert again == config
    assert isinstance(again, Config)
