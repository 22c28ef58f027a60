"""`vllm serve` natively and under `kiln run`: seconds from launch to the first successful
completion request, each start a fresh process; then the first-use requests.

    python3 bench/vllm_serve.py --model bench/models/qwen3-0.6b --out-dir /tmp/kiln-out

Modes in order (default native-cold,native,save,load,load-fresh): the same `vllm serve`
command, bare or behind `kiln run --mode save|load --policy strict --`. `load-fresh` is a
LOAD as on a machine that never ran the model: new empty `HOME`, XDG and CUDA cache
directories, kiln's pinned cache variables unset (`vllm_cold_start.fresh_environment`), so
that everything not compiled again comes from the archive. The server gets token-id prompts
(the dummy model directories hold no tokenizer); a request succeeds when it returns HTTP 200
with generated token ids. Each kiln mode's record carries its startup report (what it
restored, and which caches came from the archive and what was still compiled).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _vllm_common import device_facts, kiln_run
from vllm_cold_start import (
    FIRST_USE_LENGTHS,  # the same sequence as `LLM()` gets
    fresh_environment,
)

PROMPT = [100 + (j * 104729) % 30000 for j in range(32)]


def serve_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,  # the `vllm` console script, without relying on it being on PATH
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        args.model,
        "--load-format",
        "dummy",
        "--skip-tokenizer-init",
        "--max-model-len",
        str(args.max_model_len),
        "--seed",
        "0",
        "--port",
        str(args.port),
    ]


def first_use_prompt(n: int) -> list[int]:
    return [100 + (n * 7919 + j * 104729) % 30000 for j in range(n)]


def complete(
    port: int, model: str, prompt: list[int] = PROMPT, max_tokens: int = 16
) -> dict[str, Any] | None:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "return_token_ids": True,
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                return None
            result: dict[str, Any] = json.loads(response.read())
            return result
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def first_use(args: argparse.Namespace) -> dict[str, Any]:
    """After the first completion, the first-use sequence through the server (time to the
    first token of each request)."""
    passes: list[list[float]] = [[], []]
    for times in passes:
        for n in FIRST_USE_LENGTHS:
            t0 = time.perf_counter()
            if complete(args.port, args.model, first_use_prompt(n), 1) is None:
                return {"first_use_failed": True}
            times.append(time.perf_counter() - t0)
    cold, warm = passes
    return {
        "first_use_requests_s": cold,
        "first_use_requests_warm_s": warm,
        "first_use_sum_s": sum(cold),
        "first_use_cost_s": sum(cold) - sum(warm),
    }


def run_mode(mode: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = serve_command(args)
    archive = work / "archive"
    if not mode.startswith("native"):  # "native-cold": a first start filling the caches
        cmd = kiln_run(mode.removesuffix("-fresh"), str(archive), cmd)
    log = open(work / f"serve-{mode}.log", "w")  # noqa: SIM115 (the server writes to it)
    env = dict(os.environ, VLLM_USE_V2_MODEL_RUNNER="1", VLLM_USE_FLASHINFER_SAMPLER="0")
    if mode == "load-fresh":
        env = fresh_environment(env, work / f"{mode}-home")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    result: dict[str, Any] = {"mode": mode, "ok": False}
    try:
        while time.perf_counter() - t0 < args.timeout:
            if proc.poll() is not None:
                result["returncode"] = proc.returncode
                break
            got = complete(args.port, args.model)
            if got is not None:
                result["launch_to_first_completion_s"] = time.perf_counter() - t0
                choice = got.get("choices", [{}])[0]
                result["token_ids"] = choice.get("token_ids")
                result["ok"] = True
                result.update(first_use(args))
                break
            time.sleep(0.25)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    if not result["ok"]:
        result["log_tail"] = (work / f"serve-{mode}.log").read_text(errors="replace")[-4000:]
    if not mode.startswith("native"):
        reports = sorted(archive.glob("**/startup-report.json"))
        if reports:
            result["kiln_report"] = json.loads(reports[0].read_text())
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--modes", default="native-cold,native,save,load,load-fresh")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--work-dir", default="/tmp/kiln-vllm-serve")
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    modes = {m: run_mode(m, args, work) for m in args.modes.split(",")}
    for m, r in modes.items():
        print(m, json.dumps({k: v for k, v in r.items() if k != "log_tail"}), flush=True)
    facts = device_facts()
    date = datetime.date.today().isoformat()
    reference = modes.get("native", {}).get("token_ids")
    record = {
        "benchmark": "vllm_serve",
        **facts,
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": date,
        "model": Path(args.model).name,
        "command": serve_command(args),
        "tokens_identical_to_native": {
            m: r.get("token_ids") == reference for m, r in modes.items()
        },
        "first_use_lengths": list(FIRST_USE_LENGTHS),
        "ratios": ratios(modes),
        "modes": modes,
    }
    suffix = "-fresh" if "load-fresh" in modes else ""
    name = f"vllm-serve-{record['device_name'].replace(' ', '-')}-{date}-{record['model']}"
    out = Path(args.out_dir) / f"{name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    return 0 if all(r["ok"] for r in modes.values()) else 1


def ratios(modes: dict[str, dict[str, Any]]) -> dict[str, float]:
    base = modes.get("native", {})
    if not base.get("ok"):
        return {}
    out: dict[str, float] = {}
    for m, r in modes.items():
        if m == "native" or not r.get("ok"):
            continue
        for key in ("launch_to_first_completion_s", "first_use_sum_s"):
            if key in r and key in base:
                out[f"{m}_{key.removesuffix('_s')}_over_native"] = r[key] / base[key]
    return out


if __name__ == "__main__":
    sys.exit(main())
