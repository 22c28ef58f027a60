"""SGLang 0.5.16 cold start, natively and through kiln (issue 25), each start a fresh process.

    python3 bench/sglang_cold_start.py --model shared/models/qwen3-0.6b --out-dir /tmp/kiln-out

runs, one after the other, for each entry point (`engine`: a script using `sglang.Engine`;
`server`: `python -m sglang.launch_server`): a native start, a kiln SAVE start
(`kiln run --mode save -- ...`) and a kiln LOAD start (`kiln run --mode load --policy strict
-- ...`), each into its own archive directory under --out-dir.

- engine: the child times `import sglang`, `Engine()` and the scheduler's stages (kiln-sglang
  writes them to KILN_SGLANG_STAGE_TIMES in every mode, native included: its hooks then only
  time SGLang), then serves from token ids: one first request (1 token out, its latency),
  16 prompts x 64 tokens greedy (tokens kept for comparison; decode throughput over 5
  repeats, median).
- server: the parent starts the server and times it to the first successful `/generate`
  (token ids, 8 tokens out, greedy), with SGLang's own warm-up request left on.

Native runs with kiln's pins (decode backend full, prefill graphs off, autotune off) so that
the comparison is like for like; `native-defaults` runs SGLang's defaults (breakable prefill
graphs). The parent writes `sglang-<date>.json` with every child's record and whether each
mode's greedy tokens equal native's. Nothing here has run on a GPU yet.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = ("native", "save", "load")
PROMPTS = [[10 + i, 11 + i, 12 + i, 13 + i] for i in range(16)]
# The same settings in every mode: kiln's pins, given explicitly (native runs without kiln).
PINNED = {
    "cuda_graph_backend_decode": "full",
    "cuda_graph_backend_prefill": "disabled",
    "disable_flashinfer_autotune": True,
}


def engine_kwargs(args: argparse.Namespace, defaults: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_path": args.model,
        "load_format": args.load_format,
        "skip_tokenizer_init": True,
        "mem_fraction_static": args.mem_fraction_static,
        "log_level": "info",
    }
    return kwargs if defaults else {**kwargs, **PINNED}


# --- child: one start, in this process ------------------------------------------------------


def worker(args: argparse.Namespace) -> int:
    record: dict[str, Any] = {"mode": os.environ.get("KILN_MODE", "native"), "pid": os.getpid()}
    t0 = time.perf_counter()
    import sglang

    record["import_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    engine = sglang.Engine(**engine_kwargs(args, args.defaults))
    record["engine_s"] = time.perf_counter() - t1
    sampling = {"temperature": 0.0, "max_new_tokens": 1}
    t2 = time.perf_counter()
    engine.generate(input_ids=[PROMPTS[0]], sampling_params=sampling)
    record["first_request_s"] = time.perf_counter() - t2
    greedy = {"temperature": 0.0, "max_new_tokens": args.decode_tokens, "ignore_eos": True}
    outputs = engine.generate(input_ids=PROMPTS, sampling_params=greedy)
    record["tokens"] = [o.get("output_ids") for o in outputs]
    seconds = []
    for _ in range(5):
        t3 = time.perf_counter()
        engine.generate(input_ids=PROMPTS, sampling_params=greedy)
        seconds.append(time.perf_counter() - t3)
    record["decode_tokens_per_s"] = len(PROMPTS) * args.decode_tokens / statistics.median(seconds)
    stage_file = os.environ.get("KILN_SGLANG_STAGE_TIMES", "").replace("{rank}", "0")
    if stage_file and os.path.exists(stage_file):
        record["scheduler"] = json.loads(Path(stage_file).read_text())
    engine.shutdown()
    Path(args.out).write_text(json.dumps(record, indent=1))
    return 0


# --- parent: fresh processes ----------------------------------------------------------------


def kiln_prefix(mode: str, archive: Path) -> list[str]:
    if mode.startswith("native"):
        return []
    policy = ["--policy", "strict"] if mode == "load" else []
    return [sys.executable, "-m", "kiln", "run", "--mode", mode, *policy, "--archive", str(archive), "--"]  # fmt: skip


def run_engine(args: argparse.Namespace, mode: str, out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"engine-{mode}.json"
    env = {**os.environ, "KILN_SGLANG_STAGE_TIMES": str(out_dir / f"engine-{mode}.stages.json")}
    cmd = kiln_prefix(mode, out_dir / "archive-engine") + [
        sys.executable, __file__, "--worker", "--model", args.model, "--out", str(out),
        "--load-format", args.load_format, "--decode-tokens", str(args.decode_tokens),
        "--mem-fraction-static", str(args.mem_fraction_static),
    ] + (["--defaults"] if mode == "native-defaults" else [])  # fmt: skip
    t0 = time.perf_counter()
    with open(out_dir / f"engine-{mode}.log", "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    record: dict[str, Any] = {"rc": proc.returncode, "wall_s": time.perf_counter() - t0}
    if proc.returncode == 0 and out.exists():
        record.update(json.loads(out.read_text()))
    return record


def _generate(port: int) -> bool:
    body = json.dumps(
        {"input_ids": PROMPTS[0], "sampling_params": {"temperature": 0, "max_new_tokens": 8}}
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/generate", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run_server(args: argparse.Namespace, mode: str, out_dir: Path) -> dict[str, Any]:
    flags = [f"--{k.replace('_', '-')}" for k, v in PINNED.items() if v is True]
    flags += [f"--{k.replace('_', '-')}={v}" for k, v in PINNED.items() if not isinstance(v, bool)]
    cmd = kiln_prefix(mode, out_dir / "archive-server") + [
        sys.executable, "-m", "sglang.launch_server", "--model-path", args.model,
        "--load-format", args.load_format, "--skip-tokenizer-init", "--port", str(args.port),
        "--mem-fraction-static", str(args.mem_fraction_static),
    ] + ([] if mode == "native-defaults" else flags)  # fmt: skip
    t0 = time.perf_counter()
    log = open(out_dir / f"server-{mode}.log", "w")  # noqa: SIM115 - open while it runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    record: dict[str, Any] = {}
    try:
        while time.perf_counter() - t0 < args.timeout:
            if proc.poll() is not None:
                record["rc"] = proc.returncode
                break
            if _generate(args.port):
                record["first_completion_s"] = time.perf_counter() - t0
                break
            time.sleep(0.25)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sglang_cold_start")
    parser.add_argument("--model", required=True)
    parser.add_argument("--load-format", default="dummy")
    parser.add_argument("--mem-fraction-static", type=float, default=0.8)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--entry", default="engine,server")
    parser.add_argument("--port", type=int, default=30917)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out_dir / f"sglang-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": args.model, "engine": {}, "server": {}}
    for entry in args.entry.split(","):
        for mode in args.modes.split(","):
            run = run_engine if entry == "engine" else run_server
            results[entry][mode] = run(args, mode, out_dir)
            print(entry, mode, json.dumps(results[entry][mode])[:400], flush=True)
    native = results["engine"].get("native", {}).get("tokens")
    for mode, record in results["engine"].items():
        record["tokens_equal_native"] = native is not None and record.get("tokens") == native
    path = args.out_dir / f"sglang-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
