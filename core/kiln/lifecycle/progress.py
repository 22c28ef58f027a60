"""Progress display for long SAVE and LOAD work (capturing or restoring many graphs).

A bar on a terminal, sparse log lines otherwise (a serving log must not fill with bars).
Only rank 0 shows progress: N workers drawing N bars on one terminal helps nobody.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol

log = logging.getLogger("kiln")


class Progress(Protocol):
    def start(self, label: str, total: int | None) -> None: ...

    def advance(self) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self) -> None:
        pass

    def finish(self) -> None:
        pass


class LogProgress:
    """Logs at the start and the end, and at each quarter of long sets."""

    def __init__(self) -> None:
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._quarter = 0

    def start(self, label: str, total: int | None) -> None:
        self._label, self._total, self._done, self._quarter = label, total, 0, 0
        log.info("kiln: %s %s graphs", label, total if total is not None else "the")

    def advance(self) -> None:
        self._done += 1
        if not self._total or self._total < 16 or self._done >= self._total:
            return
        quarter = self._done * 4 // self._total
        if quarter > self._quarter:
            self._quarter = quarter
            log.info("kiln: %s %d/%d", self._label, self._done, self._total)

    def finish(self) -> None:
        log.info("kiln: %s done (%d graphs)", self._label, self._done)


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bar

        self._bar = Bar(console=Console(stderr=True), transient=True)
        self._task: object | None = None

    def start(self, label: str, total: int | None) -> None:
        self._bar.start()
        self._task = self._bar.add_task(f"kiln: {label}", total=total)

    def advance(self) -> None:
        if self._task is not None:
            self._bar.advance(self._task)  # type: ignore[arg-type]

    def finish(self) -> None:
        self._bar.stop()
        self._task = None


def make_progress(rank: int) -> Progress:
    if rank != 0:
        return SilentProgress()
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except ImportError:
            pass
    return LogProgress()
