"""Merging pins from all adapters and refusing those that contradict the user.

A pin is only ever applied to a setting the user left at its default. Overriding an explicit
setting silently would run the engine differently from what its operator asked for; dropping
the pin would make the restore invalid. Both are worse than an error that names the setting.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from kiln.env_settings import PREFIX
from kiln.lifecycle.errors import ConflictingPins, InvalidHookResult, PinConflict
from kiln.lifecycle.types import Pin

#: Variables kiln sets itself; an adapter pinning them would break the interposer contract.
RESERVED_ENV_PREFIXES = (PREFIX,)
RESERVED_ENV = ("LD_PRELOAD",)


def merge(contributions: Iterable[Sequence[Pin] | None], hook: str) -> dict[str, Pin]:
    """One pin per key; two pins of a key with different values are an error."""
    merged: dict[str, Pin] = {}
    for contribution in contributions:
        if contribution is None:
            continue
        if isinstance(contribution, Pin | str | Mapping) or not isinstance(contribution, Iterable):
            raise InvalidHookResult(hook, "expected a sequence of Pin objects")
        for pin in contribution:
            if not isinstance(pin, Pin):
                raise InvalidHookResult(hook, f"expected Pin objects, got {type(pin).__name__}")
            other = merged.get(pin.key)
            if other is not None and not _same(other.value, pin.value):
                raise ConflictingPins(pin.key, other, pin)
            merged.setdefault(pin.key, pin)
    return merged


def check_settings(
    pins: Mapping[str, Pin], settings: Mapping[str, object], explicit: Collection[str]
) -> None:
    """Raise PinConflict for the first explicit setting a pin contradicts."""
    for key in sorted(pins):
        pin = pins[key]
        if key in explicit and not _same(settings.get(key), pin.value):
            raise PinConflict(key, pin.value, settings.get(key), pin.reason)


def check_environment(pins: Mapping[str, Pin], environ: Mapping[str, str], hook: str) -> None:
    """Validate environment pins and raise PinConflict where the user set another value."""
    for key in sorted(pins):
        pin = pins[key]
        if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIXES):
            raise InvalidHookResult(hook, f"{key} is set by kiln itself and cannot be pinned")
        if not isinstance(pin.value, str):
            raise InvalidHookResult(hook, f"environment pin {key} needs a str value")
        if key in environ and environ[key] != pin.value:
            raise PinConflict(key, pin.value, environ[key], pin.reason, "environment variable")


def _same(a: object, b: object) -> bool:
    # Engines hold sequences as lists where pins hold tuples (hashable, frozen).
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return tuple(a) == tuple(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # True is not 1: a boolean flag and a count are different settings
    return a == b
