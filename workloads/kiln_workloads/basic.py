"""cuBLAS matmul (nvjet kernels), scaled-dot-product attention (flash / cuDNN) and a
torch.compile'd function (Triton kernels loaded through cuModuleLoadData)."""

from __future__ import annotations

from typing import Any

from kiln_workloads.base import GraphSpec, Workload


def _refill(tensors: list[Any]) -> Any:
    import torch

    def refill(seed: int) -> None:
        g = torch.Generator(device=tensors[0].device).manual_seed(seed)
        for t in tensors:
            if t.dtype.is_floating_point:
                t.copy_(torch.randn(t.shape, generator=g, device=t.device, dtype=t.dtype))
            else:
                t.copy_(
                    torch.randint(0, 1000, t.shape, generator=g, device=t.device, dtype=t.dtype)
                )

    return refill


def matmul(device: int) -> Workload:
    import torch

    torch.manual_seed(0)
    d = f"cuda:{device}"
    w = torch.randn(4096, 4096, device=d, dtype=torch.bfloat16)
    xs = [torch.randn(m, 4096, device=d, dtype=torch.bfloat16) for m in (8, 64, 256)]

    def make(x: Any) -> GraphSpec:
        return GraphSpec(
            f"matmul_m{x.shape[0]}", lambda x: torch.nn.functional.gelu(x @ w) @ w.T, (x,)
        )

    return Workload("matmul", [make(x) for x in xs], _refill(xs))


def sdpa(device: int) -> Workload:
    import torch

    torch.manual_seed(0)
    d = f"cuda:{device}"
    specs = []
    tensors = []
    backends = {
        "flash": torch.nn.attention.SDPBackend.FLASH_ATTENTION,
        "cudnn": torch.nn.attention.SDPBackend.CUDNN_ATTENTION,
        "efficient": torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION,
    }
    for label, backend in backends.items():
        q, k, v = (torch.randn(4, 16, 256, 128, device=d, dtype=torch.bfloat16) for _ in range(3))
        tensors += [q, k, v]

        def fn(q: Any, k: Any, v: Any, backend: Any = backend) -> Any:
            with torch.nn.attention.sdpa_kernel([backend]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        specs.append(GraphSpec(f"sdpa_{label}", fn, (q, k, v)))
    return Workload("sdpa", specs, _refill(tensors))


def compiled(device: int) -> Workload:
    import torch

    torch.manual_seed(0)
    d = f"cuda:{device}"
    x = torch.randn(1024, 2048, device=d, dtype=torch.float32)
    y = torch.randn(1024, 2048, device=d, dtype=torch.float32)

    @torch.compile(dynamic=False)
    def fused(x: Any, y: Any) -> Any:
        # Row-wise reductions only: a column sum would be split across blocks with atomics,
        # which is not deterministic even natively.
        a = torch.nn.functional.gelu(x) * torch.sin(y) + 1.0
        return a.softmax(dim=-1), (a * y).sum(dim=-1)

    return Workload("compiled", [GraphSpec("compiled_fused", fused, (x, y))], _refill([x, y]))


def two_topologies(device: int) -> Workload:
    """Batch sizes whose graphs fall into two topology groups (small sizes skip a step), with
    several members each: restores through both templates."""
    import torch

    torch.manual_seed(0)
    d = f"cuda:{device}"
    w = torch.randn(1024, 1024, device=d, dtype=torch.bfloat16) * 0.03
    xs = [torch.randn(m, 1024, device=d, dtype=torch.bfloat16) for m in (64, 32, 16, 4, 2, 1)]

    def step(x: Any) -> Any:
        y = torch.nn.functional.silu(x @ w)
        if x.shape[0] >= 16:  # more nodes: another topology
            y = y * torch.sigmoid(y) + x
        return y @ w.T

    return Workload(
        "two_topologies", [GraphSpec(f"step_m{x.shape[0]}", step, (x,)) for x in xs], _refill(xs)
    )
