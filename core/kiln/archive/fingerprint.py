"""Environment fingerprints: the archive's against this process's, field by field.

A fingerprint is a flat mapping of field name to a JSON-compatible value. Fields are
compared in :data:`FIELD_ORDER` first (the most telling difference is reported first), then
every remaining key of either side in sorted order. A key present on one side only differs
(the missing side is reported as ``None``).

Values are compared strictly, as their JSON encodings would be: ``True`` differs from ``1``
and ``1`` from ``1.0``; a tuple equals the list with the same items (a value read back from
a JSON section is a list where the live process may hold a tuple); NaN equals nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from kiln.errors import FingerprintMismatch

__all__ = ["FIELD_ORDER", "compare_fingerprints", "diff_fingerprints", "values_equal"]

FIELD_ORDER: Final[tuple[str, ...]] = (
    "format_version",
    "kiln_version",
    "gpu_name",
    "compute_capability",
    "driver_version",
    "cuda_runtime",
    "torch_version",
    "region_base",
    "region_size",
)

_MISSING: Final = object()


def values_equal(a: object, b: object) -> bool:
    """Strict, JSON-like equality (see the module doc); never raises for JSON values."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and isinstance(a, float) == isinstance(b, float)
            and a == b
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (
            isinstance(a, Mapping)
            and isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(values_equal(a[k], b[k]) for k in a)
        )
    return bool(a == b)


def _fields(a: Mapping[str, object], b: Mapping[str, object], order: Sequence[str]) -> list[str]:
    ordered = list(dict.fromkeys(f for f in order if f in a or f in b))
    listed = set(ordered)
    rest = {k for k in (*a.keys(), *b.keys()) if k not in listed}
    return ordered + sorted(rest, key=str)


def _differences(
    a: Mapping[str, object], b: Mapping[str, object], order: Sequence[str]
) -> Iterator[tuple[str, object, object]]:
    for field in _fields(a, b, order):
        va = a.get(field, _MISSING)
        vb = b.get(field, _MISSING)
        if va is _MISSING or vb is _MISSING or not values_equal(va, vb):
            yield (
                field,
                None if va is _MISSING else va,
                None if vb is _MISSING else vb,
            )


def compare_fingerprints(
    expected: Mapping[str, object],
    actual: Mapping[str, object],
    order: Sequence[str] = FIELD_ORDER,
) -> None:
    """Raise :class:`FingerprintMismatch` for the first field where the two differ.

    ``expected`` is the archive's fingerprint, ``actual`` this process's.
    """
    for field, exp, act in _differences(expected, actual, order):
        raise FingerprintMismatch(field, exp, act)


def diff_fingerprints(
    a: Mapping[str, object],
    b: Mapping[str, object],
    order: Sequence[str] = FIELD_ORDER,
) -> list[tuple[str, object, object]]:
    """Every differing field as ``(field, a_value, b_value)``, in comparison order."""
    return list(_differences(a, b, order))
