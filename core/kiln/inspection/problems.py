"""The list of problems a verification found, bounded: a hostile archive can hold millions
of bad pointers, and a report that long helps nobody."""

from __future__ import annotations

from typing import Final

MAX_LISTED: Final = 100


class Problems:
    """Collects problem messages; lists the first :data:`MAX_LISTED`, counts all."""

    def __init__(self, limit: int = MAX_LISTED) -> None:
        self._limit = limit
        self._listed: list[str] = []
        self._count = 0

    def add(self, message: str) -> None:
        self._count += 1
        if len(self._listed) < self._limit:
            self._listed.append(message)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def messages(self) -> list[str]:
        """The listed problems, and a last line counting those left out."""
        left_out = self._count - len(self._listed)
        if left_out:
            return [*self._listed, f"... and {left_out} more problems not listed"]
        return list(self._listed)
