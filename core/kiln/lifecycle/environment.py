"""The environment contract between ``kiln run``, the interposer and the engine processes.

``kiln run`` sets these variables and execs the engine; every process the engine starts
inherits them, which is how the interposer reaches workers without patching spawn sites.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln import env_settings
from kiln.config import CONFIG_ENV, ENVIRONMENT_VARIABLES, Config
from kiln.lifecycle.types import FingerprintValue, Pin

# The variables `kiln run` sets, each named and described in kiln.env_settings.
ENABLE = env_settings.ENABLE
MODE = env_settings.MODE
ARCHIVE = env_settings.ARCHIVE
POLICY = env_settings.POLICY
AUTO = env_settings.AUTO
LAUNCH_FINGERPRINT = env_settings.LAUNCH_FINGERPRINT
LAUNCH_TIME = env_settings.LAUNCH_TIME
FALLBACK_REASON = env_settings.FALLBACK_REASON
ENV_PINS = env_settings.ENV_PINS
COMMAND = env_settings.COMMAND
JOB = env_settings.JOB
CACHE_DIR = env_settings.CACHE_DIR
PRELOAD = "LD_PRELOAD"

_LAUNCH_OWNED = (
    ENABLE,
    MODE,
    ARCHIVE,
    POLICY,
    AUTO,
    LAUNCH_FINGERPRINT,
    LAUNCH_TIME,
    FALLBACK_REASON,
    ENV_PINS,
    COMMAND,
    JOB,
    CACHE_DIR,
    CONFIG_ENV,
)


def with_preload(existing: str | None, library: Path) -> str:
    """Prepend ``library`` to an LD_PRELOAD value, once (ld.so splits on ':' and ' ')."""
    entries = (existing or "").replace(" ", ":").split(":")
    rest = [entry for entry in entries if entry and entry != str(library)]
    return ":".join([str(library), *rest])


def _clean(base: Mapping[str, str]) -> dict[str, str]:
    # Stale values from an earlier `kiln run` in the same shell would otherwise leak in.
    owned = set(_LAUNCH_OWNED) | set(ENVIRONMENT_VARIABLES.values())
    return {name: value for name, value in base.items() if name not in owned}


def kiln_environment(
    base: Mapping[str, str],
    *,
    config: Config,
    mode: str,
    archive_dir: Path,
    auto: bool,
    launch_fields: Mapping[str, FingerprintValue],
    launch_time: float,
    preload: Path,
    env_pins: Mapping[str, Pin],
    command: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """The engine's environment for a SAVE or LOAD start."""
    env = _clean(base)
    env.update(config.to_environment())
    env.update({pin.key: str(pin.value) for pin in env_pins.values()})
    env.update(
        {
            ENABLE: "1",
            MODE: mode,
            ARCHIVE: str(archive_dir),
            POLICY: str(config.policy),
            LAUNCH_FINGERPRINT: json.dumps(dict(launch_fields), sort_keys=True),
            LAUNCH_TIME: repr(launch_time),
            JOB: uuid.uuid4().hex,
            PRELOAD: with_preload(base.get(PRELOAD), preload),
        }
    )
    if env_pins:
        env[ENV_PINS] = ",".join(sorted(env_pins))
    if command:
        env[COMMAND] = json.dumps(list(command))
    if cache_dir is not None:
        env[CACHE_DIR] = str(cache_dir)
    if auto:
        env[AUTO] = "1"
    return env


def native_environment(base: Mapping[str, str], reason: str, launch_time: float) -> dict[str, str]:
    """The engine's environment when the launcher fell back: no interposer, reason passed on."""
    env = _clean(base)
    env.update({ENABLE: "0", FALLBACK_REASON: reason, LAUNCH_TIME: repr(launch_time)})
    return env


def inherited(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kiln variables of this process, for adapters whose engine starts workers that do
    not inherit the environment (Ray actors: pass them as ``runtime_env["env_vars"]``)."""
    environ = os.environ if environ is None else environ
    owned = set(_LAUNCH_OWNED) | set(ENVIRONMENT_VARIABLES.values()) | {PRELOAD}
    owned |= {name for name in environ.get(ENV_PINS, "").split(",") if name}
    return {name: value for name, value in environ.items() if name in owned}
