"""Errors: each injected fault gives its specific error, no crash and no wrong output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu.conftest import kiln_env, run_module, run_workload, script_result

pytestmark = pytest.mark.gpu


def test_extra_allocation_before_load_is_reported_as_drift(matmul_archive: Path) -> None:
    r = run_workload("matmul", "load", matmul_archive, inject="drift")
    assert not r["ok"]
    assert r["error_class"] == "AllocationDriftError", r
    assert "allocation #" in r["error"] and "expected offset" in r["error"]


def test_load_with_another_region_base_names_the_field(matmul_archive: Path) -> None:
    env = kiln_env(KILN_REGION_BASE=hex(0x6100_0000_0000))
    r = run_workload("matmul", "load", matmul_archive, env=env)
    assert not r["ok"]
    assert r["error_class"] == "FingerprintMismatch" and "region_base" in r["error"], r


def test_region_base_taken_by_someone_else_is_refused(tmp_path: Path) -> None:
    script = """
import ctypes, json, sys
import kiln
from kiln.region import RegionConfig
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev = ctypes.c_int(); cu.cuDeviceGet(ctypes.byref(dev), 0)
ctx = ctypes.c_void_p(); cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev); cu.cuCtxSetCurrent(ctx)
cfg = RegionConfig.from_env(0)
got = ctypes.c_uint64()
# Same size and alignment as kiln's own reservation, which the driver honours.
rc = cu.cuMemAddressReserve(ctypes.byref(got), ctypes.c_size_t(cfg.size), ctypes.c_size_t(2 << 20), ctypes.c_uint64(cfg.base), ctypes.c_ulonglong(0))
assert rc == 0 and got.value == cfg.base, (rc, hex(got.value))
try:
    kiln.Region(cfg).open()
    print(json.dumps({"error_class": None}))
except Exception as e:
    print(json.dumps({"error_class": type(e).__name__, "error": str(e)}))
"""
    r = script_result(script)
    assert r["error_class"] == "RegionBaseNotHonoured", r
    assert "did not honour the region base" in r["error"]


def test_corrupted_archives_fail_closed_and_the_intact_one_still_restores(
    matmul_archive: Path,
) -> None:
    out = matmul_archive / "faults.json"
    proc = run_module(
        "kiln_workloads.faults",
        ["--workload", "matmul", "--archive", str(matmul_archive), "--out", str(out)],
        kiln_env(),
    )
    assert out.exists(), proc.stderr[-4000:]
    r = json.loads(out.read_text())
    bad = [c for c in r["cases"] if not c["ok"]]
    assert not bad, bad
    labels = " ".join(c["case"] for c in r["cases"])
    for section in ("fingerprint", "manifest", "g0", "b0"):
        assert f"section {section}" in labels
    assert r["intact_restore_bit_exact"]


def test_graph_using_torch_rng_is_refused(tmp_path: Path) -> None:
    script = """
import json, torch, kiln
region = kiln.Region().open()
x = torch.zeros(1024, device="cuda")
try:
    with kiln.CaptureSession(region) as s:
        s.capture("noisy", lambda x: x + torch.rand_like(x), (x,))
    print(json.dumps({"error_class": None}))
except Exception as e:
    print(json.dumps({"error_class": type(e).__name__, "error": str(e)}))
"""
    r = script_result(script)
    assert r["error_class"] == "RngStateError", r


def test_kernel_argument_that_only_looks_like_a_region_address_restores(tmp_path: Path) -> None:
    # Regression (vLLM qwen3-8b LOAD, FlashAttention 3): a kernel argument word equal to an
    # unallocated region address (0x601200000001) was recorded as a pointer, and LOAD then
    # refused the graph because nothing backed that address.
    script = """
import json, sys, torch, kiln
mode, path = sys.argv[1], sys.argv[2]
region = kiln.Region().open()
x = torch.zeros(8, dtype=torch.int64, device="cuda")
value = region.config.base + (1 << 35) + 1  # in the region, far past anything allocated
if mode == "save":
    with kiln.CaptureSession(region) as s:
        s.capture("fill", lambda x: x.fill_(value), (x,))
    kiln.save(path, s)
    print(json.dumps({"ok": True}))
else:
    graphs = kiln.load(path, region)
    graphs["fill"].replay()
    torch.cuda.synchronize()
    print(json.dumps({"ok": bool((x == value).all().item())}))
"""
    archive = str(tmp_path / "fill.kiln")
    for mode in ("save", "load"):
        proc = subprocess.run(
            [sys.executable, "-c", script, mode, archive],
            env=kiln_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ok": True}, mode
