"""Every ``KILN_*`` environment variable kiln reads, and the one parser of each kind of value.

kiln's Python modules name these variables through the constants here, never as literals
(a test keeps it so), and parse their values with the functions here: a count, an on/off
switch, a size, a log level. A bad value raises :class:`~kiln.errors.ConfigError` naming
the variable; it never falls back to the default. The variables that are also keys of the
config file are resolved, with the file and the command line, by :mod:`kiln.config`, which
uses these parsers. The native core reads two of them itself: ``KILN_ENABLE`` and
``KILN_LOG_LEVEL`` (same names, same values). Adapters name their own variables
(``KILN_VLLM_*``) and parse them with these functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from kiln.errors import ConfigError

PREFIX = "KILN_"  # every variable's; adapters may not pin any

# --- configuration: each is also a key of the config file (kiln.config) ------------------
CONFIG = "KILN_CONFIG"  # the config file
MODE = "KILN_MODE"  # save | load | auto (an engine process: save | load)
POLICY = "KILN_POLICY"  # strict | fallback
LOAD_BUILDS = "KILN_LOAD_BUILDS"  # background | before-ready
ARCHIVE = "KILN_ARCHIVE"  # the archive directory
ARCHIVE_ROOT = "KILN_ARCHIVE_ROOT"  # where archive directories are derived
REGION_BASE = "KILN_REGION_BASE"  # the region's base address
REGION_SIZE = "KILN_REGION_SIZE"  # the region's size per device
LOG_LEVEL = "KILN_LOG_LEVEL"  # Python's and the native core's log level
LOG_LEVEL_DEPRECATED = "KILN_LOG"  # the native core's former name for it; read when unset
DISABLE_ADAPTERS = "KILN_DISABLE_ADAPTERS"  # adapter names, comma-separated

# --- set by `kiln run` for the engine processes it launches (kiln.lifecycle.environment) --
ENABLE = "KILN_ENABLE"  # "1": the interposer and the driver are active
AUTO = "KILN_AUTO"  # "1": LOAD was chosen by auto mode and may turn into SAVE on mismatch
LAUNCH_FINGERPRINT = "KILN_LAUNCH_FINGERPRINT"  # JSON object of the launcher's fields
LAUNCH_TIME = "KILN_LAUNCH_TIME"  # wall-clock seconds when `kiln run` started
FALLBACK_REASON = "KILN_FALLBACK_REASON"  # set with KILN_ENABLE=0 when the launcher fell back
ENV_PINS = "KILN_ENV_PINS"  # comma-separated names of the variables adapters pinned
COMMAND = "KILN_COMMAND"  # JSON list: the command `kiln run` launched (the archive's recipe)
JOB = "KILN_JOB"  # one id per `kiln run`: every rank's archive of one SAVE records it
CACHE_DIR = "KILN_CACHE_DIR"  # the kiln-owned directory the engine's caches are pinned below

# --- tuning and diagnostics (environment only) -------------------------------------------
REGION_PREALLOC = "KILN_REGION_PREALLOC"  # bytes of the region mapped up front
REGION_LIBRARY_SLOT = "KILN_REGION_LIBRARY_SLOT"  # bytes of each communication library's slot
REGION_SLOT = "KILN_REGION_SLOT"  # the rank's slot: its region lies at base + slot x size
AGREEMENT_TIMEOUT = "KILN_AGREEMENT_TIMEOUT"  # seconds the ranks wait for each other to agree
BINARY_THREADS = "KILN_BINARY_THREADS"  # threads loading an archive's kernel binaries
RESOLVE_THREADS = "KILN_RESOLVE_THREADS"  # threads resolving planned kernels at LOAD
BUILD_THREADS = "KILN_BUILD_THREADS"  # threads building restored graphs
TEMPLATE_GROUPS = "KILN_TEMPLATE_GROUPS"  # topology groups one template may serve
PRUNE_BINARIES = "KILN_PRUNE_BINARIES"  # 0: store launched kernels' cubins whole

#: Every variable above, with what it sets.
VARIABLES: dict[str, str] = {
    CONFIG: "the config file",
    MODE: "save | load | auto",
    POLICY: "strict | fallback",
    LOAD_BUILDS: "background | before-ready",
    ARCHIVE: "the archive directory",
    ARCHIVE_ROOT: "the directory archive directories are derived under",
    REGION_BASE: "the deterministic region's base address",
    REGION_SIZE: "the deterministic region's size per device",
    LOG_LEVEL: "the log level of kiln's Python and native code",
    LOG_LEVEL_DEPRECATED: f"deprecated name of {LOG_LEVEL}",
    DISABLE_ADAPTERS: "adapters not to load",
    ENABLE: "set by `kiln run`: the interposer and the driver are active",
    AUTO: "set by `kiln run`: LOAD chosen by auto mode",
    LAUNCH_FINGERPRINT: "set by `kiln run`: the launcher's fingerprint fields",
    LAUNCH_TIME: "set by `kiln run`: when it started",
    FALLBACK_REASON: "set by `kiln run`: why the launcher fell back",
    ENV_PINS: "set by `kiln run`: the variables adapters pinned",
    COMMAND: "set by `kiln run`: the command it launched",
    JOB: "set by `kiln run`: the launch's id, recorded by every rank's archive at SAVE",
    CACHE_DIR: "set by `kiln run`: the kiln-owned directory of the engine's caches",
    REGION_PREALLOC: "bytes of the region mapped when it opens",
    REGION_LIBRARY_SLOT: "bytes of the region's slot for each communication library (NCCL, "
    "NVSHMEM); default an eighth of the region, 0: no slots",
    REGION_SLOT: "the rank's region slot (default: its rank): base + slot x size",
    AGREEMENT_TIMEOUT: "seconds the ranks wait for each other to agree on restoring",
    BINARY_THREADS: "kernel binary loader threads",
    RESOLVE_THREADS: "kernel resolver threads",
    BUILD_THREADS: "graph build threads",
    TEMPLATE_GROUPS: "topology groups per template",
    PRUNE_BINARIES: "1: store launched kernels' cubins pruned, 0: whole",
}

# --- parsers -------------------------------------------------------------------------------

#: Log levels, as the config file and KILN_LOG_LEVEL take them (the native core too).
LOG_LEVELS = ("debug", "info", "warning", "error", "trace", "off")
_LOG_ALIASES = {"warn": "warning"}


def parse_log_level(raw: object) -> str:
    """One of LOG_LEVELS (any case; ``warn`` for ``warning``); ValueError otherwise."""
    text = raw.strip().lower() if isinstance(raw, str) else None
    text = _LOG_ALIASES.get(text, text) if text is not None else None
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return text


_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(raw: object, what: str) -> int:
    """An integer: a TOML integer, or text in decimal, hex (0x...) or with a unit
    (B, KiB, MiB, GiB, TiB, any case). ValueError naming `what` otherwise."""
    # bool is an int in Python, and `size = true` in TOML is a typo, not 1 byte.
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text.startswith("0x"):
            try:
                return int(text, 16)
            except ValueError:
                pass
        else:
            match = _SIZE.match(text)
            if match and match.group(2) in _UNITS:
                return int(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"expected {what}, got {raw!r}")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _refuse(env: str, message: str) -> ConfigError:
    return ConfigError(None, f"environment {env}", message)


def count_setting(
    env: str,
    default: int,
    what: str,
    value: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """`value`, else $`env`, else `default`: a count >= 0 of `what`."""
    if value is None:
        raw = _environ(environ).get(env, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise _refuse(env, f"{env}={raw!r} is not a count of {what}") from None
    if value < 0:
        raise _refuse(env, f"{what} must be >= 0, got {value}")
    return value


def switch_setting(env: str, on: str, off: str, environ: Mapping[str, str] | None = None) -> bool:
    """On unless $`env` is 0; any value but 0 and 1 is refused with what each means."""
    raw = _environ(environ).get(env, "1")
    if raw not in ("0", "1"):
        raise _refuse(env, f"{env}={raw!r}: use 1 ({on}) or 0 ({off})")
    return raw == "1"


def size_setting(
    env: str, default: int, what: str, environ: Mapping[str, str] | None = None
) -> int:
    """$`env` (a size as :func:`parse_size` takes it, >= 0), else `default`."""
    raw = _environ(environ).get(env, "")
    if raw == "":
        return default
    try:
        value = parse_size(raw, what)
    except ValueError as err:
        raise _refuse(env, str(err)) from None
    if value < 0:
        raise _refuse(env, f"{what} must be >= 0, got {value}")
    return value
