"""Running `kiln` in-process, with exec and the interposer path replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kiln.cli import main
from kiln.lifecycle.cache_dirs import CORE_VARIABLES

CACHE_VARIABLES = tuple(CORE_VARIABLES)

from tests.lifecycle.helpers import subprocess_env


@dataclass
class Result:
    status: int
    out: str
    err: str


def kiln(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    status = main(list(argv))
    captured = capsys.readouterr()
    return Result(status, captured.out, captured.err)


@dataclass
class Exec:
    """Stands in for os.execvpe; optionally runs the command as a child process instead."""

    run_child: bool = False
    calls: list[tuple[str, list[str], dict[str, str]]] = field(default_factory=list)
    outputs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def __call__(self, file: str, args: list[str], env: dict[str, str]) -> None:
        self.calls.append((file, args, dict(env)))
        if self.run_child:
            # The fake interposer is not an ELF file; the loader would only complain about it.
            child_env = {**subprocess_env(), **{k: v for k, v in env.items() if k != "LD_PRELOAD"}}
            child_env["PYTHONPATH"] = subprocess_env()["PYTHONPATH"]
            self.outputs.append(
                subprocess.run(args, env=child_env, capture_output=True, text=True, check=True)
            )

    @property
    def env(self) -> dict[str, str]:
        assert len(self.calls) == 1, f"expected one exec, got {len(self.calls)}"
        return self.calls[0][2]


def python_printing_kiln_env() -> list[str]:
    code = (
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith('KILN_') or k in ('LD_PRELOAD', 'TOY_DETERMINISTIC')}))"
    )
    return [sys.executable, "-c", code]


def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KILN_") or name in ("LD_PRELOAD", *CACHE_VARIABLES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
