"""Run one workload in one mode, in this (fresh) process, and write a JSON result.

    python -m kiln_workloads.run --workload decode --mode save --archive DIR --out save.json
    python -m kiln_workloads.run --workload decode --mode load --archive DIR --out load.json

save: open the region, build the workload, warm up and capture every graph (timed, as
engines do), write DIR/graphs.kiln and the native replay's outputs on fresh inputs
(DIR/reference.pt) for comparison. load: open the region, build the workload the same way,
restore (timed: archive open to every graph replayable), refill the same fresh inputs,
replay each restored graph and compare its outputs bit for bit with the SAVE process's
native replay and with eager execution here. native: no kiln at all (for the inert
interposer check). Injected faults (--inject) make LOAD fail in a specific way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

SEED = 1234

# Bit-exact comparisons need kernels that are deterministic run to run (no atomics in
# reductions): set before torch initialises cuBLAS.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _deterministic() -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)


def _outputs(out: Any) -> list[Any]:
    return [out] if not isinstance(out, (list, tuple)) else list(out)


def _compare(a: list[Any], b: list[Any]) -> dict[str, Any]:
    import torch

    exact = len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    diff = 0.0
    if not exact and len(a) == len(b):
        diff = max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))
    return {"bit_exact": exact, "max_abs_diff": diff}


def _device_facts() -> dict[str, Any]:
    import torch
    from kiln.native import native

    return {
        "device_name": torch.cuda.get_device_name(0),
        "driver_version": int(native().driver_version()) if native().driver_available() else None,
        "torch": torch.__version__,
    }


def run_save(args: argparse.Namespace) -> dict[str, Any]:
    import kiln
    import torch

    from kiln_workloads import build

    t_start = time.perf_counter()
    _deterministic()
    region = kiln.Region().open()
    wl = build(args.workload)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with kiln.CaptureSession(region) as session:
        for g in wl.graphs:
            session.capture(g.name, g.fn, g.inputs, warmup=wl.warmup)
    torch.cuda.synchronize()
    capture_s = time.perf_counter() - t0
    report = kiln.save(
        Path(args.archive) / "graphs.kiln",
        session,
        recipe={"kind": "workload", "workload": args.workload},
    )

    # Reference outputs on fresh inputs, each execution from the same state: the native
    # graph's, and eager execution's (which tells whether graph == eager natively).
    reference = {}
    specs = {g.name: g for g in wl.graphs}
    native_eq_eager = {}
    for cg in session.graphs:
        wl.refill(SEED)
        cg.replay()
        torch.cuda.synchronize()
        graph_out = [t.detach().clone() for t in cg.outputs]
        wl.refill(SEED)
        cg.replay()
        torch.cuda.synchronize()
        again = [t.detach().clone() for t in cg.outputs]
        wl.refill(SEED)
        eager_out = [t.clone() for t in _outputs(specs[cg.name].fn(*specs[cg.name].inputs))]
        native_eq_eager[cg.name] = _compare(graph_out, eager_out)["bit_exact"]
        reference[cg.name] = {
            "graph": [t.cpu() for t in graph_out],
            "eager": [t.cpu() for t in eager_out],
            "native_eq_eager": native_eq_eager[cg.name],
            "native_replay_deterministic": _compare(graph_out, again)["bit_exact"],
        }
    torch.save(reference, Path(args.archive) / "reference.pt")
    return {
        "mode": "save",
        "workload": args.workload,
        "graphs": len(session.graphs),
        "nodes": sum(g.desc.node_count for g in session.graphs),
        "capture_seconds": capture_s,
        "save_seconds": report.seconds,
        "archive_bytes": report.bytes_written,
        "binary_count": report.binaries,
        "binary_bytes": report.binary_bytes,
        "binaries_pruned": report.extras["binaries_pruned"],
        "binary_bytes_unpruned": report.extras["binary_bytes_unpruned"],
        "graph_bytes": report.graph_bytes,
        "param_bytes": sum(g.desc.param_bytes for g in session.graphs),
        "native_graph_eq_eager": native_eq_eager,
        "process_seconds": time.perf_counter() - t_start,
        **_device_facts(),
    }


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    import kiln
    import torch

    from kiln_workloads import build

    t_start = time.perf_counter()
    _deterministic()
    region = kiln.Region().open()
    if args.inject == "drift":
        extra = torch.empty(1 << 20, device="cuda")  # an allocation SAVE did not make
        del extra
    wl = build(args.workload)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    restored = kiln.load(Path(args.archive) / "graphs.kiln", region)
    torch.cuda.synchronize()
    restore_s = time.perf_counter() - t0

    reference = torch.load(Path(args.archive) / "reference.pt")
    results = {}
    for g in wl.graphs:
        r = restored[g.name]
        aliased = [a.data_ptr() for a in r.inputs] == [b.data_ptr() for b in g.inputs]
        wl.refill(SEED)
        t1 = time.perf_counter()
        r.replay()
        torch.cuda.synchronize()
        first_replay = time.perf_counter() - t1
        got = [t.clone() for t in r.outputs]
        # Through the group template, switched here from whichever member it held before.
        wl.refill(SEED)
        r.replay_through_template()
        torch.cuda.synchronize()
        via_template = [t.clone() for t in r.outputs]
        wl.refill(SEED)
        eager = [t.clone() for t in _outputs(g.fn(*g.inputs))]
        torch.cuda.synchronize()
        ref = reference[g.name]
        vs_eager = _compare(got, eager)
        # torch.compile may pick other kernels in another process (runtime autotuning): eager
        # is a valid reference only where it reproduces SAVE's eager output.
        eager_reproducible = _compare([t.cpu() for t in eager], ref["eager"])["bit_exact"]
        results[g.name] = {
            "group": r.group,
            "inputs_aliased": aliased,
            "first_replay_seconds": first_replay,
            "vs_save_native": _compare([t.cpu() for t in got], ref["graph"]),
            "template_vs_save_native": _compare([t.cpu() for t in via_template], ref["graph"]),
            "vs_eager": vs_eager,
            # Eager can only be matched where the native graph matched eager at SAVE.
            "native_graph_eq_eager_at_save": ref["native_eq_eager"],
            "eager_reproducible": eager_reproducible,
            "native_replay_deterministic": ref["native_replay_deterministic"],
            "eager_check_ok": vs_eager["bit_exact"]
            or not ref["native_eq_eager"]
            or not eager_reproducible,
        }
    t2 = time.perf_counter()
    restored.finish()
    dedicated_wait = time.perf_counter() - t2
    for g in wl.graphs:  # every graph on its own executable now
        wl.refill(SEED)
        restored[g.name].replay()
        torch.cuda.synchronize()
        own = [t.cpu() for t in restored[g.name].outputs]
        results[g.name]["dedicated_vs_save_native"] = _compare(own, reference[g.name]["graph"])
    replay_bench = _bench_replays(wl, restored, args.bench_replays) if args.bench_replays else None
    return {
        "mode": "load",
        "workload": args.workload,
        "restore_seconds": restore_s,
        "restore_stages": restored.timings,
        "restore_binary_threads": restored.kernels.loader_threads,
        "graphs": results,
        "groups": restored.group_count,
        "templates": restored.template_count,
        "dedicated_wait_seconds": dedicated_wait,
        # Every build's timings once the own executables exist (dedicated_* included).
        "build_timings_after_finish": restored.native_timings(),
        "replay_bench": replay_bench,
        "all_bit_exact_vs_save_native": all(
            r[k]["bit_exact"]
            for r in results.values()
            for k in ("vs_save_native", "template_vs_save_native", "dedicated_vs_save_native")
        ),
        "all_bit_exact_vs_eager": all(r["vs_eager"]["bit_exact"] for r in results.values()),
        "all_eager_checks_ok": all(r["eager_check_ok"] for r in results.values()),
        "failing_graphs": sorted(
            n for n, r in results.items() if not r["vs_save_native"]["bit_exact"]
        ),
        "all_inputs_aliased": all(r["inputs_aliased"] for r in results.values()),
        "process_seconds": time.perf_counter() - t_start,
        **_device_facts(),
    }


def _bench_replays(wl: Any, restored: Any, replays: int) -> dict[str, Any]:
    """Steady-state replay time per graph: restored (own executable) against the same graph
    captured natively in this process, interleaved, median of `replays` each (CUDA events);
    plus the template path for a few graphs (replays after a switch, without switching)."""
    import statistics

    import torch

    native_graphs = {}
    for g in wl.graphs:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            g.fn(*g.inputs)
        torch.cuda.current_stream().wait_stream(side)
        cg = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cg):
            g.fn(*g.inputs)
        native_graphs[g.name] = cg
    torch.cuda.synchronize()

    def timed(pairs: list[Any], fn: Any) -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))

    out: dict[str, Any] = {}
    sample = {g.name for g in wl.graphs[:: max(1, len(wl.graphs) // 6)]}
    for g in wl.graphs:
        r, cg = restored[g.name], native_graphs[g.name]
        r.replay(), cg.replay()  # warm
        nat: list[Any] = []
        res: list[Any] = []
        for k in range(replays):
            order = (
                ((nat, cg.replay), (res, r.replay))
                if k % 2 == 0
                else ((res, r.replay), (nat, cg.replay))
            )
            for pairs, fn in order:
                timed(pairs, fn)
        tpl: list[Any] = []
        if g.name in sample:
            r.replay_through_template()  # switch once, then measure replays of the switched template
            for _ in range(max(50, replays // 4)):
                timed(tpl, r.replay_through_template)
        torch.cuda.synchronize()
        med = {
            k: statistics.median(s.elapsed_time(e) for s, e in v)
            for k, v in (("native", nat), ("restored", res))
        }
        out[g.name] = {
            "native_ms": med["native"],
            "restored_ms": med["restored"],
            "restored_over_native": med["restored"] / med["native"],
            "template_ms": statistics.median(s.elapsed_time(e) for s, e in tpl) if tpl else None,
            "replays": replays,
        }
    return out


def run_native(args: argparse.Namespace) -> dict[str, Any]:
    """No kiln: eager outputs and a natively captured graph's outputs, saved for comparison."""
    import torch

    from kiln_workloads import build

    _deterministic()
    wl = build(args.workload)
    wl.refill(SEED)
    out: dict[str, Any] = {}
    for g in wl.graphs:
        eager = [t.clone().cpu() for t in _outputs(g.fn(*g.inputs))]
        graph = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            g.fn(*g.inputs)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(graph):
            res = _outputs(g.fn(*g.inputs))
        graph.replay()
        torch.cuda.synchronize()
        out[g.name] = {"eager": eager, "graph": [t.clone().cpu() for t in res]}
    torch.save(out, Path(args.archive) / f"native-{os.getpid()}.pt")
    return {"mode": "native", "workload": args.workload, "file": f"native-{os.getpid()}.pt"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workload", required=True)
    p.add_argument("--mode", choices=["save", "load", "native"], required=True)
    p.add_argument(
        "--archive", required=True, help="directory for graphs.kiln and reference outputs"
    )
    p.add_argument("--inject", choices=["none", "drift"], default="none")
    p.add_argument("--out", help="write the JSON result here (default: stdout)")
    p.add_argument(
        "--bench-replays",
        type=int,
        default=0,
        help="load: also time this many interleaved replays per graph, restored vs native",
    )
    args = p.parse_args(argv)
    Path(args.archive).mkdir(parents=True, exist_ok=True)
    result: dict[str, Any]
    try:
        result = {"save": run_save, "load": run_load, "native": run_native}[args.mode](args)
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 (reported to the parent test as data: class and message)
        result = {"ok": False, "mode": args.mode, "error_class": type(e).__name__, "error": str(e)}
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
