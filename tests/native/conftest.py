"""Fixtures shared by the native restore tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ._restore_fixture import close_fake, open_fake_region


@pytest.fixture
def buffer() -> Iterator[int]:
    """A fresh fake driver and region (strict about contexts); a backed operand buffer."""
    try:
        yield open_fake_region(strict_context=True)
    finally:
        gc.collect()
        close_fake()
