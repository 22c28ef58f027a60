"""vLLM cold start, natively and through kiln (issue 5), each start a fresh process.

    python3 bench/vllm_cold_start.py --model bench/models/qwen3-8b --out-dir /tmp/kiln-out

runs, one after the other: a native start (`LLM()`), a kiln SAVE start
(`kiln run --mode save -- ...`) and a kiln LOAD start (`kiln run --mode load --policy
strict -- ...`). Each process times `import vllm`, `LLM()` and the worker's startup stages,
then serves the same requests from token ids: one first request (1 token out), a first-use
sequence (one request per prompt length in FIRST_USE_LENGTHS, 1 token out each, each the
first of its size since start; then the same sequence again, warm), one 64-token request,
16 prompts x 64 tokens greedy (first, then the median of 5 repeats), and 4 prefill-heavy
prompts of ~1.7k tokens (outside every captured size). The parent compares the greedy tokens
of every mode with native's and writes `vllm-<device>-<date>-<model>.json` with everything.

A mode named with a dot suffix (`native.2`, `load.2`) is another start of that mode; the
result adds, for each mode started more than once, the medians of `LLM()`, the first
request and the first-use sum (`medians_over_repeats`): single starts vary by several
seconds and ±10 ms.

Mode `load-before-ready` is a LOAD whose engine is ready only once every restored graph has
its own executable (`KILN_LOAD_BUILDS=before-ready`; every other mode runs with
`background`, kiln's default): compare its first request and its `LLM()` with `load`'s.

Mode `load-nowarmup` is a LOAD without the first-request warmup
(`KILN_VLLM_FIRST_REQUEST_WARMUP=0`): compare its first request and first-use sum with
`load`'s to see what the warmup buys.

Mode `load-merged` is a LOAD whose topology groups may share merged templates
(`KILN_TEMPLATE_GROUPS=0`; engines default to one template per group).

Mode `load-nofreeze` is a LOAD whose worker does not freeze the heap while it starts
(`KILN_VLLM_STARTUP_GC_FREEZE=0`, kiln_vllm.startup_gc): compare its `LLM()` with `load`'s.

Mode `native-eager` is a native start with `enforce_eager=True`: vLLM with nothing to
compile and no graph to capture, the least its own start does; LOAD cannot start faster
than the part of it that precedes the KV sizing (process, device, weights).

Modes `load-profile` and `native-profile` run the engine in the benchmark's own process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so that one cProfile of `LLM()` covers the engine's
whole start; it is written next to the mode's log as `<mode>.json.llm.prof.txt`. Their
`LLM()` times include the profiler's overhead: read them for where the time goes.
Mode `load-inprocess` is the same LOAD without the profiler.

Mode `load-fresh` is a LOAD on a machine that never ran the model (issue 26): `HOME`,
`XDG_CACHE_HOME`, `XDG_CONFIG_HOME` and `CUDA_CACHE_PATH` point at new empty directories,
and the cache variables kiln pins (`TRITON_CACHE_DIR`, `TORCHINDUCTOR_CACHE_DIR`,
`VLLM_CACHE_ROOT`, `FLASHINFER_WORKSPACE_BASE`) are unset, so that everything the engine
does not compile again comes from the archive (kiln installs its caches in a new directory
at every LOAD). `HF_HOME` is kept: the model is a local directory. Compare its `LLM()` with
`load`'s (`load_fresh_over_load`); the record then ends in `-fresh.json`, says how large the
archive is with and without its cache sections, and lists, per kiln mode, what its startup
report says was compiled during that start (`caches`).

Mode `save-cold` is the first SAVE on a machine: kiln pins vLLM's mega AOT artifact, a
compile cache of its own, which that start fills (as `native-cold` fills native's).

The whole sequence can be run in parts on one machine (a few modes per run, each run writing
its own record and logs archive) and the records merged with `bench/vllm_merge_calls.py`.

The native start uses kiln's worker class with kiln off: vLLM's own code path, with each
stage timed (the worker only wraps vLLM's methods).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import glob
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _vllm_common import device_facts, kiln_run

PROMPTS = 16
STEADY_REPEATS = 5
OUT_TOKENS = 64
WORKER_CLS = "kiln_vllm.worker.KilnWorker"
# Modes that are LOADs with one setting changed (see the module docstring).
_IN_PROCESS_PROFILE = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "KILN_BENCH_PROFILE_LLM": "1"}
# Every mode's worker logs its garbage collections into its stage times (kiln_vllm.worker).
GC_TIMES = {"KILN_VLLM_GC_TIMES": "1"}
#: Variables kiln pins to its own cache directory: a value set for `kiln run` is refused.
KILN_PINNED_CACHES = (
    "TRITON_CACHE_DIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "VLLM_CACHE_ROOT",
    "FLASHINFER_WORKSPACE_BASE",
)
MODE_ENV = {
    "load-nowarmup": {"KILN_VLLM_FIRST_REQUEST_WARMUP": "0"},
    "load-merged": {"KILN_TEMPLATE_GROUPS": "0"},
    "load-nofreeze": {"KILN_VLLM_STARTUP_GC_FREEZE": "0"},
    "native-eager": {"KILN_BENCH_ENFORCE_EAGER": "1"},
    "load-inprocess": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
    "load-profile": _IN_PROCESS_PROFILE,
    "native-profile": _IN_PROCESS_PROFILE,
}


LONG_PROMPTS = 4
LONG_OUT_TOKENS = 8

# One request each, in this order: every length is a prefill size not yet run since start
# (PIECEWISE graphs of different sizes, and past 512 the compiled model outside graphs). A
# single first request varied by +-15 % between processes of one mode; the sum over the
# sequence, and its difference from the warm repeat (the first-use cost), vary less.
FIRST_USE_LENGTHS = (24, 72, 136, 200, 264, 392, 504, 900)


def prompt_ids(i: int, vocab: int = 32000, length: int | None = None) -> list[int]:
    """A deterministic prompt of `length` (default 16 to 47) token ids."""
    n = 16 + (i * 5) % 32 if length is None else length
    return [100 + (i * 7919 + j * 104729) % (vocab - 100) for j in range(n)]


def long_prompts(max_model_len: int) -> list[list[int]]:
    """Prefill-heavy prompts: longer than every captured size (512), so the compiled model
    runs them outside graphs, and together longer than one scheduler step."""
    n = max_model_len - LONG_OUT_TOKENS - 100
    return [prompt_ids(1000 + i, length=n - 97 * i) for i in range(LONG_PROMPTS)]


def child(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams  # ~16 s
    from vllm.inputs import TokensPrompt

    t_import = time.perf_counter() - t0
    profile = cProfile.Profile() if os.environ.get("KILN_BENCH_PROFILE_LLM") == "1" else None
    t1 = time.perf_counter()
    if profile is not None:
        profile.enable()
    llm = LLM(
        model=args.model,
        load_format="dummy",
        skip_tokenizer_init=True,
        max_model_len=args.max_model_len,
        seed=0,
        worker_cls=WORKER_CLS,
        enable_prefix_caching=False,
        enforce_eager=os.environ.get("KILN_BENCH_ENFORCE_EAGER") == "1",
    )
    if profile is not None:
        profile.disable()
    t_llm = time.perf_counter() - t1
    if profile is not None:
        write_profile(profile, f"{os.environ['KILN_BENCH_OUT']}.llm.prof.txt", t_llm)

    def run(prompts: list[list[int]], max_tokens: int) -> tuple[float, list[list[int]]]:
        params = SamplingParams(
            temperature=0.0, max_tokens=max_tokens, ignore_eos=True, detokenize=False
        )
        start = time.perf_counter()
        outs = llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        took = time.perf_counter() - start
        return took, [list(o.outputs[0].token_ids) for o in outs]

    first, _ = run([prompt_ids(0)], 1)
    first_use = [run([prompt_ids(2000 + n, length=n)], 1)[0] for n in FIRST_USE_LENGTHS]
    first_use_warm = [run([prompt_ids(2000 + n, length=n)], 1)[0] for n in FIRST_USE_LENGTHS]
    one_64, _ = run([prompt_ids(1)], OUT_TOKENS)
    batch = [prompt_ids(i) for i in range(PROMPTS)]
    batch_first, tokens = run(batch, OUT_TOKENS)
    # A 16x64 batch of a small model takes ~0.15 s: one timing varied by +-15 % between
    # runs, so steady state is the median of several.
    repeats = [run(batch, OUT_TOKENS) for _ in range(STEADY_REPEATS)]
    batch_steady = statistics.median(t for t, _ in repeats)
    long_s, long_tokens = run(long_prompts(args.max_model_len), LONG_OUT_TOKENS)
    stage_file = os.environ.get("KILN_VLLM_STAGE_TIMES", "")
    stages: Any = None
    if stage_file and os.path.exists(stage_file.replace("{rank}", "0")):
        stages = json.loads(Path(stage_file.replace("{rank}", "0")).read_text())
    result = {
        "mode": os.environ.get("KILN_BENCH_MODE"),
        "import_vllm_s": t_import,
        "llm_init_s": t_llm,
        "worker_stages": stages,
        "first_request_1_token_s": first,
        "first_use_requests_s": first_use,
        "first_use_requests_warm_s": first_use_warm,
        "first_use_sum_s": sum(first_use),
        "first_use_cost_s": sum(first_use) - sum(first_use_warm),
        "request_64_tokens_s": one_64,
        "inter_token_s": (one_64 - first) / (OUT_TOKENS - 1),
        "batch_16x64_first_s": batch_first,
        "batch_16x64_steady_s": batch_steady,
        "batch_16x64_repeats_s": [t for t, _ in repeats],
        "decode_tokens_per_s_steady": PROMPTS * OUT_TOKENS / batch_steady,
        "tokens": tokens,
        "tokens_repeat_identical": all(t == tokens for _, t in repeats),
        "long_prompts_s": long_s,
        "long_tokens": long_tokens,
        "process_s": time.perf_counter() - t0,
    }
    Path(os.environ["KILN_BENCH_OUT"]).write_text(json.dumps(result))
    return 0


def write_profile(profile: cProfile.Profile, path: str, took: float) -> None:
    with open(path, "w") as f:
        f.write(f"LLM() took {took:.3f} s under the profiler\n")
        stats = pstats.Stats(profile, stream=f)
        stats.sort_stats("cumulative").print_stats(150)
        stats.sort_stats("tottime").print_stats(60)
    profile.dump_stats(path.removesuffix(".txt"))  # raw, for callers and callees (pstats)


def base_mode(mode: str) -> str:
    """`load.2` is a second `load` start: the part before the dot says what to run."""
    return mode.split(".", 1)[0]


def launch(mode: str, args: argparse.Namespace, archive: Path, work: Path) -> dict[str, Any]:
    out = work / f"{mode}.json"
    kind = base_mode(mode)
    stage_times = work / f"{mode}-stages-{{rank}}.json"
    # SAVE and LOAD must run the same command (it is part of the fingerprint): what differs
    # between modes travels in the environment.
    me = [sys.executable, os.path.abspath(__file__), "--child"]
    me += ["--model", args.model, "--max-model-len", str(args.max_model_len)]
    # "native-cold": the first start on a machine (fills the compile caches); "native-settle":
    # the second, which on a fresh machine still JIT-compiles vLLM's sampler Triton kernels
    # (15-17 s in warmup_kernels, seen on the H100; the third start does not); "native": the
    # baseline every ratio divides by.
    if kind.startswith("native"):
        cmd = me
    else:
        cmd = kiln_run(kind.split("-", 1)[0], str(archive), me)  # save-cold -> save
    # The same vLLM settings in every mode (kiln run pins these too); FlashInfer is not
    # installed on the bench machine.
    env = dict(
        os.environ,
        KILN_VLLM_STAGE_TIMES=str(stage_times),
        KILN_BENCH_MODE=mode,
        KILN_BENCH_OUT=str(out),
        VLLM_USE_V2_MODEL_RUNNER="1",
        VLLM_USE_FLASHINFER_SAMPLER="0",
        KILN_LOAD_BUILDS="before-ready" if kind.endswith("-before-ready") else "background",
        **GC_TIMES,
    )
    env.update(MODE_ENV.get(kind, {}))
    if kind == "load-fresh":
        env = fresh_environment(env, work / f"{mode}-home")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=args.timeout
        )
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        stdout, stderr, rc = _text(err.stdout), _text(err.stderr), -1
    wall = time.perf_counter() - t0
    (work / f"{mode}.log").write_text(stdout + "\n--- stderr ---\n" + stderr)
    if rc != 0 or not out.exists():
        return {"mode": mode, "ok": False, "returncode": rc, "log_tail": (stdout + stderr)[-6000:]}
    result: dict[str, Any] = json.loads(out.read_text())
    result["ok"] = True
    result["launch_wall_s"] = wall
    if not kind.startswith("native"):
        reports = glob.glob(str(archive / "**" / "startup-report.json"), recursive=True)
        if reports:
            result["kiln_report"] = json.loads(Path(reports[0]).read_text())
        result.update(archive_sizes(archive))
    return result


def fresh_environment(env: dict[str, str], home: Path) -> dict[str, str]:
    """``env`` as a machine that never ran the model sees it (mode `load-fresh`)."""
    fresh = {k: v for k, v in env.items() if k not in KILN_PINNED_CACHES}
    for name, sub in (
        ("HOME", "home"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("CUDA_CACHE_PATH", "cuda-cache"),
    ):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise SystemExit(f"load-fresh: {path} is not empty")
        fresh[name] = str(path)
    return fresh


def archive_sizes(archive: Path) -> dict[str, int]:
    """Bytes of the archive files (every rank), with and without their cache sections."""
    from kiln.archive import ArchiveReader
    from kiln.archive.caches import MANIFEST_SECTION, SECTION_PREFIX

    total = caches = 0
    for path in glob.glob(str(archive / "**" / "graphs.kiln"), recursive=True):
        with ArchiveReader(path, verify=False) as reader:
            total += reader.file_size
            for name in reader.names:
                if name == MANIFEST_SECTION or name.startswith(SECTION_PREFIX):
                    caches += reader.section_size(name) + 80  # and its table entry
    return {"archive_bytes_with_caches": total, "archive_bytes_without_caches": total - caches}


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def parent(args: argparse.Namespace) -> int:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kiln-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "archive"
    modes: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        modes[mode] = launch(mode, args, archive, work)
        hidden = ("tokens", "long_tokens", "kiln_report")
        summary = {k: v for k, v in modes[mode].items() if k not in hidden}
        print(json.dumps(summary, indent=1, default=str)[:4000], flush=True)
    facts = {
        **device_facts(),
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": datetime.date.today().isoformat(),
    }
    record = summarize(modes, facts, Path(args.model).name, args.max_model_len)
    write_record(record, Path(args.out_dir))
    ok = all(r.get("ok") for r in modes.values())
    return 0 if ok and all(record["tokens_identical_to_native"].values()) else 1


def summarize(
    modes: dict[str, dict[str, Any]], facts: dict[str, str], model: str, max_model_len: int
) -> dict[str, Any]:
    """The result record of one machine's starts (each mode's result as `launch` returned
    it, greedy tokens included; `facts`: device_name, driver, commit, date): token
    comparisons with `native` (else the first start that ran), ratios over `native`,
    medians over repeated modes."""
    ok = {m: r for m, r in modes.items() if r.get("ok")}
    first_ok = next(iter(ok.values()), {})
    reference = ok.get("native", first_ok)
    comparison = {
        m: r.get("tokens") == reference.get("tokens")
        and r.get("long_tokens") == reference.get("long_tokens")
        for m, r in ok.items()
    }
    ratios: dict[str, float] = {}
    if "native" in ok:
        base = ok["native"]
        for m, r in ok.items():
            if m == "native":
                continue
            ratios[f"{m}_llm_init_over_native"] = r["llm_init_s"] / base["llm_init_s"]
            ratios[f"{m}_decode_throughput_over_native"] = (
                r["decode_tokens_per_s_steady"] / base["decode_tokens_per_s_steady"]
            )
            ratios[f"{m}_first_request_over_native"] = (
                r["first_request_1_token_s"] / base["first_request_1_token_s"]
            )
            ratios[f"{m}_first_use_sum_over_native"] = (
                r["first_use_sum_s"] / base["first_use_sum_s"]
            )
    if "load" in ok and "load-fresh" in ok:
        ratios["load_fresh_over_load"] = ok["load-fresh"]["llm_init_s"] / ok["load"]["llm_init_s"]
    sized = next((r for m, r in ok.items() if "archive_bytes_with_caches" in r), {})
    repeated = medians_by_kind(ok)
    record = {
        "benchmark": "vllm_cold_start",
        **{k: facts[k] for k in FACT_KEYS},
        "model": model,
        "max_model_len": max_model_len,
        "requests": {
            "prompts": PROMPTS,
            "out_tokens": OUT_TOKENS,
            "long_prompts": [len(p) for p in long_prompts(max_model_len)],
            "long_out_tokens": LONG_OUT_TOKENS,
            "first_use_lengths": list(FIRST_USE_LENGTHS),
            "greedy": True,
        },
        "native_worker": f"{WORKER_CLS} with kiln off (vLLM's code path, stages timed)",
        "tokens_identical_to_native": comparison,
        "ratios": ratios,
        "medians_over_repeats": repeated,
        "archive_bytes_with_caches": sized.get("archive_bytes_with_caches"),
        "archive_bytes_without_caches": sized.get("archive_bytes_without_caches"),
        # What each kiln start's report says came from the archive and was compiled.
        "caches": {
            m: (r.get("kiln_report") or {}).get("caches")
            for m, r in ok.items()
            if "kiln_report" in r
        },
        "modes": {
            m: {k: v for k, v in r.items() if k not in ("tokens", "long_tokens")}
            for m, r in modes.items()
        },
    }
    return record


def write_record(record: dict[str, Any], out_dir: Path) -> Path:
    suffix = "-fresh" if "load-fresh" in record["modes"] else ""
    device = record["device_name"].replace(" ", "-")
    name = f"vllm-{device}-{record['date']}-{record['model']}{suffix}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(record, indent=1, default=str))
    print(
        json.dumps(
            {
                "tokens_identical_to_native": record["tokens_identical_to_native"],
                "ratios": record["ratios"],
            },
            indent=1,
        )
    )
    return path


FACT_KEYS = ("device_name", "driver", "commit", "date")
MEDIAN_KEYS = ("llm_init_s", "first_request_1_token_s", "first_use_sum_s")


def medians_by_kind(ok: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each mode started more than once (`load`, `load.2`, ...): the median of each
    MEDIAN_KEYS value over its starts, and how many starts that is."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for m, r in ok.items():
        kinds.setdefault(base_mode(m), []).append(r)
    return {
        kind: {"starts": len(rs), **{k: statistics.median(r[k] for r in rs) for k in MEDIAN_KEYS}}
        for kind, rs in kinds.items()
        if len(rs) > 1
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (dummy weights)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--modes", default="native,save,load")
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--work-dir", help="archive, logs and per-mode results (default: a temp dir)")
    p.add_argument("--timeout", type=int, default=420)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
