"""The seam contract's checks (kiln.seam_contract) inside a function (`sets`, `contains`, `sha256`) on stand-in
trees, with no vLLM: both checkers must read the same source the same way, or a hash taken
from a source tree would fail against the installed wheel."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from kiln.seam_contract import Seam, check_installed, check_source

MODULE = "fakevllm_bodies.graphs"
Both = Callable[..., tuple[list[str], list[str]]]  # (source problems, installed problems)

SOURCE = """
    import dataclasses
    import enum
    import functools


    def inference_mode(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)

        return wrapper


    class Mode(enum.Enum):
        NONE = 0
        FULL = 2


    @dataclasses.dataclass
    class Desc:
        num_tokens: int
        loras: list = dataclasses.field(default_factory=list)


    class Manager:
        def __init__(self, device):
            self.device = device
            self.graphs, self.pool = {}, None

        @inference_mode
        def capture(self, create_forward_fn):
            # kiln copies this loop
            for desc in self.graphs:

                create_forward_fn(desc, warmup=True)
            return super().capture(
                create_forward_fn,  # wrapped over lines
            )
"""

# `Manager.capture` as source_sha256 reads it: from `def`, dedented, no comment or blank lines.
CAPTURE = """\
def capture(self, create_forward_fn):
    for desc in self.graphs:
        create_forward_fn(desc, warmup=True)
    return super().capture(
        create_forward_fn,  # wrapped over lines
    )"""
CAPTURE_SHA256 = hashlib.sha256(CAPTURE.encode()).hexdigest()


@pytest.fixture
def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Both:
    """Runs seams through the source checker and the installed checker on one tree."""
    pkg = tmp_path / "fakevllm_bodies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "graphs.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.delitem(sys.modules, "fakevllm_bodies", raising=False)

    def run(*seams: Seam) -> tuple[list[str], list[str]]:
        return check_source(tmp_path, seams), check_installed(seams)

    return run


def test_both_checkers_hash_a_decorated_method_alike(both: Both) -> None:
    seam = Seam(MODULE, "Manager.capture", None, "copied", sha256=CAPTURE_SHA256, copy="k.copy")
    assert both(seam) == ([], [])


def test_a_hash_mismatch_names_the_symbol_and_kiln_s_copy(both: Both) -> None:
    seam = Seam(MODULE, "Manager.capture", None, "copied", sha256="0" * 64, copy="k.copy")
    for (problem,) in both(seam):
        assert problem.startswith(f"{MODULE}.Manager.capture: its source changed")
        assert CAPTURE_SHA256 in problem and "(k.copy) must be reviewed" in problem


def test_a_call_is_found_however_it_is_wrapped(both: Both) -> None:
    seam = Seam(
        MODULE,
        "Manager.capture",
        None,
        "hands over",
        contains=("return super().capture(create_forward_fn)",),
    )
    assert both(seam) == ([], [])
    moved = Seam(MODULE, "Manager.capture", None, "hands over", contains=("super().capture()",))
    for (problem,) in both(moved):
        assert "no longer contains `super().capture()`" in problem


def test_attributes_set_in_init_are_checked(both: Both) -> None:
    present = Seam(MODULE, "Manager.__init__", None, "state", sets=("device", "graphs", "pool"))
    assert both(present) == ([], [])
    missing = Seam(MODULE, "Manager.__init__", None, "state", sets=("hidden_states",))
    for (problem,) in both(missing):
        assert problem == f"{MODULE}.Manager.__init__: no longer sets self.hidden_states [state]"


def test_fields_without_a_class_value_and_enum_members_are_found(both: Both) -> None:
    names = ("Desc.num_tokens", "Desc.loras", "Mode.NONE", "Mode.FULL")
    assert both(*(Seam(MODULE, n, None, "read") for n in names)) == ([], [])
    for (problem,) in both(Seam(MODULE, "Desc.num_reqs", None, "read")):
        assert "Desc.num_reqs: not found" in problem
