"""Shared test helpers: kiln environments, a recording plugin, an injected-failure plugin."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln import hookspecs
from kiln.hooks import hookimpl
from kiln.lifecycle import process

INSTALL_ADAPTER = "python3 -m pip install --no-deps ./tests/fixtures/kiln_test_adapter"

#: Every hook the specification defines, by name.
HOOK_NAMES = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("kiln_") and inspect.isfunction(value)
)


def kiln_environ(tmp_path: Path, mode: str = "save", policy: str = "strict", **extra: str) -> dict:
    """What `kiln run` gives an engine process, pointing at a per-test archive directory."""
    return {
        "KILN_ENABLE": "1",
        "KILN_MODE": mode,
        "KILN_ARCHIVE": str(tmp_path / "archive"),
        "KILN_POLICY": policy,
        "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        "KILN_JOB": "job-of-this-test",  # one `kiln run` launch: every rank records it
        **extra,
    }


def _impl_like(name: str, body: Callable[..., Any], **marker: bool) -> Callable[..., Any]:
    """A hook implementation with exactly the spec's signature (pluggy matches arg names)."""
    spec = getattr(hookspecs, name)

    def impl(*args: Any, **kwargs: Any) -> Any:
        return body(name, inspect.signature(spec).bind(*args, **kwargs).arguments)

    functools.update_wrapper(
        impl, spec, assigned=("__name__", "__qualname__", "__doc__"), updated=()
    )
    impl.__wrapped__ = spec  # type: ignore[attr-defined]  # inspect.signature follows it
    return hookimpl(**marker)(impl)


class Recorder:
    """Implements every hook, returns nothing, remembers the calls in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.plugin = types.SimpleNamespace(
            **{name: _impl_like(name, self._record) for name in HOOK_NAMES}
        )

    def _record(self, name: str, arguments: dict[str, Any]) -> None:
        ctx = arguments.get("ctx")
        self.calls.append((name, {**arguments, "mode": getattr(ctx, "mode", None)}))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[dict[str, Any]]:
        return [arguments for hook, arguments in self.calls if hook == name]


def failing_in(name: str, error: BaseException) -> object:
    """A plugin whose implementation of hook ``name`` raises ``error`` (runs first)."""

    def raise_(hook: str, arguments: dict[str, Any]) -> None:
        raise error

    return types.SimpleNamespace(**{name: _impl_like(name, raise_, tryfirst=True)})


def returning(name: str, value: Any) -> object:
    """A plugin whose implementation of hook ``name`` returns ``value`` (runs first)."""
    return types.SimpleNamespace(
        **{name: _impl_like(name, lambda hook, arguments: value, tryfirst=True)}
    )


def close_current_driver() -> None:
    process.reset()


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with an absolute PYTHONPATH to this checkout's kiln (tests chdir away)."""
    import os

    import kiln

    core = str(Path(kiln.__file__).resolve().parent.parent)
    paths = [core, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


def save_other_ranks(tmp_path: Path, world_size: int, **options: Any) -> None:
    """SAVE ranks 1..world_size-1 of the toy engine (rank 0 is the test's own), as the other
    processes of one launch would: a LOAD with several ranks needs every rank's archive."""
    from kiln_test_adapter.engine import ToyEngine

    for rank in range(1, world_size):
        ToyEngine(
            world_size=world_size, rank=rank, environ=kiln_environ(tmp_path, "save"), **options
        ).start()
        close_current_driver()
