"""Hooks add lines to the startup report's notes (what an adapter left to the engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.hooks import hookimpl
from kiln_test_adapter.engine import ToyEngine

from tests.lifecycle.helpers import close_current_driver, kiln_environ


class _Noting:
    def __init__(self, message: object) -> None:
        self.message = message

    @hookimpl
    def kiln_capture_begin(self, ctx, keys):  # type: ignore[no-untyped-def]
        ctx.note(self.message)


def test_a_hook_note_reaches_the_startup_report(tmp_path: Path, toy_adapter) -> None:
    toy = ToyEngine(
        environ=kiln_environ(tmp_path, "save"), plugins=[_Noting("prefill left to the engine")]
    )
    summary = toy.start()
    close_current_driver()
    assert "prefill left to the engine" in summary["report"]["notes"]


@pytest.mark.parametrize("message", ["", None, 3])
def test_a_note_is_a_non_empty_string(tmp_path: Path, toy_adapter, message: object) -> None:
    toy = ToyEngine(environ=kiln_environ(tmp_path, "save"), plugins=[_Noting(message)])
    with pytest.raises(TypeError, match="non-empty string"):
        toy.start()
    close_current_driver()
