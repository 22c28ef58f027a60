""".ci/run (the README's test command) keeps to its own venv and its own temporary directory."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPT = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
COMMANDS = [line for line in SCRIPT.splitlines() if not line.lstrip().startswith("#")]


def test_ci_never_installs_into_the_global_or_the_users_python() -> None:
    # Bug: with no venv active it ran `python3 -m pip install` into the global Python, and
    # installed the test adapter into the user's environment.
    pip = [line for line in COMMANDS if re.search(r"-m pip |\bpip3? install", line)]
    assert pip and all('"$py" -m pip' in line for line in pip), pip
    assert 'python3 -m venv "$venv"' in SCRIPT
    assert "PYTHONNOUSERSITE=1" in SCRIPT
    assert not any("--user" in line for line in COMMANDS)


def test_ci_keeps_every_temporary_file_under_one_directory_removed_on_exit() -> None:
    # Bug: each run left ~300 MB in /tmp (the vLLM wheel, build trees, pytest's files).
    assert re.search(r"^work=\$\(mktemp -d ", SCRIPT, re.MULTILINE)
    assert "trap cleanup EXIT" in SCRIPT and 'rm -rf "$work"' in SCRIPT
    mktemps = [line for line in COMMANDS if "mktemp" in line]
    assert len(mktemps) == 1
    for setting in ('TMPDIR="$work/', 'PIP_CACHE_DIR="$work/', 'vllm_src="$work/'):
        assert setting in SCRIPT
    assert '--basetemp="$work/pytest"' in SCRIPT
    assert 'build-dir="$work/build"' in SCRIPT


def test_ci_runs_the_whole_suite_with_the_venvs_python() -> None:
    assert COMMANDS[-1] == '"$py" -m pytest -q -p no:cacheprovider --basetemp="$work/pytest" tests'
