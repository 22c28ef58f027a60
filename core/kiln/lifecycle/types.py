"""Value types exchanged between the lifecycle driver, hook implementations and the CLI.

All of them are plain, immutable and JSON-friendly: they end up in archives and reports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

#: A fingerprint field value. Scalars only, so that ``kiln diff`` can show fields one by one.
FingerprintValue = str | int | float | bool | None

#: A pinned setting's value (engine settings) or an environment variable's value (str).
PinValue = str | int | float | bool | None | tuple[int, ...] | tuple[str, ...]

#: The engine's KV-cache capacity decision, in the engine's own units
#: (vLLM ``num_gpu_blocks``, SGLang ``max_total_num_tokens``, TRT-LLM ``max_tokens``).
KvCapacity = Mapping[str, int]


class RunMode(enum.StrEnum):
    """What the lifecycle driver does in this process."""

    SAVE = "save"  # capture graphs natively and record them into the archive
    LOAD = "load"  # restore graphs from the archive instead of capturing
    NATIVE = "native"  # kiln fell back (policy ``fallback``): the engine runs as without kiln
    OFF = "off"  # not started under ``kiln run``: the driver passes everything through


class WarmupAction(enum.StrEnum):
    """What to do with one warmup phase of the engine."""

    RUN = "run"
    SKIP = "skip"
    # Run it, but with the deterministic region suspended, so that its allocations do not
    # move the region's cursor (a phase that SAVE runs and LOAD skips must not shift layout).
    RUN_SUSPENDED = "run-suspended"


class FailureAction(enum.StrEnum):
    """What the driver does after a stage failed, according to the policy."""

    STOP = "stop"  # policy strict: the engine start is aborted
    FALLBACK = "fallback"  # policy fallback: the engine goes on natively


@dataclass(frozen=True)
class Pin:
    """A setting that must hold for a restore to be valid, and why.

    ``key`` is the engine's own setting name (``"compilation_config.cudagraph_mode"``) for
    :func:`~kiln.hookspecs.kiln_pin_settings`, or an environment variable name for
    :func:`~kiln.hookspecs.kiln_child_env`.
    """

    key: str
    value: PinValue
    reason: str

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a Pin needs a non-empty key")
        if not self.reason.strip():
            # A pin without a reason cannot be explained to the user whose setting it overrides.
            raise ValueError(f"the pin of {self.key!r} needs a reason")


@dataclass(frozen=True)
class WarmupPhase:
    """One warmup step of the engine that the driver decides on.

    ``skippable_on_load``: the phase only prepares things that a restore provides itself
    (profiling runs, capture warmups). The default policy then runs it with the region
    suspended at SAVE and skips it at LOAD, which keeps the allocation trajectory identical.
    A phase whose results LOAD needs too (compiling, loading a compile cache) is not
    skippable: it runs in both modes.
    """

    name: str
    skippable_on_load: bool = True


@dataclass(frozen=True)
class RestoreProgress:
    """Where LOAD's background builds stand: of the graphs restored in this process, how
    many replay through their own executable and how many still through their topology
    group's template (their own is not built yet, or its build failed)."""

    own_executable: int = 0
    on_template: int = 0

    def __post_init__(self) -> None:
        if self.own_executable < 0 or self.on_template < 0:
            raise ValueError(f"graph counts cannot be negative: {self}")
