"""Schemas for everything kiln reads from archives and reports, and how they are applied.

Each schema is a ``msgspec.Struct``; :func:`validated` converts a decoded JSON value into
it strictly (no coercion: ``"1"`` is no integer, ``true`` is no integer) and checks every
type, range and size the schema declares. The message of a violation names the field's
path (``$.graphs[3].nodes``). Relations between fields (a graph's section exists, the
window lies inside the trajectory) are checked by the readers after the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias, TypeVar

import msgspec

__all__ = [
    "I64",
    "U32",
    "Count",
    "Digest",
    "Name",
    "SchemaViolation",
    "Text",
    "validated",
]

T = TypeVar("T")

U32: TypeAlias = Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]
#: A count, size, offset or device address: what fits the signed 64-bit integers engines,
#: tensors and the native core use (msgspec bounds integers to 64 bits at most).
Count: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
#: A signed 64-bit integer (tensor strides).
I64: TypeAlias = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
Digest: TypeAlias = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
#: Section names, graph keys, dtype and kind names, engine names.
Name: TypeAlias = Annotated[str, msgspec.Meta(max_length=4096)]
#: Free text kiln shows (messages, reasons).
Text: TypeAlias = Annotated[str, msgspec.Meta(max_length=1 << 16)]


class SchemaViolation(ValueError):
    """A value does not follow its schema; the message names the field's path."""


def validated(value: Any, schema: type[T]) -> T:
    """``value`` (decoded JSON) as ``schema``, or :class:`SchemaViolation`."""
    try:
        return msgspec.convert(value, schema, strict=True)
    except msgspec.ValidationError as err:
        raise SchemaViolation(str(err)) from None
    except UnicodeEncodeError as err:  # JSON may escape a lone surrogate; Unicode has none
        raise SchemaViolation(
            f"a string holds a lone surrogate ({err.object[err.start : err.end]!r}), "
            "which is not Unicode"
        ) from None
