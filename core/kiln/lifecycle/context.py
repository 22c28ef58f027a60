"""The per-process state of the lifecycle, and the read-only view hooks receive as ``ctx``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kiln.config import Config
from kiln.lifecycle.archive_io import archive_file
from kiln.lifecycle.types import FingerprintValue, Pin, RunMode


@dataclass
class ProcessState:
    """Mutable state owned by the driver; hooks see it through :class:`KilnContext`."""

    engine: str
    rank: int
    world_size: int
    config: Config
    requested_mode: RunMode
    mode: RunMode
    auto: bool
    archive_dir: Path | None
    launch_fingerprint: dict[str, FingerprintValue] = field(default_factory=dict)
    device: int | None = None
    region_slot: int | None = None  # the rank's region slot (kiln.region.rank_slot)
    fingerprint: dict[str, FingerprintValue] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)
    pins: dict[str, Pin] = field(default_factory=dict)
    fallback_reason: str | None = None
    notes: list[str] = field(default_factory=list)


class KilnContext:
    """What a hook implementation may know about this process's lifecycle (read-only, but
    for the startup report's notes)."""

    def __init__(self, state: ProcessState) -> None:
        self._state = state

    @property
    def engine(self) -> str:
        return self._state.engine

    @property
    def rank(self) -> int:
        return self._state.rank

    @property
    def world_size(self) -> int:
        return self._state.world_size

    @property
    def mode(self) -> RunMode:
        """``save`` or ``load``; ``native`` after a fallback."""
        return self._state.mode

    @property
    def requested_mode(self) -> RunMode:
        return self._state.requested_mode

    @property
    def auto(self) -> bool:
        """The mode was chosen by ``--mode auto`` (LOAD may turn into SAVE on mismatch)."""
        return self._state.auto

    @property
    def policy(self) -> str:
        return str(self._state.config.policy)

    @property
    def config(self) -> Config:
        return self._state.config

    @property
    def device(self) -> int | None:
        """The CUDA device ordinal once the device-bound stage began, else ``None``."""
        return self._state.device

    @property
    def region_slot(self) -> int | None:
        """The rank's region slot once the device-bound stage began, else ``None``: its
        region lies at ``base + slot x size`` (kiln.region.rank_slot)."""
        return self._state.region_slot

    @property
    def archive_dir(self) -> Path | None:
        return self._state.archive_dir

    @property
    def archive_path(self) -> Path | None:
        """This rank's archive file."""
        directory = self._state.archive_dir
        return None if directory is None else archive_file(directory, self._state.rank)

    @property
    def launch_fingerprint(self) -> Mapping[str, FingerprintValue]:
        return MappingProxyType(self._state.launch_fingerprint)

    @property
    def fingerprint(self) -> Mapping[str, FingerprintValue]:
        """The composed fingerprint; empty before the device-bound stage."""
        return MappingProxyType(self._state.fingerprint)

    @property
    def recorded(self) -> Mapping[str, Any]:
        """At LOAD, the decisions recorded at SAVE (``kv_capacity``, ``warmup``, ``graphs``)."""
        return MappingProxyType(self._state.recorded)

    @property
    def pins(self) -> Mapping[str, Pin]:
        return MappingProxyType(self._state.pins)

    @property
    def fallback_reason(self) -> str | None:
        return self._state.fallback_reason

    def note(self, message: str) -> None:
        """Add a line to this process's startup report (``notes``): what kiln or an adapter
        chose to leave to the engine, and why. The one thing a hook may change here."""
        if not isinstance(message, str) or not message:
            raise TypeError("a startup-report note is a non-empty string")
        self._state.notes.append(message)

    def __repr__(self) -> str:
        s = self._state
        return f"KilnContext(engine={s.engine!r}, rank={s.rank}, mode={s.mode.value!r})"
