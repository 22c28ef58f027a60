"""Stage timings of one engine process, and the startup phases derived from them.

Stage durations say what kiln's own work cost; phases say where the startup time went
(weights, KV sizing, capture or restore), which is what an operator compares between a
native start and a kiln LOAD.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class StageTiming:
    name: str
    at_s: float  # start, seconds since the driver started
    duration_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "at_s": round(self.at_s, 6),
            "duration_s": round(self.duration_s, 6),
        }


class Timeline:
    def __init__(
        self,
        launch_wall: float | None = None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = time.monotonic if clock is None else clock
        self._t0 = self._clock()
        # The launcher records its wall-clock time; the process cannot know it otherwise.
        self.process_start_s = None if launch_wall is None else max(0.0, wall() - launch_wall)
        self.entries: list[StageTiming] = []
        self._ends: dict[str, float] = {}

    def now(self) -> float:
        return self._clock() - self._t0

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            end = self.now()
            self.entries.append(StageTiming(name, start, end - start))
            self._ends[name] = end  # the last occurrence (capture sets repeat)

    def ended(self, name: str) -> float | None:
        return self._ends.get(name)

    def phases(self, milestones: Sequence[tuple[str, str]]) -> dict[str, float | None]:
        """Each phase lasts from the previous reached milestone to the end of its stage.

        ``milestones`` is ``[(phase, stage), ...]`` in order; a phase whose stage was never
        reached is ``None`` and its time counts towards the next reached phase.
        """
        phases: dict[str, float | None] = {"process_start": self.process_start_s}
        previous = 0.0
        for phase, stage in milestones:
            end = self._ends.get(stage)
            if end is None:
                phases[phase] = None
                continue
            phases[phase] = round(end - previous, 6)
            previous = end
        return phases
