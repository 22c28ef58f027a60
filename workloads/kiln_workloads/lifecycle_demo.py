"""A small non-engine program that goes through kiln's lifecycle the way an engine adapter
does, for `kiln run`:

    kiln run --mode save --archive DIR -- python -m kiln_workloads.lifecycle_demo
    kiln run --mode load --archive DIR -- python -m kiln_workloads.lifecycle_demo

It builds a workload (weights and static inputs), then captures each graph itself with
torch.cuda.graph inside the driver's capture_graph (kiln records it where the capture
ends); at LOAD the driver hands back restored graphs instead. SAVE writes each graph's
outputs on fresh inputs next to the archive; LOAD compares its restored graphs' outputs
with them and with eager execution, bit for bit, and exits 1 on any difference. Without
`kiln run` it runs natively and compares nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kiln.demo_program import check_graphs

from kiln_workloads.run import _deterministic, _outputs


def _capture(driver: Any, wl: Any, g: Any, pool: list[Any]) -> Any:
    import torch
    from kiln.graphs.capture import warm_up
    from kiln.lifecycle.types import WarmupPhase

    def capture() -> tuple[Any, ...]:
        driver.warmup(
            WarmupPhase(f"warmup/{g.name}", skippable_on_load=True),
            lambda: warm_up(g.fn, g.inputs, wl.warmup, torch.cuda.current_device()),
        )
        cg = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cg, pool=pool[0] if pool else None):
            out = _outputs(g.fn(*g.inputs))
        if not pool:
            pool.append(cg.pool())
        return (cg, *out)

    return driver.capture_graph(g.name, capture)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workload", default="matmul")
    p.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = p.parse_args(argv)

    from kiln import lifecycle

    from kiln_workloads import build

    _deterministic()
    driver = lifecycle.start("kiln-demo")
    driver.device_bound(0)
    wl = build(args.workload)
    driver.weights_loaded()
    driver.capture_begin([g.name for g in wl.graphs])
    pool: list[Any] = []
    graphs = {g.name: _capture(driver, wl, g, pool) for g in wl.graphs}
    driver.capture_end()
    driver.region_close()
    report = driver.ready()
    eager = {g.name: (lambda g=g: _outputs(g.fn(*g.inputs))) for g in wl.graphs}
    result = check_graphs(driver, graphs, eager, wl.refill)
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
