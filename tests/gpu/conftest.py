"""GPU tests run each SAVE and LOAD in a fresh process under the interposer: a restore
proven inside the capturing process would prove nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kiln._gpu import gpu_unavailable_reason
from kiln_workloads import fresh
from kiln_workloads.fresh import interposer_env

_REASON = gpu_unavailable_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def kiln_env(enable: bool = True, **extra: str) -> dict[str, str]:
    return {**interposer_env(enable=enable), **extra}


def run_module(
    module: str, args: list[str], env: dict[str, str], timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 (callers read returncode)
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_workload(
    workload: str,
    mode: str,
    archive: Path,
    *,
    inject: str = "none",
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    result, proc = fresh.run_workload(workload, mode, archive, *extra, inject=inject, env=env)
    if result is None:
        raise AssertionError(
            f"{mode} process wrote no result (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    if not result.get("ok"):
        result["stderr_tail"] = proc.stderr[-3000:]
    print(json.dumps(result, indent=1, default=str)[:20000])  # shown in full for failing tests
    return result


def run_python(script: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `script` with `python -c` in a fresh process under the interposer."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=kiln_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def script_result(script: str) -> dict[str, Any]:
    """Run `script` as run_python does; the JSON its last line prints (it must succeed)."""
    proc = run_python(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def matmul_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The matmul workload saved once per test module (SAVE in a fresh process)."""
    d = tmp_path_factory.mktemp("matmul")
    saved = run_workload("matmul", "save", d)
    assert saved["ok"], saved
    return d
