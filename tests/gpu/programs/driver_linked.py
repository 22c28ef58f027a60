"""A program for the GPU tests of kernels launched past cudart: SAVE or LOAD one graph in
this (fresh) process, started under kiln's interposer, and print a JSON result line.

    python -m tests.gpu.programs.driver_linked save|load ARCHIVE_DIR KIND [--skip-global]

KIND: `triton` (a hand-written @triton.jit kernel launched by Triton's own launcher, which
links libcuda), `global` (a CUDA extension built with nvcc whose kernel reads a __device__
global the application sets after loading the module), `external-event` (a graph that
records an external event that eager code then waits on), `tma` (a Triton kernel reading
through a host-side tensor descriptor: its launcher encodes a CUtensorMap per launch).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import kiln
import torch

N = 4096


def _triton_step():
    import triton
    import triton.language as tl

    @triton.jit
    def axpy2(x_ptr, y_ptr, out_ptr, a, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        y = tl.load(y_ptr + offs, mask=mask)
        tl.store(out_ptr + offs, a * x + y * y, mask=mask)

    def step(x, y):
        out = torch.empty_like(x)
        axpy2[(triton.cdiv(N, 256),)](x, y, out, 1.5, N, BLOCK=256)
        return out

    return step


def _tma_step():
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor

    @triton.jit
    def tma_axpy(x_desc, y_ptr, out_ptr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK
        x = x_desc.load([offs])
        idx = offs + tl.arange(0, BLOCK)
        tl.store(out_ptr + idx, 2.0 * x + tl.load(y_ptr + idx))

    def step(x, y):
        out = torch.empty_like(x)
        desc = TensorDescriptor.from_tensor(x, [256])
        tma_axpy[(N // 256,)](desc, y, out, BLOCK=256)
        return out

    return step


_GLOBAL_SRC = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>
#include <ATen/cuda/CUDAContext.h>

__device__ float kiln_scale = 1.0f;

__global__ void scaled_add(const float* x, const float* y, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = kiln_scale * x[i] + y[i];
}

void set_scale(double s) {
  float v = static_cast<float>(s);
  TORCH_CHECK(cudaMemcpyToSymbol(kiln_scale, &v, sizeof v) == cudaSuccess, "cudaMemcpyToSymbol");
}

torch::Tensor run(torch::Tensor x, torch::Tensor y) {
  auto out = torch::empty_like(x);
  int n = x.numel();
  scaled_add<<<(n + 255) / 256, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
      x.data_ptr<float>(), y.data_ptr<float>(), out.data_ptr<float>(), n);
  return out;
}
"""


def _global_ext(build_dir: Path):
    from torch.utils.cpp_extension import load_inline

    build_dir.mkdir(parents=True, exist_ok=True)
    return load_inline(
        "kiln_global_ext",
        cpp_sources="void set_scale(double s); torch::Tensor run(torch::Tensor x, torch::Tensor y);",
        cuda_sources=_GLOBAL_SRC,
        functions=["set_scale", "run"],
        build_directory=str(build_dir),
        verbose=False,
    )


def _external_event_step(event):
    def step(x, y):
        out = x * 2 + y
        event.record()  # an external event: becomes an event-record node
        return out

    return step


def main(argv: list[str]) -> dict:
    mode, archive, kind = argv[0], Path(argv[1]), argv[2]
    skip_global = "--skip-global" in argv
    region = kiln.Region().open()
    dev = region.device
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(N, generator=gen).cuda(dev)
    y = torch.randn(N, generator=gen).cuda(dev)
    event = None
    if kind == "triton":
        step = _triton_step()
    elif kind == "global":
        ext = _global_ext(archive / "ext-build")
        if not skip_global:
            ext.set_scale(3.0)
        step = ext.run
    elif kind == "tma":
        step = _tma_step()
    elif kind == "external-event":
        event = torch.cuda.Event(external=True)
        step = _external_event_step(event)
    else:
        raise SystemExit(f"unknown kind {kind}")
    torch.cuda.synchronize(dev)
    result: dict = {"mode": mode, "kind": kind}
    if mode == "save":
        with kiln.CaptureSession(region) as session:
            captured = session.capture("g", step, (x, y))
        if event is not None:
            torch.cuda.current_stream(dev).wait_event(event)  # eager use of the graph's event
        report = kiln.save(archive / "graphs.kiln", session)
        result["binaries"] = report.binaries
        captured.replay()
        torch.cuda.synchronize(dev)
        result["ok"] = True
        return result
    restored = kiln.load(archive / "graphs.kiln", region)
    g = restored["g"]
    # New input values, written into the restored graph's inputs.
    x2 = torch.randn(N, generator=torch.Generator().manual_seed(7)).cuda(dev)
    y2 = torch.randn(N, generator=torch.Generator().manual_seed(8)).cuda(dev)
    g.inputs[0].copy_(x2)
    g.inputs[1].copy_(y2)
    g.replay()
    torch.cuda.synchronize(dev)
    expected = step(x2, y2)
    torch.cuda.synchronize(dev)
    result["bit_exact_vs_eager"] = bool(torch.equal(g.outputs[0], expected))
    result["ok"] = True
    return result


if __name__ == "__main__":
    try:
        out = main(sys.argv[1:])
    except Exception as e:  # noqa: BLE001 (the test reads any cause from the result line)
        out = {
            "ok": False,
            "error": type(e).__name__,
            "message": str(e),
            "tb": traceback.format_exc(),
        }
    print("KILN-RESULT " + json.dumps(out), flush=True)
