"""The demo program: a small non-engine program that goes through kiln's lifecycle the way
an engine adapter does, run under `kiln run` (and by `kiln demo`):

    kiln run --mode save --archive DIR -- python -m kiln.demo_program
    kiln run --mode load --archive DIR -- python -m kiln.demo_program

It builds a few cuBLAS matmuls (weights and static inputs, deterministic), then captures
each graph itself with torch.cuda.graph inside the driver's capture_graph (kiln records it
where the capture ends); at LOAD the driver hands back restored graphs instead. SAVE writes
each graph's outputs on fresh inputs next to the archive; LOAD compares its restored
graphs' outputs with them and with eager execution, bit for bit, and exits 1 on any
difference. Without `kiln run` it runs natively and compares nothing.

Self-contained on purpose: kiln's test and benchmark workloads (kiln_workloads, with fault
injection) are not part of the runtime package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SEED = 1234
REFERENCE = "demo-reference.pt"
WARMUP = 2

# Bit-exact comparisons need kernels that are deterministic run to run (no atomics in
# reductions): set before torch initialises cuBLAS.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _compare(a: list[Any], b: list[Any]) -> dict[str, Any]:
    import torch

    exact = len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    diff = 0.0
    if not exact and len(a) == len(b):
        diff = max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))
    return {"bit_exact": exact, "max_abs_diff": diff}


def _graphs(device: int) -> tuple[dict[str, tuple[Callable[..., Any], tuple[Any, ...]]], Any]:
    """{name: (fn, static inputs)} and a function refilling every input from a seed."""
    import torch

    torch.manual_seed(0)
    d = f"cuda:{device}"
    w = torch.randn(4096, 4096, device=d, dtype=torch.bfloat16)
    xs = [torch.randn(m, 4096, device=d, dtype=torch.bfloat16) for m in (8, 64, 256)]

    def fn(x: Any) -> Any:
        return torch.nn.functional.gelu(x @ w) @ w.T

    def refill(seed: int) -> None:
        g = torch.Generator(device=d).manual_seed(seed)
        for x in xs:
            x.copy_(torch.randn(x.shape, generator=g, device=d, dtype=x.dtype))

    return {f"matmul_m{x.shape[0]}": (fn, (x,)) for x in xs}, refill


def check_graphs(
    driver: Any,
    graphs: Mapping[str, Any],
    eager: Mapping[str, Callable[[], list[Any]]],
    refill: Callable[[int], None],
) -> dict[str, Any]:
    """After `ready`: at SAVE, each graph's outputs on fresh inputs are written next to the
    archive; at LOAD, each restored graph's outputs are compared, bit for bit, with them and
    with `eager[name]()` on the same inputs. `graphs` holds what `capture_graph` returned:
    (CUDAGraph, outputs...) at SAVE or natively, a restored graph at LOAD. Returns the
    result record; its "ok" is False when a LOAD output differs from SAVE's."""
    import torch

    from kiln.lifecycle.types import RunMode

    mode = driver.ctx.mode

    def replay_outputs(name: str) -> list[Any]:
        refill(SEED)
        graph = graphs[name]
        if isinstance(graph, tuple):  # SAVE or native: (CUDAGraph, outputs...)
            graph[0].replay()
            outs = list(graph[1:])
        else:  # LOAD: a restored graph
            graph.replay()
            outs = graph.outputs
        torch.cuda.synchronize()
        return [t.detach().clone().cpu() for t in outs]

    result: dict[str, Any] = {"mode": mode.value, "graphs": len(graphs)}
    archive_dir = driver.ctx.archive_dir
    ok = True
    if mode is RunMode.SAVE and archive_dir is not None:
        torch.save({name: replay_outputs(name) for name in graphs}, Path(archive_dir) / REFERENCE)
    elif mode is RunMode.LOAD and archive_dir is not None:
        reference = torch.load(Path(archive_dir) / REFERENCE)
        checks = {}
        for name in graphs:
            got = replay_outputs(name)
            refill(SEED)
            checks[name] = {
                "vs_save_native": _compare(got, reference[name]),
                "vs_eager": _compare(got, [t.cpu() for t in eager[name]()]),
            }
        ok = all(c["vs_save_native"]["bit_exact"] for c in checks.values())
        result["checks"] = checks
    result["ok"] = ok
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = p.parse_args(argv)

    import torch

    from kiln import lifecycle
    from kiln.graphs.capture import warm_up
    from kiln.lifecycle.types import WarmupPhase

    torch.use_deterministic_algorithms(True, warn_only=True)
    driver = lifecycle.start("kiln-demo")
    driver.device_bound(0)
    specs, refill = _graphs(0)
    driver.weights_loaded()
    driver.capture_begin(list(specs))
    pool: list[Any] = []

    def capture_one(name: str) -> Any:
        fn, inputs = specs[name]

        def capture() -> tuple[Any, ...]:
            driver.warmup(
                WarmupPhase(f"warmup/{name}", skippable_on_load=True),
                lambda: warm_up(fn, inputs, WARMUP, torch.cuda.current_device()),
            )
            cg = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cg, pool=pool[0] if pool else None):
                out = fn(*inputs)
            if not pool:
                pool.append(cg.pool())
            return (cg, out)

        return driver.capture_graph(name, capture)

    graphs = {name: capture_one(name) for name in specs}
    driver.capture_end()
    driver.region_close()
    report = driver.ready()
    eager = {
        name: (lambda fn=fn, inputs=inputs: [fn(*inputs)]) for name, (fn, inputs) in specs.items()
    }
    result = check_graphs(driver, graphs, eager, refill)
    if report is not None:
        result["report"] = report.as_dict()
    ok = bool(result["ok"])
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
