"""GPU tests run each SAVE and LOAD in a fresh process under the interposer: a restore
proven inside the capturing process would prove nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _gpu_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver on this machine (nvidia-smi not found)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


_REASON = _gpu_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def kiln_env(enable: bool = True, **extra: str) -> dict[str, str]:
    from kiln._paths import preload_library

    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload_library())
    if enable:
        env["KILN_ENABLE"] = "1"
    else:
        env.pop("KILN_ENABLE", None)
    env.update(extra)
    return env


def run_module(
    module: str, args: list[str], env: dict[str, str], timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
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
) -> dict[str, Any]:
    out = archive / f"{mode}-{inject}.json"
    proc = run_module(
        "kiln.workloads.run",
        [
            "--workload",
            workload,
            "--mode",
            mode,
            "--archive",
            str(archive),
            "--inject",
            inject,
            "--out",
            str(out),
        ],
        env or kiln_env(),
    )
    if not out.exists():
        raise AssertionError(
            f"{mode} process wrote no result (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    result = json.loads(out.read_text())
    if not result.get("ok"):
        result["stderr_tail"] = proc.stderr[-3000:]
    print(json.dumps(result, indent=1, default=str)[:20000])  # shown in full for failing tests
    return result
