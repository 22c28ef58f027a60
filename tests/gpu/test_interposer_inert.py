"""Lifetime: with the interposer loaded but kiln not enabled, a torch workload behaves
exactly as without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gpu.conftest import kiln_env, run_workload

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("workload", ["matmul", "compiled"])
def test_outputs_identical_with_and_without_the_interposer(workload: str, tmp_path: Path) -> None:
    import torch

    plain_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "KILN_ENABLE")}
    a = run_workload(workload, "native", tmp_path, env=plain_env)
    b = run_workload(workload, "native", tmp_path, env=kiln_env(enable=False))
    assert a["ok"] and b["ok"], (a, b)
    ra = torch.load(tmp_path / a["file"])
    rb = torch.load(tmp_path / b["file"])
    assert ra.keys() == rb.keys()
    for name in ra:
        for kind in ("eager", "graph"):
            assert all(torch.equal(x, y) for x, y in zip(ra[name][kind], rb[name][kind])), (
                name,
                kind,
            )
