"""kiln's configuration: one TOML file, ``KILN_*`` environment overrides, command-line flags.

Precedence, lowest first: defaults, the TOML file, ``KILN_*`` variables, command-line flags.
Every value is validated, and an invalid one raises :class:`ConfigError` naming the key and
where the value came from. The file is the first that exists of: ``--config``,
``$KILN_CONFIG``, ``./kiln.toml``, ``$XDG_CONFIG_HOME/kiln/config.toml``.

Example::

    mode = "auto"            # save | load | auto
    policy = "fallback"      # strict | fallback
    load_builds = "background"  # background | before-ready: when LOAD's own executables must exist
    log_level = "info"       # debug | info | warning | error | trace | off (native core too)
    disable_adapters = []    # entry-point names of adapters not to load

    [archive]
    root = "~/.cache/kiln/archives"  # default: the archive dir is derived from the fingerprint
    # dir = "/srv/kiln/llama3"       # pin one archive directory instead

    [region]
    base = 0x7e0000000000    # default: chosen by the native runtime
    size = "64GiB"
"""

from __future__ import annotations

import difflib
import enum
import os
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln import env_settings as env
from kiln.env_settings import LOG_LEVELS, parse_log_level, parse_size
from kiln.errors import ConfigError, InputFileError
from kiln.input_files import read_bounded

CONFIG_ENV = env.CONFIG
_MIB2 = 2 << 20  # the VMM granularity of current GPUs; a region must be aligned to it
VA_LIMIT = 1 << 48  # user virtual addresses on x86-64 and aarch64 stay below 2**48


class Mode(enum.StrEnum):
    SAVE = "save"
    LOAD = "load"
    AUTO = "auto"  # load when a matching archive exists, else save


class Policy(enum.StrEnum):
    STRICT = "strict"  # a failed stage stops the engine start
    FALLBACK = "fallback"  # a failed stage makes the engine start natively, saying why


class LoadBuilds(enum.StrEnum):
    """When, at LOAD, every restored graph must have its own executable.

    Restored graphs replay through their topology group's template (switching per-node
    parameters) until their own executable is built on background threads.
    """

    BACKGROUND = "background"  # the engine is ready while own executables are still built
    BEFORE_READY = "before-ready"  # ready waits for every own executable (stage builds_finished)


__all__ = [
    "CONFIG_ENV",
    "ENVIRONMENT_VARIABLES",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "LoadBuilds",
    "Mode",
    "Policy",
    "default_archive_root",
    "load_config",
    "region_from_environment",
]


def default_archive_root(environ: Mapping[str, str]) -> Path:
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kiln" / "archives"


@dataclass(frozen=True)
class Config:
    mode: Mode = Mode.AUTO
    policy: Policy = Policy.STRICT
    load_builds: LoadBuilds = LoadBuilds.BACKGROUND
    archive_dir: Path | None = None
    archive_root: Path = field(default_factory=lambda: default_archive_root(os.environ))
    region_base: int | None = None
    region_size: int | None = None
    log_level: str = "info"
    disable_adapters: tuple[str, ...] = ()
    config_file: Path | None = None
    #: For each key, where its value came from ("default", a file, a variable, a flag).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def value(self, key: str) -> object:
        return getattr(self, _KEYS[key].attr)

    def as_dict(self) -> dict[str, object]:
        """Every key with its JSON-able value, as ``kiln config --json`` shows it."""
        return {key: _jsonable(self.value(key)) for key in _KEYS}

    def to_environment(self) -> dict[str, str]:
        """``KILN_*`` variables that make an engine process resolve this same config."""
        env = {spec.env: spec.render(self.value(key)) for key, spec in _KEYS.items()}
        env = {name: text for name, text in env.items() if text}
        if self.config_file is not None:
            env[CONFIG_ENV] = str(self.config_file)
        return env


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve the config. ``overrides`` maps dotted keys to command-line values."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    values: dict[str, object] = {}
    sources: dict[str, str] = {key: "default" for key in _KEYS}

    config_file = _find_file(path, environ, cwd)
    if config_file is not None:
        for key, raw in _read_toml(config_file).items():
            source = f"file {config_file}"
            values[key] = _parse(key, raw, source, config_file.parent)
            sources[key] = source
    for key, spec in _KEYS.items():
        name, text = spec.env, environ.get(spec.env)
        if (text is None or text == "") and spec.env == env.LOG_LEVEL:
            name, text = env.LOG_LEVEL_DEPRECATED, environ.get(env.LOG_LEVEL_DEPRECATED)
            if text:
                warnings.warn(
                    f"{env.LOG_LEVEL_DEPRECATED} is deprecated: set {env.LOG_LEVEL}",
                    DeprecationWarning,
                    stacklevel=2,
                )
        if text is not None and text != "":
            source = f"environment {name}"
            values[key] = _parse(key, text, source, cwd)
            sources[key] = source
    for key, raw in (overrides or {}).items():
        if key not in _KEYS:
            raise ConfigError(key, "command line", "unknown key")
        if raw is not None:
            values[key] = _parse(key, raw, "command line", cwd)
            sources[key] = "command line"

    kwargs = {_KEYS[key].attr: value for key, value in values.items()}
    kwargs.setdefault("archive_root", default_archive_root(environ))
    config = Config(config_file=config_file, sources=sources, **kwargs)  # type: ignore[arg-type]
    _check_region(config)
    return config


# --- files ---------------------------------------------------------------------------------


MAX_CONFIG_BYTES = 1 << 20


def _find_file(path: Path | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    if path is not None:
        return _existing(path, "--config")
    if environ.get(CONFIG_ENV):
        return _existing(Path(environ[CONFIG_ENV]), f"environment {CONFIG_ENV}")
    xdg = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (cwd / "kiln.toml", Path(xdg) / "kiln" / "config.toml"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _existing(path: Path, source: str) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise ConfigError(None, f"config file {path} (from {source})", "does not exist")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ConfigError(None, f"config file {path} (from {source})", f"is {kind}")
    return path.resolve()


def _read_toml(path: Path) -> dict[str, object]:
    try:
        document = tomllib.loads(read_bounded(path, MAX_CONFIG_BYTES, "config file").decode())
    except InputFileError as err:
        raise ConfigError(None, f"config file {path}", str(err)) from None
    except UnicodeDecodeError as err:
        raise ConfigError(None, f"config file {path}", f"not UTF-8: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(None, f"config file {path}", f"not valid TOML: {err}") from None
    flat: dict[str, object] = {}
    _flatten(document, "", flat)
    for key in flat:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, list(_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(_KEYS)}"
            raise ConfigError(key, f"file {path}", "unknown key" + hint)
    return flat


def _flatten(table: Mapping[str, object], prefix: str, out: dict[str, object]) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            _flatten(value, key + ".", out)
        else:
            out[key] = value


# --- keys ----------------------------------------------------------------------------------


def _parse(key: str, raw: object, source: str, base_dir: Path) -> object:
    try:
        return _KEYS[key].parse(raw, base_dir)
    except ValueError as err:
        raise ConfigError(key, source, str(err)) from None


def _choice(enum_type: type[enum.StrEnum]) -> Callable[[object, Path], object]:
    def parse(raw: object, _base: Path) -> object:
        allowed = [member.value for member in enum_type]
        if not isinstance(raw, str) or raw.strip().lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
        return enum_type(raw.strip().lower())

    return parse


def _log_level(raw: object, _base: Path) -> str:
    return parse_log_level(raw)


def _path(raw: object, base_dir: Path) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected a non-empty path, got {raw!r}")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _directory(raw: object, base_dir: Path) -> Path:
    """A path that names a directory, or nothing yet (kiln creates it)."""
    path = _path(raw, base_dir)
    if path.exists() and not path.is_dir():
        hint = f"; use {path.parent}" if path.name == "graphs.kiln" else ""
        raise ValueError(
            f"{path} is not a directory: this setting names the directory that holds "
            f"graphs.kiln{hint}"
        )
    return path


def _names(raw: object, _base: Path) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected a list of adapter names, got {raw!r}")
    return tuple(name.strip() for name in items if name.strip())


def _aligned(raw: object, what: str) -> int:
    value = parse_size(raw, what)
    if value <= 0 or value % _MIB2:
        raise ValueError(f"must be a positive multiple of 2 MiB (0x200000), got {value:#x}")
    return value


def _region_base(raw: object, _base: Path) -> int:
    value = _aligned(raw, "an address such as 0x7e0000000000")
    if value >= VA_LIMIT:
        raise ValueError(f"{value:#x} is not a user-space address (must be below 2**48)")
    return value


def _region_size(raw: object, _base: Path) -> int:
    return _aligned(raw, "a size in bytes, hex, or with a unit KiB/MiB/GiB/TiB such as '64GiB'")


def _check_region(config: Config) -> None:
    _check_region_end(config.region_base, config.region_size, config.sources.get("region.size"))


def _check_region_end(base: int | None, size: int | None, source: str | None) -> None:
    if base is not None and size is not None and base + size > VA_LIMIT:
        raise ConfigError(
            "region.size", source or "default", f"region {base:#x} + {size:#x} ends above 2**48"
        )


def region_from_environment(
    environ: Mapping[str, str] | None = None,
) -> tuple[int | None, int | None]:
    """The region's base and size from KILN_REGION_BASE / KILN_REGION_SIZE (None where
    unset), parsed as the config parses them (``64GiB``, hex, bytes); ConfigError names the
    variable of a bad value. This is how ``kiln run``'s region settings reach
    :class:`kiln.Region` in the engine process."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd()
    values: dict[str, int | None] = {}
    for key in ("region.base", "region.size"):
        text = environ.get(_KEYS[key].env)
        parsed = _parse(key, text, f"environment {_KEYS[key].env}", cwd) if text else None
        values[key] = parsed if isinstance(parsed, int) else None
    base, size = values["region.base"], values["region.size"]
    _check_region_end(base, size, f"environment {env.REGION_SIZE}")
    return base, size


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return hex(value) if value >= _MIB2 else str(value)
    return str(value)


@dataclass(frozen=True)
class _Key:
    attr: str
    env: str
    parse: Callable[[object, Path], object]
    render: Callable[[object], str] = _render


_KEYS: dict[str, _Key] = {
    "mode": _Key("mode", env.MODE, _choice(Mode)),
    "policy": _Key("policy", env.POLICY, _choice(Policy)),
    "load_builds": _Key("load_builds", env.LOAD_BUILDS, _choice(LoadBuilds)),
    "archive.dir": _Key("archive_dir", env.ARCHIVE, _directory),
    "archive.root": _Key("archive_root", env.ARCHIVE_ROOT, _directory),
    "region.base": _Key("region_base", env.REGION_BASE, _region_base),
    "region.size": _Key("region_size", env.REGION_SIZE, _region_size),
    "log_level": _Key("log_level", env.LOG_LEVEL, _log_level),
    "disable_adapters": _Key("disable_adapters", env.DISABLE_ADAPTERS, _names),
}

#: Dotted config keys and the variable that overrides each.
ENVIRONMENT_VARIABLES: dict[str, str] = {key: spec.env for key, spec in _KEYS.items()}
