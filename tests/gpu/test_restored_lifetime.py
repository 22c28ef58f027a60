"""Restored memory lives as long as a tensor handed out uses it, and a process that restored
graphs exits without nanobind's leak report: each LOAD in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gpu.conftest import run_python

pytestmark = pytest.mark.gpu


# What kiln_workloads.run's LOAD does before kiln.load, so the allocations match SAVE's.
LOAD = """
import json
import torch
import kiln
from kiln_workloads import build
from kiln_workloads import run as workload_run

workload_run._deterministic()
region = kiln.Region().open()
wl = build("matmul")
torch.cuda.synchronize()
restored = kiln.load({archive!r}, region)
"""


def test_a_tensor_outliving_close_still_reads_and_writes_its_memory(
    matmul_archive: Path,
) -> None:
    # Regression: close() unmapped the window memory that handed-out tensors alias (and
    # did not wait for a replay in flight); the next access faulted and killed the context.
    script = (
        LOAD.format(archive=str(matmul_archive / "graphs.kiln"))
        + """
g = restored["matmul_m8"]
wl.refill(7)
g.replay()
torch.cuda.synchronize()
out = g.outputs[0]
expected = out.clone()
g.replay()  # still in flight when close() comes
restored.close()
del g
got = out.clone()
out.fill_(3.0)
filled = bool((out == 3.0).all())
torch.cuda.synchronize()
print(json.dumps({"same": bool(torch.equal(got, expected)), "filled": filled,
                  "elements": out.numel()}))
del out
torch.cuda.synchronize()
print(json.dumps({"released": True}))
"""
    )
    proc = run_python(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    r = json.loads(lines[-2])
    assert r["same"] and r["filled"] and r["elements"] > 0, r
    assert json.loads(lines[-1]) == {"released": True}


def test_a_process_that_restored_graphs_exits_without_a_nanobind_leak_report(
    matmul_archive: Path,
) -> None:
    # Regression: every interpreter exit after kiln.load printed nanobind's report of leaked
    # instances, types and functions (each tensor handed out kept the restored set alive).
    script = (
        LOAD.format(archive=str(matmul_archive / "graphs.kiln"))
        + """
g = restored["matmul_m8"]
wl.refill(7)
g.replay()
torch.cuda.synchronize()
out = g.outputs[0]
print(json.dumps({"graphs": len(restored), "finite": bool(torch.isfinite(out).all())}))
"""
    )
    proc = run_python(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["graphs"] >= 1 and r["finite"], r
    assert "nanobind" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr[-3000:]
