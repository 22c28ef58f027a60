"""Benchmark and acceptance record: kiln's NVSHMEM test kernel on one GPU, one PE
(kiln_workloads.nvshmem_graph). Builds the kernel, then runs three fresh processes under
`kiln run --policy strict`: SAVE, LOAD, and a LOAD whose program never reports NVSHMEM
bootstrapped (kiln must refuse it).

    python bench/nvshmem.py --out-dir bench/results [--work-dir DIR]

Writes <out-dir>/nvshmem-<device>-<date>.json: the device, driver, commit (KILN_COMMIT),
date, NVSHMEM's version, `bit_exact` (LOAD's restored graph equals its eager run and SAVE's
replay, output tensor and heap bytes), `reinit_refused_when_skipped` (the LOAD without the
report stopped with kiln's RestoreError naming NVSHMEM before any replay), the refusal's
message, and raw timings (each process's wall time and the program's own steps). Prints
the result, and each failing process's output. Exit status 0 when both hold, else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _nvidia_smi(field: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else "unknown"


def _timed(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    print("bench/nvshmem:", " ".join(argv), file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc, time.perf_counter() - t


def _program(
    mode: str, archive: Path, out: Path, build_dir: Path, arch: str, skip_report: bool
) -> dict[str, Any]:
    from kiln_workloads.nvshmem_graph import kiln_run

    argv, env = kiln_run(mode, archive, out, build_dir, arch, skip_report=skip_report)
    proc, seconds = _timed(argv, env)
    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {"ok": False}
    result["process_seconds"] = seconds
    result["rc"] = proc.returncode
    if not result.get("ok"):
        result["stderr_tail"] = proc.stderr[-6000:]
        result["stdout_tail"] = proc.stdout[-2000:]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--work-dir", type=Path, default=None, help="archive and build (default: temp)")
    args = p.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="kiln-nvshmem-"))
    work.mkdir(parents=True, exist_ok=True)
    build_dir, archive, out = work / "build", work / "archive", work / "result.json"

    build_proc, build_seconds = _timed(
        [sys.executable, "-m", "kiln_workloads.nvshmem_build", "--build-dir", str(build_dir)],
        dict(os.environ),
    )
    lines = build_proc.stdout.strip().splitlines()
    built = json.loads(lines[-1]) if lines else {"ok": False, "message": "no output"}
    runs: dict[str, dict[str, Any]] = {}
    if built.get("ok"):
        arch = str(built["arch"])
        runs["save"] = _program("save", archive, out, build_dir, arch, False)
        if runs["save"].get("ok"):
            runs["load"] = _program("load", archive, out, build_dir, arch, False)
            runs["load_without_bootstrap_report"] = _program(
                "load", archive, out, build_dir, arch, True
            )
    else:
        print(built.get("message"), build_proc.stderr[-6000:], sep="\n", file=sys.stderr)

    load = runs.get("load", {})
    refused = runs.get("load_without_bootstrap_report", {})
    bit_exact = bool(
        load.get("ok") and load.get("bit_exact_vs_native") and load.get("bit_exact_vs_save")
    )
    reinit_refused = bool(
        refused
        and not refused.get("ok")
        and refused.get("error") == "RestoreError"
        and "NVSHMEM" in refused.get("message", "")
        and refused.get("step") == "capture_graph"
    )
    device = runs.get("save", {}).get("device_name") or _nvidia_smi("name")
    date = dt.date.today().isoformat()
    keep = ("ok", "mode", "step", "error", "message", "exit_code", "rc", "report", "pes",
            "heap", "restored", "restored_output_at_own_out", "bit_exact_vs_native",
            "bit_exact_vs_save", "graph_wrote_outputs", "digests", "first_replay_seconds",
            "timings", "process_seconds", "kiln_stage", "nvshmem_env")  # fmt: skip
    result = {
        "benchmark": "nvshmem",
        "device": device,
        "driver_version": _nvidia_smi("driver_version"),
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": date,
        "nvshmem_version": built.get("nvshmem_version"),
        "arch": built.get("arch"),
        "pes": 1,
        "bit_exact": bit_exact,
        "reinit_refused_when_skipped": reinit_refused,
        "refusal": {k: refused.get(k) for k in ("error", "message", "kiln_stage")},
        "timings_s": {
            "build_process": build_seconds,
            "build_cached": built.get("cached"),
            **{f"{k}_process": v.get("process_seconds") for k, v in runs.items()},
            **{f"{k}_steps": v.get("timings") for k, v in runs.items()},
            "load_first_replay": load.get("first_replay_seconds"),
        },
        "runs": {k: {f: v[f] for f in keep if f in v} for k, v in runs.items()},
    }
    for name, run in runs.items():
        if not run.get("ok") and name != "load_without_bootstrap_report":
            print(
                f"--- {name} failed ---\n{json.dumps(run, indent=1, default=str)[-12000:]}",
                file=sys.stderr,
            )
    if refused and not reinit_refused:
        shown = json.dumps(refused, indent=1, default=str)[-12000:]
        print(f"--- refusal not as expected ---\n{shown}", file=sys.stderr)
    path = args.out_dir / f"nvshmem-{device.replace(' ', '-')}-{date}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        json.dumps({k: result[k] for k in ("device", "bit_exact", "reinit_refused_when_skipped")})
    )
    print(f"wrote {path}")
    return 0 if bit_exact and reinit_refused else 1


if __name__ == "__main__":
    sys.exit(main())
