"""JSON sections: canonical encoding on write, strict and bounded decoding on read.

Canonical form: UTF-8, sorted keys, no whitespace, no NaN/Infinity, a JSON object at the
top level, nesting at most :data:`MAX_DEPTH` containers deep. Equal objects therefore give
byte-identical sections (and identical section checksums).

:func:`load_json` accepts exactly that language and nothing looser: invalid UTF-8 (a BOM
included), invalid JSON, duplicate keys in an object, non-finite numbers (``NaN``,
``Infinity``, or a literal such as ``1e999`` that overflows), integers with more digits than
Python converts, a non-object top level and too-deep nesting all raise
:class:`~kiln.errors.ArchiveCorrupt` naming the section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from kiln.errors import ArchiveCorrupt

__all__ = ["MAX_DEPTH", "dump_json", "load_json"]

MAX_DEPTH: Final = 64
"""Most containers (objects/arrays) nested inside one another, the top-level object counted."""


def _depth_exceeds(obj: object, limit: int) -> bool:
    """Whether ``obj`` nests more than ``limit`` containers deep (iterative, no recursion)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
    return False


def dump_json(obj: Mapping[str, Any]) -> bytes:
    """Encode ``obj`` canonically (sorted keys, compact, UTF-8, finite numbers only).

    Raises ``TypeError`` when ``obj`` is not a mapping or holds a value JSON cannot encode,
    ``ValueError`` for NaN/Infinity or nesting deeper than :data:`MAX_DEPTH` (what
    :func:`load_json` would refuse).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a JSON section holds an object at the top level, not {type(obj)}")
    top = obj if isinstance(obj, dict) else dict(obj)
    if _depth_exceeds(top, MAX_DEPTH):
        raise ValueError(f"JSON nesting deeper than {MAX_DEPTH} levels")
    text = json.dumps(
        top, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


class _Reject(ValueError):
    """Raised from decoder hooks; turned into ArchiveCorrupt by load_json."""


def _no_constant(name: str) -> object:
    raise _Reject(f"non-finite number {name}")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Reject(f"number {literal[:40]} overflows to a non-finite float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {key[:64]!r} in an object")
            seen.add(key)
    return result


def load_json(
    data: bytes | bytearray | memoryview, section: str, *, what: str | None = None
) -> dict[str, Any]:
    """Decode a JSON section strictly; ``ArchiveCorrupt`` naming ``section`` on any defect
    (or naming ``what``, for a JSON file that is no archive section)."""
    where = f"section {section!r}" if what is None else what
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError as err:
        raise ArchiveCorrupt(f"{where}: invalid UTF-8 at byte {err.start}: {err.reason}") from None
    try:
        obj = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except _Reject as err:
        raise ArchiveCorrupt(f"{where}: invalid JSON: {err}") from None
    except json.JSONDecodeError as err:
        raise ArchiveCorrupt(
            f"{where}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except RecursionError:
        raise ArchiveCorrupt(f"{where}: JSON nesting deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # e.g. an integer literal beyond sys.get_int_max_str_digits()
        raise ArchiveCorrupt(f"{where}: invalid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ArchiveCorrupt(
            f"{where}: top level is a JSON {type(obj).__name__}, expected an object"
        )
    if _depth_exceeds(obj, MAX_DEPTH):
        raise ArchiveCorrupt(f"{where}: JSON nesting deeper than {MAX_DEPTH} levels")
    return obj
