"""The allocations of an archive's recorded trajectory as address ranges, for the pointer
audit: which allocation (if any) holds a given address range."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from kiln.inspection.problems import Problems

Trajectory = Sequence[tuple[int, int, int]]


class Allocations:
    """Allocation ``i`` covers ``[base + offset_i, base + offset_i + size_i)``."""

    def __init__(self, base: int, size: int, trajectory: Trajectory) -> None:
        self.base = base
        self.size = size
        self.trajectory = trajectory
        spans = sorted(
            (base + off, base + off + length, i) for i, (off, length, _) in enumerate(trajectory)
        )
        self._starts = [start for start, _, _ in spans]
        # For the first k spans (by start address): the largest end and whose it is. Any
        # range starting at or after span k's start lies inside one allocation iff it ends
        # no later than that end (robust to overlapping entries in a hostile trajectory).
        self._reach: list[tuple[int, int]] = []
        best = (-1, -1)
        for _, end, i in spans:
            if end > best[0]:
                best = (end, i)
            self._reach.append(best)
        self._spans = spans

    def owner(self, address: int, length: int) -> int | None:
        """Index of an allocation holding all of ``[address, address + length)`` (a length
        of 0 counts as 1), or None."""
        k = bisect_right(self._starts, address) - 1
        if k < 0:
            return None
        end, index = self._reach[k]
        return index if address + max(length, 1) <= end else None

    def where(self, address: int) -> str:
        """Where ``address`` lies relative to the region, for messages."""
        if self.base <= address < self.base + self.size:
            return f"region offset 0x{address - self.base:x}"
        return f"outside the region [0x{self.base:x}, 0x{self.base + self.size:x})"

    def check(self, problems: Problems) -> None:
        """Allocations the region could not have made: beyond its size, or overlapping."""
        for i, (off, length, _) in enumerate(self.trajectory):
            if off + length > self.size:
                problems.add(
                    f"trajectory: allocation #{i} (offset 0x{off:x}, {length} bytes) extends "
                    f"beyond the region size 0x{self.size:x}"
                )
        for k in range(1, len(self._spans)):
            start, _, i = self._spans[k]
            prev_end, j = self._reach[k - 1]
            if start < prev_end:
                problems.add(
                    f"trajectory: allocations #{min(i, j)} and #{max(i, j)} overlap at "
                    f"region offset 0x{start - self.base:x}"
                )
