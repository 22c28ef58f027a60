"""Allocations: which trajectory entry holds an address range."""

from __future__ import annotations

from kiln.inspection.allocations import Allocations
from kiln.inspection.problems import Problems

BASE = 0x10000


def test_owner_of_ranges() -> None:
    a = Allocations(BASE, 0x10000, [(0, 0x100, 0), (0x200, 0x100, 0), (0x300, 0x10, 3)])
    assert a.owner(BASE, 1) == 0
    assert a.owner(BASE + 0xFF, 1) == 0
    assert a.owner(BASE + 0x100, 1) is None  # one past the end
    assert a.owner(BASE, 0x100) == 0 and a.owner(BASE, 0x101) is None
    assert a.owner(BASE + 0x1F0, 0x20) is None  # starts in the gap
    assert a.owner(BASE + 0x2F0, 0x20) is None  # spans #1 and #2: not inside one
    assert a.owner(BASE + 0x305, 0) == 2  # length 0 counts as 1
    assert a.owner(BASE - 1, 1) is None and a.owner(0, 1) is None


def test_owner_with_overlapping_entries_is_still_right() -> None:
    # A hostile trajectory: #0 covers #1 entirely; a range inside #0 past #1's end.
    a = Allocations(BASE, 0x10000, [(0, 0x1000, 0), (0x100, 0x10, 0)])
    assert a.owner(BASE + 0x800, 0x10) == 0
    problems = Problems()
    a.check(problems)
    assert problems.messages() == [
        "trajectory: allocations #0 and #1 overlap at region offset 0x100"
    ]


def test_overlap_with_an_earlier_long_entry_is_found() -> None:
    a = Allocations(BASE, 0x10000, [(0, 0x1000, 0), (0x100, 0x10, 0), (0x800, 0x10, 0)])
    problems = Problems()
    a.check(problems)
    assert len(problems) == 2


def test_where() -> None:
    a = Allocations(BASE, 0x10000, [])
    assert a.where(BASE + 0x20) == "region offset 0x20"
    assert a.where(BASE + 0x10000) == "outside the region [0x10000, 0x20000)"
    assert a.owner(BASE, 1) is None


def test_problems_are_bounded_but_counted() -> None:
    problems = Problems(limit=2)
    for i in range(5):
        problems.add(f"p{i}")
    assert len(problems) == 5 and bool(problems)
    assert problems.messages() == ["p0", "p1", "... and 3 more problems not listed"]
    assert not Problems() and Problems().messages() == []
