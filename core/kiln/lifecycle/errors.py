"""Errors of the lifecycle driver. Each names its cause.

Two families:

* :class:`UsageError` — a person has to fix something (a conflicting setting, an adapter
  calling stages out of order). These always raise: the fallback policy exists for
  environment and archive deviations, not to hide mistakes that would recur on every start.
* everything else derived from :class:`~kiln.errors.KilnError` raised inside a stage — the
  configured policy decides (``strict`` stops, ``fallback`` starts natively).
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.errors import KilnError, RestoreError
from kiln.lifecycle.types import Pin, PinValue


class UsageError(KilnError):
    """A mistake in settings or adapter code; never subject to the fallback policy."""


class PinConflict(UsageError):
    """An explicit user setting contradicts a setting that a restore needs pinned."""

    def __init__(
        self, key: str, pinned: PinValue, actual: object, reason: str, where: str = "setting"
    ) -> None:
        self.key = key
        self.pinned = pinned
        self.actual = actual
        self.reason = reason
        super().__init__(
            f"{where} {key!r} is explicitly set to {actual!r}, but kiln must pin it to "
            f"{pinned!r}: {reason}. Remove the explicit {where} or start without kiln."
        )


class ConflictingPins(UsageError):
    """Two adapters pin the same setting to different values."""

    def __init__(self, key: str, first: Pin, second: Pin) -> None:
        self.key = key
        super().__init__(
            f"{key!r} is pinned to {first.value!r} ({first.reason}) and to {second.value!r} "
            f"({second.reason}); the installed adapters disagree"
        )


class LifecycleOrderError(UsageError):
    """An adapter called a lifecycle stage out of the documented order."""

    def __init__(self, stage: str, previous: str | None, detail: str = "") -> None:
        # str(): stages are StrEnum members, whose repr would show the class.
        self.stage = str(stage)
        self.previous = None if previous is None else str(previous)
        after = f"after {self.previous!r}" if previous else "before any other stage"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"lifecycle stage {self.stage!r} called {after}{extra}; see docs/lifecycle.md"
        )


class DuplicateGraph(UsageError):
    """An adapter asked for the same graph key twice in one process."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"graph key {key!r} was already captured in this process; keys must be unique"
        )


class InvalidHookResult(UsageError):
    """A hook implementation returned something the specification does not allow."""

    def __init__(self, hook: str, detail: str) -> None:
        self.hook = hook
        super().__init__(f"{hook}: {detail}")


class FingerprintConflict(UsageError):
    """Two fingerprint contributions give the same field different values."""

    def __init__(self, field: str, first: object, second: object) -> None:
        self.field = field
        super().__init__(
            f"fingerprint field {field!r} contributed twice with different values: "
            f"{first!r} and {second!r}"
        )


class StageFailed(KilnError):
    """Policy ``strict`` stopped the engine start because a stage failed."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        self.cause = cause
        super().__init__(f"kiln stopped at stage {stage!r} (policy strict): {cause}")


class KvCapacityMismatch(KilnError):
    """LOAD was about to use a KV capacity other than the one the graphs were captured with."""

    def __init__(self, recorded: object, decided: object) -> None:
        super().__init__(
            f"KV capacity {decided!r} differs from {recorded!r} recorded at SAVE; the restored "
            "graphs address the KV cache laid out for the recorded capacity"
        )


class WarmupMismatch(KilnError):
    """A warmup decision at LOAD would make the allocation trajectory differ from SAVE's."""

    def __init__(self, phase: str, saved: str | None, now: str) -> None:
        saved_text = "not seen" if saved is None else repr(saved)
        super().__init__(
            f"warmup phase {phase!r} was {saved_text} at SAVE but is {now!r} at LOAD; "
            "a phase that allocates at SAVE must allocate identically at LOAD"
        )


class MissingGraphs(RestoreError):
    """The engine wants graphs that the archive does not hold."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        shown = ", ".join(repr(k) for k in self.keys[:5])
        more = f" and {len(self.keys) - 5} more" if len(self.keys) > 5 else ""
        super().__init__(f"archive holds no graph for {shown}{more}")


class GraphNotRecorded(KilnError):
    """The engine captured a graph natively, but kiln could not record it.

    Carries the engine's capture result so that the fallback policy can use the natively
    captured graph instead of capturing it a second time.
    """

    def __init__(self, key: str, cause: BaseException, result: object) -> None:
        self.key = key
        self.cause = cause
        self.result = result
        super().__init__(f"graph {key!r} was captured but cannot be persisted: {cause}")


class BuildsFailed(RestoreError):
    """LOAD waited for the restored graphs' own executables (``load_builds = before-ready``)
    and a background build failed.

    Falling back cannot mean capturing natively here: the engine already holds the restored
    graphs and its capture is over. A graph whose own executable failed keeps replaying
    through its topology group's template, which was built and checked before any replay.
    """

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(
            f"building the restored graphs' own executables failed: {cause}. kiln cannot "
            "capture them natively now (the engine holds the restored graphs and its capture "
            "is over); a graph without its own executable replays through its group's template"
        )


class ArchiveMissing(KilnError):
    """LOAD was requested but there is no archive."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"no archive at {path} (run once with --mode save or auto)")


class PreloadMissing(KilnError):
    """The interposer library that ``kiln run`` must preload is not installed."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(
            f"interposer library {path} not found: the native part of kiln is not built "
            "(pip install kiln builds it)"
        )


class UnsupportedEngine(KilnError):
    """The engine `kiln run` starts is installed in a version its adapter does not support."""
