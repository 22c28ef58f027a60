"""Property-based tests of the CLI's text rendering: whatever a user or an archive writes is
shown literally, in any output encoding, and takes time linear in its length."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from kiln.cli import output
from rich.console import Console
from rich.table import Table

from tests.hostile.strategies import CI_EXAMPLES, hostile_text

CI = settings(max_examples=CI_EXAMPLES * 2, deadline=None)


def rendered(renderable: object, encoding: str = "utf-8", errors: str = "strict") -> str:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)
    out = output.console()
    out.file = stream
    out.print(renderable)
    stream.flush()
    return raw.getvalue().decode(encoding)


@CI
@given(text=hostile_text)
def test_literal_text_has_nothing_a_terminal_or_encoder_acts_on(text: str) -> None:
    shown = output.literal(text)
    shown.encode("utf-8")  # no lone surrogate: strict encoding succeeds
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    if all(c.isprintable() for c in text):
        assert shown == text  # printable text is shown unchanged


@CI
@given(key=hostile_text, value=hostile_text | st.lists(hostile_text, max_size=3))
def test_trees_of_archive_data_render_it_literally(key: str, value: object) -> None:
    out = rendered(output.tree(key, {key: value}))
    assert output.literal(key) in out.replace("\n", "") or len(key) > 40


@CI
@given(cell=hostile_text)
def test_tables_render_any_cell_in_utf8_and_ascii_output(cell: str) -> None:
    table = Table("field", "value")
    table.add_row(output.literal(cell), output.literal(cell))
    rendered(table)  # strict UTF-8
    # An ASCII terminal: what robust_streams() sets up for sys.stdout.
    rendered(table, encoding="ascii", errors="backslashreplace")


@CI
@given(text=hostile_text)
def test_styled_lines_are_never_markup(text: str) -> None:
    out = rendered(output.styled((text, "bold"), text))
    assert out.rstrip("\n") == output.literal(text) * 2 or "\n" in out.rstrip("\n")


def test_console_ignores_markup_and_emoji_codes() -> None:
    console = output.console()
    assert isinstance(console, Console)
    assert rendered("[/]x :cross_mark: [bold]").strip() == "[/]x :cross_mark: [bold]"
