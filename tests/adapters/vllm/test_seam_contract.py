"""The seam contract: the vLLM symbols kiln-vllm attaches to must be where, and as, it
expects. Against the installed vLLM when there is one (the GPU machine's bundle), against a
source tree named by KILN_VLLM_SOURCE, and the checker itself on stand-in trees."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln_vllm.seams import SEAMS, Seam, check_installed, check_source


def test_installed_vllm_matches_the_contract() -> None:
    pytest.importorskip(
        "vllm", reason="vLLM is not installed here (the GPU machine's bundle has it)"
    )
    assert check_installed() == []


def test_vllm_source_tree_matches_the_contract() -> None:
    root = os.environ.get("KILN_VLLM_SOURCE")
    if not root:
        pytest.skip("KILN_VLLM_SOURCE (a vLLM 0.24.0 source tree or unpacked wheel) is not set")
    assert check_source(root) == []


SEAM = Seam(
    "fakevllm.worker", "Worker.load_model", ("self", "load_dummy_weights"), "weights loaded"
)
GLOBAL = Seam("fakevllm.worker", "kernel_warmup", None, "patched module global")


def _tree(tmp_path: Path, body: str) -> Path:
    pkg = tmp_path / "fakevllm"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "worker.py").write_text(textwrap.dedent(body))
    return tmp_path


GOOD = """
    from fakevllm.warmup import kernel_warmup

    class Worker:
        def load_model(self, *, load_dummy_weights: bool = False) -> None: ...
"""


def test_a_matching_tree_passes(tmp_path: Path) -> None:
    assert check_source(_tree(tmp_path, GOOD), (SEAM, GLOBAL)) == []


def test_a_changed_signature_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, GOOD.replace("load_dummy_weights", "dummy"))
    (problem,) = check_source(root, (SEAM,))
    assert "fakevllm.worker.Worker.load_model" in problem and "(self, dummy)" in problem


def test_a_removed_symbol_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, "class Worker:\n    pass\n")
    problems = check_source(root, (SEAM, GLOBAL))
    assert len(problems) == 2 and all("not found" in p for p in problems)


def test_a_missing_module_is_named(tmp_path: Path) -> None:
    (problem,) = check_source(tmp_path, (SEAM,))
    assert "cannot read" in problem


def test_the_installed_checker_sees_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(
        tmp_path, GOOD.replace("from fakevllm.warmup import kernel_warmup", "kernel_warmup = None")
    )
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("fakevllm")]:
        monkeypatch.delitem(sys.modules, name)
    assert check_installed((SEAM, GLOBAL)) == []
    moved = Seam("fakevllm.worker", "Worker.load_model", ("self",), "weights loaded")
    (problem,) = check_installed((moved,))
    assert "kiln expects (self)" in problem


def test_every_seam_names_why_it_is_needed() -> None:
    assert len({s.name for s in SEAMS}) == len(SEAMS)
    assert all(s.why for s in SEAMS)
