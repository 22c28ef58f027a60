"""The one lifecycle driver of an engine process."""

from __future__ import annotations

from typing import Any

from kiln.lifecycle.driver import Driver
from kiln.lifecycle.errors import UsageError

_current: Driver | None = None


def start(
    engine: str,
    *,
    adapter: object | None = None,
    rank: int = 0,
    world_size: int = 1,
    **options: Any,
) -> Driver:
    """Start the lifecycle in this process and fire ``kiln_process_init``.

    Returns the process's driver if one was already started for ``engine`` (engines load
    their plugins more than once per process). ``options`` are passed to :class:`Driver`.
    """
    global _current
    if _current is not None:
        if _current.ctx.engine != engine:
            raise UsageError(
                f"the lifecycle was already started for engine {_current.ctx.engine!r} in this "
                f"process, not {engine!r}"
            )
        return _current
    driver = Driver(engine, adapter=adapter, rank=rank, world_size=world_size, **options)
    _current = driver
    driver.process_init()
    return driver


def current() -> Driver:
    """The driver started in this process."""
    if _current is None:
        raise UsageError("kiln.lifecycle.start() has not been called in this process")
    return _current


def reset() -> None:
    """Close and forget this process's driver (engine shutdown, tests)."""
    global _current
    if _current is not None:
        _current.close()
    _current = None
