"""Benchmark: capture the Llama-3-8B-shaped decode set natively (warmup + capture, as
engines do) in one process, restore it in a fresh process, and record both times.

    python bench/restore.py [--workload decode_vllm_sizes] [--replays 200] [--out-dir bench/results]

Writes bench/results/restore-<device>-<date>.json: capture seconds, restore seconds (archive
open to every graph replayable) with restore_stages (kiln.load's timings: the stages as
the caller saw them plus the native breakdown, `<category>_sum` / `_wall` / `_count`, see
RestoredSet.native_timings), their ratio, the first replay of each graph, steady-state
replay of restored against natively captured graphs (median of interleaved replays, CUDA
events), topology groups, archive bytes against kernel binary plus parameter bytes, and the
bit-exactness results. With --stage restore, restore-stages-<device>-<date>.json holds the
restore part only; --stage reload runs one more LOAD process on a kept archive (to compare
settings such as KILN_TEMPLATE_GROUPS or KILN_BINARY_THREADS; --label names its file). A
benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(workload: str, mode: str, archive: Path, *extra: str) -> dict:
    from kiln_workloads.fresh import run_workload

    result, proc = run_workload(workload, mode, archive, *extra, timeout=3600)
    if result is None:
        raise SystemExit(f"{mode} wrote no result:\n{proc.stderr[-4000:]}")
    if not result.get("ok"):
        raise SystemExit(f"{mode} failed: {result}")
    return result


def _nvidia_driver() -> str:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        out.stdout.strip().splitlines()[0]
        if out.returncode == 0 and out.stdout.strip()
        else "unknown"
    )


def _write_restore_stages(args: argparse.Namespace, save: dict, load: dict) -> None:
    """The restore stage's own result file: what a run limited to SAVE and LOAD can report
    (no replay benchmark)."""
    device = save["device_name"].replace(" ", "-")
    date = dt.date.today().isoformat()
    result = {
        "benchmark": "restore-stages",
        "workload": args.workload,
        "device": save["device_name"],
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": date,
        "graphs": save["graphs"],
        "binary_count": save["binary_count"],
        "binary_bytes": save["binary_bytes"],
        "binaries_pruned": save.get("binaries_pruned"),
        "binary_bytes_unpruned": save.get("binary_bytes_unpruned"),
        "capture_seconds": save["capture_seconds"],
        "restore_seconds": load["restore_seconds"],
        "ratio_capture_over_restore": save["capture_seconds"] / load["restore_seconds"],
        "restore_stages": load["restore_stages"],
        "restore_binary_threads": load.get("restore_binary_threads"),
        "groups": load["groups"],
        "templates": load["templates"],
        "template_groups_env": os.environ.get("KILN_TEMPLATE_GROUPS", "0"),
        "dedicated_ready_after_restore_seconds": load["dedicated_wait_seconds"],
        "build_timings_after_finish": load.get("build_timings_after_finish"),
        "bit_exact_vs_save_native": load["all_bit_exact_vs_save_native"],
    }
    label = f"-{args.label}" if args.label else ""
    out = Path(args.out_dir) / f"restore-stages-{device}-{date}{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> int:
    # The decode set is measured through merged templates (one template for its 20 groups),
    # unless the caller sets KILN_TEMPLATE_GROUPS; kiln.load's default is one per group.
    os.environ.setdefault("KILN_TEMPLATE_GROUPS", "0")
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="decode_vllm_sizes")
    p.add_argument(
        "--replays", type=int, default=200, help="interleaved replays per graph and kind"
    )
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--archive-dir", help="keep the archive and partial results here")
    p.add_argument(
        "--stage",
        choices=["all", "restore", "reload", "replay"],
        default="all",
        help="restore: SAVE and LOAD processes only; reload: one more LOAD process on the "
        "kept archive (restore part only); replay: a further LOAD process timing replays on "
        "the kept archive, then the result file (stages can run as separate invocations)",
    )
    p.add_argument("--label", help="suffix of the restore-stages result file name")
    p.add_argument(
        "--binary-threads",
        type=int,
        help="kernel binary loader threads in the LOAD processes (KILN_BINARY_THREADS; "
        "default: kiln's, 0 loads them before decoding)",
    )
    args = p.parse_args()
    if args.binary_threads is not None:
        os.environ["KILN_BINARY_THREADS"] = str(args.binary_threads)  # inherited by LOAD
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(args.archive_dir or tmp)
        archive.mkdir(parents=True, exist_ok=True)
        if args.stage in ("all", "restore"):
            save = run(args.workload, "save", archive)
            load = run(args.workload, "load", archive)
            (archive / "bench-save.json").write_text(json.dumps(save))
            (archive / "bench-load.json").write_text(json.dumps(load))
            print(
                json.dumps(
                    {
                        k: load[k]
                        for k in (
                            "restore_seconds",
                            "restore_stages",
                            "groups",
                            "templates",
                            "all_bit_exact_vs_save_native",
                        )
                    },
                    indent=1,
                )
            )
            print(
                json.dumps(
                    {
                        k: save[k]
                        for k in (
                            "capture_seconds",
                            "archive_bytes",
                            "binary_bytes",
                            "param_bytes",
                            "graph_bytes",
                        )
                    },
                    indent=1,
                )
            )
            if args.stage == "restore":
                _write_restore_stages(args, save, load)
                return 0
        save = json.loads((archive / "bench-save.json").read_text())
        if args.stage == "reload":
            load = run(args.workload, "load", archive)
            print(json.dumps({k: load[k] for k in ("restore_seconds", "groups", "templates")}))
            _write_restore_stages(args, save, load)
            return 0
        load = json.loads((archive / "bench-load.json").read_text())
        load["replay_bench"] = run(
            args.workload, "load", archive, "--bench-replays", str(args.replays)
        )["replay_bench"]
    device = save["device_name"].replace(" ", "-")
    date = dt.date.today().isoformat()
    bench = load["replay_bench"]
    ratios = {k: v["restored_over_native"] for k, v in bench.items()}
    template = {
        k: v["template_ms"] / v["restored_ms"] for k, v in bench.items() if v["template_ms"]
    }
    payload = save["binary_bytes"] + save["param_bytes"]
    result = {
        "benchmark": "restore",
        "workload": args.workload,
        "device": save["device_name"],
        "driver_version": _nvidia_driver(),
        "cuda_driver_api_version": save["driver_version"],
        "torch": save["torch"],
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": date,
        "graphs": save["graphs"],
        "nodes": save["nodes"],
        "capture_seconds": save["capture_seconds"],
        "restore_seconds": load["restore_seconds"],
        "restore_stages": load["restore_stages"],
        "ratio_capture_over_restore": save["capture_seconds"] / load["restore_seconds"],
        "archive_bytes": save["archive_bytes"],
        "binary_bytes": save["binary_bytes"],
        "binaries_pruned": save.get("binaries_pruned"),
        "binary_bytes_unpruned": save.get("binary_bytes_unpruned"),
        "graph_bytes": save["graph_bytes"],
        "binary_count": save["binary_count"],
        "param_bytes": save["param_bytes"],
        "archive_over_binaries_plus_params": save["archive_bytes"] / payload,
        "groups": load["groups"],
        "templates": load["templates"],
        "template_groups_env": os.environ.get("KILN_TEMPLATE_GROUPS", "0"),
        "group_of_graph": {k: v["group"] for k, v in load["graphs"].items()},
        "dedicated_ready_after_restore_seconds": load["dedicated_wait_seconds"],
        "replay": bench,
        "replay_restored_over_native_max": max(ratios.values()),
        "replay_restored_over_native_median": sorted(ratios.values())[len(ratios) // 2],
        "replay_template_over_own_executable": template,
        "targets": {
            "restore_50x_faster_than_capture": save["capture_seconds"] / load["restore_seconds"]
            >= 50,
            "all_replayable_within_150ms": load["restore_seconds"] <= 0.150,
            "replay_within_1pct_of_native_every_graph": max(ratios.values()) <= 1.01,
            "archive_at_most_1_5x_binaries_plus_params": save["archive_bytes"] <= 1.5 * payload,
        },
        "bit_exact_vs_save_native": load["all_bit_exact_vs_save_native"],
        "bit_exact_vs_eager": load["all_bit_exact_vs_eager"],
        "first_replay_seconds": {k: v["first_replay_seconds"] for k, v in load["graphs"].items()},
        "save_process_seconds": save["process_seconds"],
        "load_process_seconds": load["process_seconds"],
    }
    out = Path(args.out_dir) / f"restore-{device}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "device",
                    "graphs",
                    "capture_seconds",
                    "restore_seconds",
                    "ratio_capture_over_restore",
                    "restore_stages",
                    "groups",
                    "templates",
                    "archive_bytes",
                    "archive_over_binaries_plus_params",
                    "replay_restored_over_native_max",
                    "replay_template_over_own_executable",
                    "targets",
                    "bit_exact_vs_eager",
                    "bit_exact_vs_save_native",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
