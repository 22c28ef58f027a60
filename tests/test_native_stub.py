"""core/kiln/_native.pyi names what kiln._native has: every public function and class, each
class's public members, and nothing the module lacks."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pytest

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

STUB = Path(__file__).resolve().parent.parent / "core" / "kiln" / "_native.pyi"


def _stub() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    names: set[str] = set()
    classes: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            classes[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"
            }
    return names, classes


def _public(obj: object) -> set[str]:
    return {n for n in vars(obj) if not n.startswith("_")}


def test_the_stub_names_every_public_function_and_class_of_the_module() -> None:
    names, _ = _stub()
    actual = {
        n
        for n, v in vars(native).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)  # `testing`: tests only
        and (callable(v) or inspect.isclass(v))
        and not (inspect.isclass(v) and issubclass(v, BaseException))
    }
    assert actual - names == set(), "missing from _native.pyi"
    assert names - actual == set(), "in _native.pyi but not in the module"


def test_the_stub_names_every_public_member_of_each_class() -> None:
    _, classes = _stub()
    for name, members in classes.items():
        cls = getattr(native, name)
        assert _public(cls) - members == set(), f"{name}: missing from _native.pyi"
        assert members - _public(cls) - {"__len__"} == set(), f"{name}: not in the module"
