"""Composing a fingerprint from its contributions, hashing it, checking it against an archive.

A fingerprint is flat: ``{field: JSON scalar}``. Core fields use the archive's names
(``kiln_version``, ``region_base``, ...; see :data:`kiln.archive.FIELD_ORDER`), engine fields
are namespaced by the engine (``vllm.model``), launcher fields by ``launch.``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from kiln.archive import compare_fingerprints, values_equal
from kiln.lifecycle.errors import FingerprintConflict, InvalidHookResult
from kiln.lifecycle.types import FingerprintValue

_SCALARS = (str, int, float, bool, type(None))


def merge(
    contributions: Iterable[Mapping[str, object] | None], hook: str
) -> dict[str, FingerprintValue]:
    """Merge contributions into one fingerprint; reject non-scalars and conflicting fields."""
    merged: dict[str, FingerprintValue] = {}
    for contribution in contributions:
        if contribution is None:
            continue
        if not isinstance(contribution, Mapping):
            raise InvalidHookResult(hook, f"expected a mapping, got {type(contribution).__name__}")
        for field, value in contribution.items():
            if not isinstance(field, str) or not field:
                raise InvalidHookResult(hook, f"field names are non-empty strings, got {field!r}")
            if not isinstance(value, _SCALARS):
                raise InvalidHookResult(
                    hook, f"field {field!r} is a {type(value).__name__}; values are JSON scalars"
                )
            if field in merged and not values_equal(merged[field], value):
                raise FingerprintConflict(field, merged[field], value)
            merged[field] = value
    return merged


def digest(fields: Mapping[str, FingerprintValue]) -> str:
    """A stable hex digest of the fields (names the default archive directory)."""
    text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check(archived: Mapping[str, object], current: Mapping[str, object]) -> None:
    """Raise FingerprintMismatch naming the first field where the two differ."""
    compare_fingerprints(archived, current)


def check_subset(archived: Mapping[str, object], current: Mapping[str, object]) -> None:
    """Like :func:`check`, comparing only the fields of ``current``.

    The launcher knows fewer fields than the engine process (no GPU, no engine): it can tell
    a stale archive from these, and leaves the rest to the check at device-bound.
    """
    compare_fingerprints({k: archived[k] for k in current if k in archived}, current)
