"""The seam contract: the engine symbols an adapter attaches to, declared as data (`Seam`),
and the two checkers that compare them with an engine.

`check_installed(seams)` imports the engine and inspects the live objects;
`check_source(root, seams)` parses an engine source tree without importing it (no torch
needed). Both return one problem per symbol that moved, naming it and what changed; an empty
list means every seam is where the adapter expects it.

Beyond names and parameters, a seam can say what the adapter relies on inside a function,
read from its source the same way in both checkers: the instance attributes it assigns
(`sets`), the calls the adapter patches around (`contains`), and, where the adapter
re-implements the function line by line, a hash of its source (`sha256`): any change there,
even one that keeps every name, means the adapter's copy may no longer do what the engine's
does. Each adapter declares its seams in its own module (kiln_vllm.seams for vLLM).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Seam:
    module: str  # vllm.v1.worker.gpu_worker
    qualname: str  # Worker.load_model; a class field or enum member: CUDAGraphMode.FULL
    params: tuple[str, ...] | None  # parameter names ("*args", "**kwargs"); None: existence only
    why: str
    sets: tuple[str, ...] = ()  # `self.<name>` the function assigns (kiln reads them)
    contains: tuple[str, ...] = ()  # expressions or statements its body must still hold
    sha256: str | None = None  # of its normalised source (`source_sha256`)
    copy: str = ""  # kiln's re-implementation, to review when the hash changes

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"

    @property
    def reads_body(self) -> bool:
        return bool(self.sets or self.contains or self.sha256)


def source_sha256(lines: Sequence[str]) -> str:
    """SHA-256 of a function's source, from its `def` line (decorators excluded) to its last.

    Normalised so that `inspect.getsource` on an installed vLLM and the same file in a source
    tree agree, and so that reformatting comments does not count as a change: dedented to the
    `def`, trailing whitespace, blank and comment-only lines dropped. Indentation inside the
    function is kept: moving a statement out of a `with` block changes what it does."""
    kept = [line.rstrip() for line in textwrap.dedent("\n".join(lines)).splitlines()]
    text = "\n".join(line for line in kept if line and not line.lstrip().startswith("#"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _assigned_self_attrs(fn: FunctionNode) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        while targets:
            t = targets.pop()
            if isinstance(t, (ast.Tuple, ast.List)):
                targets += t.elts
            elif (
                isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id == "self"
            ):
                names.add(t.attr)
    return names


def _dumped(code: str) -> str:
    # Compared as syntax trees, so line wrapping and comments do not matter.
    node: ast.AST = ast.parse(code).body[0]
    return ast.dump(node.value if isinstance(node, ast.Expr) else node)


def _body_problems(seam: Seam, fn: FunctionNode, lines: Sequence[str]) -> list[str]:
    """`fn` parsed from `lines` (the module's, or `inspect.getsource`'s)."""
    problems = []
    assigned = _assigned_self_attrs(fn) if seam.sets else set()
    for attr in seam.sets:
        if attr not in assigned:
            problems.append(f"{seam.name}: no longer sets self.{attr} [{seam.why}]")
    if seam.contains:
        present = {ast.dump(node) for node in ast.walk(fn)}
        for code in seam.contains:
            if _dumped(code) not in present:
                problems.append(f"{seam.name}: no longer contains `{code}` [{seam.why}]")
    if seam.sha256 is not None:
        assert fn.end_lineno is not None
        found = source_sha256(lines[fn.lineno - 1 : fn.end_lineno])
        if found != seam.sha256:
            problems.append(
                f"{seam.name}: its source changed since vLLM 0.24.0 (sha256 {found}, kiln "
                f"expects {seam.sha256}); kiln's copy of it ({seam.copy}) must be reviewed "
                "against the new source before the hash is updated"
            )
    return problems


# --- against the installed vLLM -------------------------------------------------------------


def _parameter_names(obj: object) -> tuple[str, ...]:
    names = []
    for p in inspect.signature(obj).parameters.values():  # type: ignore[arg-type]
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        names.append(stars + p.name)
    return tuple(names)


_FIELD = object()  # a class field declared without a class-level value


def _member(owner: object, name: str) -> object:
    try:
        return inspect.getattr_static(owner, name)
    except AttributeError:
        # Dataclass fields with no default (or a default_factory) exist only on instances.
        if isinstance(owner, type) and any(
            name in vars(k).get("__annotations__", {}) for k in owner.__mro__
        ):
            return _FIELD
        raise


def _installed_body(seam: Seam, obj: object) -> list[str]:
    try:
        # getsource follows functools.wraps to the decorated function, decorators included;
        # the parsed def's line numbers then leave them out, as the source tree's do.
        text = textwrap.dedent(inspect.getsource(obj))  # type: ignore[arg-type]
        fn = ast.parse(text).body[0]
    except (OSError, TypeError, SyntaxError, IndexError) as e:
        return [f"{seam.name}: its source cannot be read ({e}) [{seam.why}]"]
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [f"{seam.name}: is no longer a function"]
    return _body_problems(seam, fn, text.splitlines())


def check_installed(seams: Sequence[Seam]) -> list[str]:
    problems = []
    for seam in seams:
        try:
            obj: object = importlib.import_module(seam.module)
        except ImportError as e:
            problems.append(f"{seam.name}: module {seam.module} cannot be imported ({e})")
            continue
        try:
            for part in seam.qualname.split("."):
                obj = _member(obj, part)
        except AttributeError:
            problems.append(f"{seam.name}: not found ({seam.why})")
            continue
        if isinstance(obj, (classmethod, staticmethod)):
            obj = obj.__func__
        if (seam.params is not None or seam.reads_body) and not callable(obj):
            problems.append(f"{seam.name}: is no longer a function")
            continue
        if seam.params is not None:
            # getattr_static keeps functions unbound: "self"/"cls" stay, as in the source.
            problems += _compare(seam, _parameter_names(obj))
        if seam.reads_body:
            problems += _installed_body(seam, obj)
    return problems


# --- against a source tree, without importing it --------------------------------------------


def _find(body: list[ast.stmt], name: str) -> ast.AST | None:
    for node in body:
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name == name
        ):
            return node
    for node in body:  # module globals imported from elsewhere (patched names)
        if isinstance(node, ast.ImportFrom) and any(
            (a.asname or a.name) == name for a in node.names
        ):
            return node
    for node in body:  # class fields and enum members
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    return None


def _ast_names(fn: FunctionNode) -> tuple[str, ...]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return tuple(names)


def check_source(root: str | Path, seams: Sequence[Seam]) -> list[str]:
    """`root` holds the engine's top-level package directory (a checkout, or an unpacked
    wheel); nothing is imported."""
    problems = []
    for seam in seams:
        base = Path(root, *seam.module.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, SyntaxError) as e:
            problems.append(f"{seam.name}: cannot read {path} ({e})")
            continue
        node: ast.AST | None = tree
        for part in seam.qualname.split("."):
            body = getattr(node, "body", [])
            node = _find(body, part)
            if node is None:
                break
        if node is None:
            problems.append(f"{seam.name}: not found ({seam.why})")
            continue
        if seam.params is None and not seam.reads_body:
            continue
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            problems.append(f"{seam.name}: is no longer a function")
            continue
        if seam.params is not None:
            problems += _compare(seam, _ast_names(node))
        if seam.reads_body:
            problems += _body_problems(seam, node, text.splitlines())
    return problems


def _compare(seam: Seam, found: tuple[str, ...]) -> list[str]:
    assert seam.params is not None
    if found == seam.params:
        return []
    return [
        f"{seam.name}: parameters are ({', '.join(found)}), kiln expects ({', '.join(seam.params)}) [{seam.why}]"
    ]
