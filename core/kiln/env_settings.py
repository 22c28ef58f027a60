"""Tuning and diagnostic switches read from the environment (thread counts, on/off
switches). A bad value raises a KilnError that names the variable; it never falls back
to the default. Settings with a config-file key live in kiln.config."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kiln.errors import KilnError


def count_setting(
    env: str,
    default: int,
    what: str,
    value: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """`value`, else $`env`, else `default`: a count >= 0 of `what`."""
    if value is None:
        raw = (os.environ if environ is None else environ).get(env, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise KilnError(f"{env}={raw!r} is not a count of {what}") from None
    if value < 0:
        raise KilnError(f"{what} must be >= 0, got {value}")
    return value


def switch_setting(env: str, on: str, off: str, environ: Mapping[str, str] | None = None) -> bool:
    """On unless $`env` is 0; any value but 0 and 1 is refused with what each means."""
    raw = (os.environ if environ is None else environ).get(env, "1")
    if raw not in ("0", "1"):
        raise KilnError(f"{env}={raw!r}: use 1 ({on}) or 0 ({off})")
    return raw == "1"
