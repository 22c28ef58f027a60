"""The process's initial lifecycle state, read from what `kiln run` put in the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kiln.config import Config, ConfigError, Mode
from kiln.lifecycle import archive_io, environment
from kiln.lifecycle.context import ProcessState
from kiln.lifecycle.types import RunMode


def initial_state(
    engine: str, rank: int, world_size: int, config: Config, environ: Mapping[str, str]
) -> ProcessState:
    enabled = environ.get(environment.ENABLE) == "1"
    launcher_reason = environ.get(environment.FALLBACK_REASON)
    archive_dir = config.archive_dir
    if enabled:
        if archive_dir is None:
            raise ConfigError(
                "archive.dir",
                f"environment {environment.ARCHIVE}",
                "must be set when KILN_ENABLE=1; start the engine under `kiln run`",
            )
        mode = _mode(config, archive_dir is not None and _archived(config, rank))
    else:
        # The launcher fell back (KILN_ENABLE=0 with a reason): start natively, say why.
        mode = RunMode.NATIVE if launcher_reason else RunMode.OFF
    state = ProcessState(
        engine=engine,
        rank=rank,
        world_size=world_size,
        config=config,
        requested_mode=mode,
        mode=mode,
        auto=enabled and (environ.get(environment.AUTO) == "1" or config.mode is Mode.AUTO),
        archive_dir=archive_dir,
        launch_fingerprint=launch_fields(environ),
    )
    if mode is RunMode.NATIVE:
        state.fallback_reason = f"launcher: {launcher_reason}"
    return state


def _archived(config: Config, rank: int) -> bool:
    assert config.archive_dir is not None
    return archive_io.archive_file(config.archive_dir, rank).is_file()


def _mode(config: Config, archived: bool) -> RunMode:
    if config.mode is Mode.AUTO:  # an engine started with KILN_MODE=auto, not via `kiln run`
        return RunMode.LOAD if archived else RunMode.SAVE
    return RunMode(config.mode.value)


def launch_fields(environ: Mapping[str, str]) -> dict[str, Any]:
    """The launcher's fingerprint fields, which become part of this process's fingerprint."""
    text = environ.get(environment.LAUNCH_FINGERPRINT)
    if not text:
        return {}
    source = f"environment {environment.LAUNCH_FINGERPRINT}"
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(None, source, f"not JSON: {err}") from None
    if not isinstance(fields, dict):
        raise ConfigError(None, source, "not a JSON object")
    return fields
