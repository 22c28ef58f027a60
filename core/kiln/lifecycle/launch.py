"""What ``kiln run`` decides before it execs the engine: archive, mode, environment.

Pure planning, no side effects, so that ``kiln run --dry-run`` shows exactly what a real run
would do and tests can check it without exec'ing anything.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pluggy

from kiln import __version__
from kiln.archive import FORMAT_VERSION
from kiln.config import Config, Mode, Policy
from kiln.errors import ArchiveError, FingerprintMismatch, KilnError
from kiln.lifecycle import archive_io, cache_dirs, environment, fingerprint, pins
from kiln.lifecycle.communication_pins import COMMUNICATION_PINS
from kiln.lifecycle.errors import ArchiveMissing, PreloadMissing, UnsupportedEngine, UsageError
from kiln.lifecycle.types import FingerprintValue
from kiln.plugins import unsupported_engine


@dataclass(frozen=True)
class LaunchContext:
    """What launcher hooks receive."""

    command: tuple[str, ...]
    config: Config
    environ: Mapping[str, str]
    mode: str  # requested (save | load | auto); save | load once decided
    archive_dir: Path | None
    #: The kiln-owned directory the engine's caches live below (once the mode is decided):
    #: adapters pin their engine's cache variables inside it (``cache_dirs.pin``).
    cache_dir: Path | None = None


@dataclass(frozen=True)
class LaunchPlan:
    command: tuple[str, ...]
    requested_mode: str
    mode: str  # save | load | native (the launcher fell back)
    reason: str
    archive_dir: Path | None
    fingerprint: dict[str, FingerprintValue]
    environment: dict[str, str] = field(repr=False)
    base_environment: Mapping[str, str] = field(repr=False)
    cache_dir: Path | None = None  # SAVE and LOAD: the engine's kiln-owned cache directory

    def changes(self) -> dict[str, str | None]:
        """Variables this plan sets, changes (new value) or removes (``None``)."""
        new, old = self.environment, self.base_environment
        changed: dict[str, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
        changed.update({k: None for k in old if k not in new})
        return dict(sorted(changed.items()))

    def as_dict(self) -> dict[str, object]:
        archive = None if self.archive_dir is None else archive_io.archive_file(self.archive_dir)
        return {
            "command": list(self.command),
            "requested_mode": self.requested_mode,
            "mode": self.mode,
            "reason": self.reason,
            "archive_dir": None if self.archive_dir is None else str(self.archive_dir),
            "archive": None if archive is None else str(archive),
            "fingerprint": self.fingerprint,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "environment": self.changes(),
        }


def plan_launch(
    command: tuple[str, ...],
    config: Config,
    environ: Mapping[str, str],
    pm: pluggy.PluginManager,
    preload: Path,
    launch_time: float,
    pid: int | None = None,
) -> LaunchPlan:
    """Decide the archive and the mode and build the engine's environment.

    ``pid`` (default: this process's, which the engine keeps across exec) names a LOAD's
    cache directory.

    Raises under policy ``strict`` what ``fallback`` turns into a native start: a missing
    interposer, a LOAD without archive.
    """
    if not command:
        raise UsageError("no engine command given (kiln run [options] -- <command> ...)")
    launch = LaunchContext(command, config, environ, config.mode.value, config.archive_dir)
    fields = fingerprint.merge(
        [_core_fields(command, config), *pm.hook.kiln_launch_fingerprint(launch=launch)],
        "kiln_launch_fingerprint",
    )
    archive_dir = config.archive_dir or config.archive_root / fingerprint.digest(fields)[:16]

    def native(err: KilnError) -> LaunchPlan:
        if config.policy is Policy.STRICT:
            raise err
        env = environment.native_environment(environ, str(err), launch_time)
        return LaunchPlan(
            command, config.mode.value, "native", str(err), archive_dir, fields, env, environ
        )

    if not preload.is_file():
        return native(PreloadMissing(preload))
    try:
        mode, reason = decide_mode(config.mode, archive_io.archive_file(archive_dir), fields)
    except (ArchiveMissing, ArchiveError) as err:
        return native(err)

    caches = cache_dirs.cache_dir(archive_dir, mode, os.getpid() if pid is None else pid)
    decided = replace(launch, mode=mode, archive_dir=archive_dir, cache_dir=caches)
    # An adapter claims the command by pinning its environment; the engine it adapts must
    # be installed in a version the adapter supports, else its seams may have moved.
    for impl in pm.hook.kiln_child_env.get_hookimpls():
        if impl.function(launch=decided) is not None:
            why = unsupported_engine(impl.plugin)
            if why is not None:
                return native(UnsupportedEngine(why))
    env_pins = pins.merge(
        [
            COMMUNICATION_PINS,
            cache_dirs.core_pins(caches),
            *pm.hook.kiln_child_env(launch=decided),
        ],
        "kiln_child_env",
    )
    pins.check_environment(env_pins, environ, "kiln_child_env")
    env = environment.kiln_environment(
        environ,
        config=config,
        mode=mode,
        archive_dir=archive_dir,
        auto=config.mode is Mode.AUTO,
        launch_fields=fields,
        launch_time=launch_time,
        preload=preload,
        env_pins=env_pins,
        command=command,
        cache_dir=caches,
    )
    return LaunchPlan(
        command, config.mode.value, mode, reason, archive_dir, fields, env, environ, caches
    )


def decide_mode(
    requested: Mode, archive: Path, fields: Mapping[str, FingerprintValue]
) -> tuple[str, str]:
    """``(save | load, why)``. Auto loads only an archive whose launch fields all match."""
    if requested is Mode.SAVE:
        return "save", "--mode save"
    if requested is Mode.LOAD:
        if not archive.is_file():
            if os.path.lexists(archive):  # a FIFO, a device, a directory: named as such
                raise ArchiveError(f"archive {archive} is not a regular file")
            raise ArchiveMissing(archive)
        return "load", "--mode load"
    if not archive.is_file():
        return "save", f"no archive at {archive} yet"
    try:
        fingerprint.check_subset(archive_io.read_fingerprint(archive), fields)
    except FingerprintMismatch as err:
        return "save", f"the archive at {archive} is stale ({err}); saving a new one"
    except ArchiveError as err:
        return "save", f"the archive at {archive} is unusable ({err}); saving a new one"
    return "load", f"the archive at {archive} matches"


def _core_fields(command: tuple[str, ...], config: Config) -> dict[str, FingerprintValue]:
    # The whole command line: any engine flag can change the graphs. Conservative on
    # purpose — a flag that does not matter costs one extra SAVE, a missed one a wrong LOAD.
    return {
        "kiln_version": __version__,
        "format_version": FORMAT_VERSION,
        "launch.command": shlex.join(command),
        "launch.region_base": config.region_base,
        "launch.region_size": config.region_size,
    }
