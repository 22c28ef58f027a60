"""Hypothesis strategies for hostile input: JSON values, mutations of good bytes and text
that tries to be markup, emoji codes, terminal escapes or unencodable."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Bounded CI settings; bench/hostile_campaign.py runs the long campaign.
CI_EXAMPLES = 60

hostile_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.sampled_from("[]/\\:x_ bold red\x1b\x00\n\r\t\u202e"), max_size=40),
    st.sampled_from(["[/]", "[/]x", ":cross_mark:", "b'root:x:0'", "\\", "[bold", "\x1b[2J"]),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF).map(lambda c: f"a{c}b"),
)

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | hostile_text
)
json_values = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, cut short, or extended."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
        if how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif how == "extend":
            data += draw(st.binary(max_size=64))
        elif data:
            i = draw(st.integers(0, len(data) - 1))
            data[i : i + draw(st.integers(0, 16))] = draw(st.binary(max_size=16))
    return bytes(data)


@st.composite
def patched_json(draw: st.DrawFn, original: dict[str, Any]) -> Any:
    """``original`` (a JSON object) with one value somewhere replaced by any JSON value."""
    doc: Any = _copy(original)
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return doc
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
            del node[key]
        else:
            node[key] = draw(json_values)
        return doc


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
