"""A Llama-3-8B-shaped decode step (32 layers, hidden 4096, GQA 32/8 heads, bf16) with a
KV cache, captured at a set of batch sizes sharing one memory pool, as engines do."""

from __future__ import annotations

from typing import Any

from kiln_workloads.base import GraphSpec, Workload

DEFAULT_SIZES = [1, 2, 4] + list(range(8, 257, 8))  # 35 sizes
VLLM_SIZES = [1, 2, 4] + list(range(8, 513, 8))  # 67 sizes


class Config:
    layers = 32
    hidden = 4096
    heads = 32
    kv_heads = 8
    head_dim = 128
    ffn = 14336
    vocab = 128256
    ctx = 256  # cached tokens attended to


def decode(device: int, sizes: list[int] | None = None, layers: int | None = None) -> Workload:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sizes = sizes or DEFAULT_SIZES
    _DETERMINISTIC_SDPA = [
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    c = Config()
    if layers:
        c.layers = layers
    d = f"cuda:{device}"
    bf = torch.bfloat16
    torch.manual_seed(0)
    max_bs = max(sizes)
    std = 0.02

    def w(*shape: int) -> Any:
        return torch.randn(*shape, device=d, dtype=bf) * std

    layers_w = []
    for _ in range(c.layers):
        layers_w.append(
            {
                "ln1": torch.ones(c.hidden, device=d, dtype=bf),
                "qkv": w((c.heads + 2 * c.kv_heads) * c.head_dim, c.hidden),
                "o": w(c.hidden, c.heads * c.head_dim),
                "ln2": torch.ones(c.hidden, device=d, dtype=bf),
                "gate_up": w(2 * c.ffn, c.hidden),
                "down": w(c.hidden, c.ffn),
                "k_cache": torch.randn(max_bs, c.kv_heads, c.ctx, c.head_dim, device=d, dtype=bf),
                "v_cache": torch.randn(max_bs, c.kv_heads, c.ctx, c.head_dim, device=d, dtype=bf),
            }
        )
    embed = w(c.vocab, c.hidden)
    ln_f = torch.ones(c.hidden, device=d, dtype=bf)
    lm_head = w(c.vocab, c.hidden)
    inv = 1.0 / (
        10000 ** (torch.arange(0, c.head_dim, 2, device=d, dtype=torch.float32) / c.head_dim)
    )
    freqs = torch.outer(torch.arange(c.ctx, device=d, dtype=torch.float32), inv)
    cos, sin = freqs.cos().to(bf), freqs.sin().to(bf)
    tokens = torch.zeros(max_bs, device=d, dtype=torch.int64)
    pos = torch.zeros(1, device=d, dtype=torch.int64)

    def rms(x: Any, weight: Any) -> Any:
        return F.rms_norm(x, (c.hidden,), weight, eps=1e-6)

    def rope(x: Any, cs: Any, sn: Any) -> Any:
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack((x1 * cs - x2 * sn, x1 * sn + x2 * cs), dim=-1).flatten(-2)

    def step(tok: Any, p: Any) -> Any:
        bs = tok.shape[0]
        h = embed[tok]
        cs, sn = cos[p].view(1, 1, 1, -1), sin[p].view(1, 1, 1, -1)
        for L in layers_w:
            x = rms(h, L["ln1"])
            qkv = x @ L["qkv"].T
            q, k, v = qkv.split(
                [c.heads * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim], -1
            )
            q = rope(q.view(bs, 1, c.heads, c.head_dim).transpose(1, 2), cs, sn)
            k = rope(k.view(bs, 1, c.kv_heads, c.head_dim).transpose(1, 2), cs, sn)
            v = v.view(bs, 1, c.kv_heads, c.head_dim).transpose(1, 2)
            kc, vc = L["k_cache"][:bs], L["v_cache"][:bs]
            kc.index_copy_(2, p, k)
            vc.index_copy_(2, p, v)
            # cuDNN's fused attention is not run-to-run deterministic on H100 (torch only
            # warns about it): without this, no two executions, native ones included, agree.
            with sdpa_kernel(_DETERMINISTIC_SDPA):
                a = F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)
            h = h + a.transpose(1, 2).reshape(bs, c.heads * c.head_dim) @ L["o"].T
            x = rms(h, L["ln2"])
            g, u = (x @ L["gate_up"].T).chunk(2, -1)
            h = h + (F.silu(g) * u) @ L["down"].T
        return rms(h, ln_f) @ lm_head.T

    pristine: dict[int, list[Any]] = {}

    def refill(seed: int) -> None:
        # Every piece of mutable state, the KV cache included: each step writes into it, so
        # comparisons start from the same state whatever ran before (warmups, other sizes).
        # Random values are drawn once per seed and copied in after that (drawing 17 GB of
        # them for every comparison dominated the benchmark).
        if seed not in pristine:
            gen = torch.Generator(device=d).manual_seed(seed)
            state = [torch.randint(0, c.vocab, (max_bs,), generator=gen, device=d)]
            for L in layers_w:
                for key in ("k_cache", "v_cache"):
                    state.append(torch.randn(L[key].shape, generator=gen, device=d, dtype=bf))
            pristine[seed] = state
        saved = iter(pristine[seed])
        tokens.copy_(next(saved))
        pos.fill_(seed % c.ctx)
        for L in layers_w:
            for key in ("k_cache", "v_cache"):
                L[key].copy_(next(saved))

    graphs = [
        GraphSpec(f"decode_bs{bs}", step, (tokens[:bs], pos)) for bs in sorted(sizes, reverse=True)
    ]
    return Workload("decode", graphs, refill, warmup=1, extras={"sizes": sizes, "layers": c.layers})
