"""`kiln demo` runs kiln's own demo program (kiln.demo_program) under `kiln run`, SAVE then
LOAD, with no workloads package: kiln_workloads is test and benchmark code (issue 24)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kiln import demo


class FakeKilnRun:
    def __init__(self, exact: bool = True) -> None:
        self.commands: list[list[str]] = []
        self.exact = exact

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        args = command[command.index("run") + 1 : command.index("--")]
        mode = args[args.index("--mode") + 1]
        archive = Path(args[args.index("--archive") + 1])
        archive.mkdir(parents=True, exist_ok=True)
        report = {"outcome": "saved", "graphs_captured": 3, "graphs_restored": 0}
        if mode == "load":
            report = {"outcome": "restored", "graphs_captured": 0, "graphs_restored": 3}
            out = Path(command[command.index("--out") + 1])
            check = {"vs_save_native": {"bit_exact": self.exact}}
            out.write_text(json.dumps({"ok": self.exact, "checks": {"matmul_m8": check}}))
        (archive / "startup-report.json").write_text(json.dumps(report))
        return subprocess.CompletedProcess(command, 0, "", "")


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "gpu_unavailable_reason", lambda: None)


def test_demo_saves_and_loads_its_own_program_under_kiln_run(
    gpu: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeKilnRun()
    monkeypatch.setattr(demo.subprocess, "run", fake)
    assert demo.main([]) == 0
    modes = [c[c.index("--mode") + 1] for c in fake.commands]
    assert modes == ["save", "load"]
    for command in fake.commands:
        program = command[command.index("--") + 1 :]
        assert program[1:3] == ["-m", "kiln.demo_program"]
        assert not any("workloads" in part for part in command)
    assert "bit-exact vs SAVE's native graphs: True" in capsys.readouterr().out


def test_demo_fails_when_the_restore_differs(
    gpu: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo.subprocess, "run", FakeKilnRun(exact=False))
    assert demo.main([]) == 1
    assert "bit-exact vs SAVE's native graphs: False" in capsys.readouterr().out


def test_demo_program_is_importable_without_torch_or_workloads() -> None:
    import kiln.demo_program as program

    assert program.REFERENCE == "demo-reference.pt"
