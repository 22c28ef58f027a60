"""SAVE refuses what LOAD could not reproduce, in a fresh process on the real driver."""

from __future__ import annotations

import pytest

from tests.gpu.conftest import script_result

pytestmark = pytest.mark.gpu


def test_kernel_argument_into_memory_allocated_outside_the_region_is_refused_at_save(
    tmp_path,
) -> None:
    # `outside` is allocated while the region is suspended (32 MiB: a segment of its own in
    # PyTorch's large pool, never shared with the region's memory); the captured kernel
    # reads it, so LOAD could not reproduce what the graph reads.
    script = f"""
import json
import torch
import kiln

region = kiln.Region().open()
x = torch.randn(1024, device="cuda")
with region.suspended():
    outside = torch.randn(8 << 20, device="cuda")
torch.cuda.synchronize()
result = {{"error_class": None, "outside": outside.data_ptr(),
           "outside_in_region": region.contains(outside.data_ptr()),
           "x_in_region": region.contains(x.data_ptr())}}
try:
    with kiln.CaptureSession(region) as session:
        session.capture("reads_outside", lambda x: x + outside[:1024], (x,), warmup=1)
    kiln.save({str(tmp_path / "graphs.kiln")!r}, session)
except Exception as e:
    result.update(error_class=type(e).__name__, error=str(e))
print(json.dumps(result))
"""
    r = script_result(script)
    assert r["x_in_region"] and not r["outside_in_region"], r
    assert r["error_class"] == "ExternalPointerError", r
    assert f"0x{r['outside']:x}" in r["error"], r
    assert "points into device memory outside the kiln region" in r["error"], r
    assert not (tmp_path / "graphs.kiln").exists()
