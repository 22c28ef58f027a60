"""Two vLLM engines on one GPU, each in its own kiln region slot (issue 27).

    python3 bench/vllm_two_slots.py --model bench/models/qwen3-0.6b --out-dir /tmp/kiln-out

Engine `a` runs with KILN_REGION_SLOT=0, engine `b` with KILN_REGION_SLOT=1; each has its
own archive directory. Every phase starts both engines at once, each in a fresh process,
and waits for both:

- `native`: `LLM()` without kiln (kiln's worker class with kiln off), the reference tokens;
- `save`: `kiln run --mode save` for each engine;
- `load`: `kiln run --mode load --policy strict` for each engine;
- `faults`: two LOADs that must be refused before anything allocates: engine `a`'s archive
  started in slot 1 (where engine `b` lives), and engine `b`'s archive started with no
  KILN_REGION_SLOT at all (an engine's slot is then its rank, 0). Each must stop with
  kiln's `FingerprintMismatch` naming `region_base`, SAVE's base and the one its slot gives.

The two engines run the same command (the command is part of kiln's fingerprint, so a
LOAD with the other engine's archive differs in the region base alone); what differs
travels in the environment. Each process writes its greedy tokens, `LLM()`'s start and end
(wall clock, so the parent can show that the two starts overlapped) and its timings.

Sharing one GPU with vLLM 0.24 (read in its source, `vllm/v1/worker/gpu_worker.py` and
`vllm/v1/worker/utils.py`): at `init_device` each engine requires free memory of at least
`gpu_memory_utilization` x total (`request_memory`), so each runs with a modest utilization
(0.3 by default). Without `kv_cache_memory_bytes`, `determine_available_memory` sizes the KV
cache from the device's free memory before and after a profiling run, which counts the
other engine's allocations as this one's, and asserts that free memory did not grow ("Error
in memory profiling", raised when the other engine frees memory meanwhile). Each engine
therefore sets `kv_cache_memory_bytes`, with which vLLM skips that measurement: the KV size
no longer depends on what the other engine does meanwhile.

Native starts get their own compile-cache directories per engine, so two concurrent
compiles never write one cache; kiln's starts use the directories `kiln run` pins per
archive (a value set for them would be refused).

A machine that cuts commands off runs the phases in parts with one `--work-dir`:
`--phases native,save`, then `--phases load,faults`. Each phase's results stay in the work
directory, and every run writes the record from all phases found there:
`vllm-two-slots-<device>-<date>-<model>.json` (device, driver, KILN_COMMIT, date, raw
timings, `tokens_identical`, `archives_distinct`, the faults' messages). The exit status is
0 only once every phase ran and every check held.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _vllm_common import device_facts, kiln_run
from vllm_cold_start import KILN_PINNED_CACHES, WORKER_CLS, prompt_ids

BENCHMARK = "vllm_two_slots"
PHASES = ("native", "save", "load", "faults")
KILN_PHASES = {"save": "save", "load": "load", "faults": "load"}
#: The engines and their region slots.
ENGINES: dict[str, int] = {"a": 0, "b": 1}
REGION_SLOT = "KILN_REGION_SLOT"
PROMPTS = 8
OUT_TOKENS = 32
DEFAULT_UTILIZATION = 0.3
DEFAULT_KV_CACHE_BYTES = 2 << 30
#: Native starts compile into these, one directory per engine.
NATIVE_CACHES = ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT")
FAULT_ERROR = "FingerprintMismatch"
FAULT_FIELD = "region_base"
REPORT = "startup-report.json"  # rank 0's startup report, in its archive directory


@dataclass(frozen=True)
class Fault:
    """A LOAD of ``archive_of``'s archive in region slot ``slot`` (None: KILN_REGION_SLOT
    unset, the rank's slot) that kiln must refuse, naming the region base."""

    name: str
    archive_of: str
    slot: int | None
    slot_used: int  # the slot the process ends up in


FAULTS = (
    Fault("a-archive-in-slot-1", "a", 1, 1),
    Fault("b-archive-without-slot", "b", None, 0),
)


@dataclass(frozen=True)
class Start:
    """One process of one phase: which engine's archive, in which slot."""

    phase: str
    label: str  # the engine, or the fault's name
    archive_of: str
    slot: int | None


def starts(phase: str) -> list[Start]:
    if phase == "faults":
        return [Start(phase, f.name, f.archive_of, f.slot) for f in FAULTS]
    return [Start(phase, engine, engine, slot) for engine, slot in ENGINES.items()]


# --- the child: one engine start ------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    import torch
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    t_import = time.perf_counter() - t0
    llm_started_at = time.time()
    t1 = time.perf_counter()
    llm = LLM(
        model=args.model,
        load_format="dummy",
        skip_tokenizer_init=True,
        max_model_len=args.max_model_len,
        seed=0,
        worker_cls=WORKER_CLS,
        enable_prefix_caching=False,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_memory_bytes=args.kv_cache_bytes,
    )
    t_llm = time.perf_counter() - t1
    llm_ended_at = time.time()
    params = SamplingParams(
        temperature=0.0, max_tokens=OUT_TOKENS, ignore_eos=True, detokenize=False
    )

    def run(prompts: list[list[int]]) -> tuple[float, list[list[int]]]:
        start = time.perf_counter()
        outs = llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        return time.perf_counter() - start, [list(o.outputs[0].token_ids) for o in outs]

    first_s, _ = run([prompt_ids(0)])
    batch_s, tokens = run([prompt_ids(i) for i in range(PROMPTS)])
    result = {
        "import_vllm_s": t_import,
        "llm_init_s": t_llm,
        "llm_started_at": llm_started_at,
        "llm_ended_at": llm_ended_at,
        "first_request_s": first_s,
        "batch_s": batch_s,
        "tokens": tokens,
        "region_slot_env": os.environ.get(REGION_SLOT),
        "torch": str(torch.__version__),
        "nccl_version": nccl_version(torch),
        "process_s": time.perf_counter() - t0,
    }
    Path(os.environ["KILN_BENCH_OUT"]).write_text(json.dumps(result))
    return 0


def nccl_version(torch: Any) -> str | None:
    """The NCCL this process's PyTorch loaded, as it reports it (None if it cannot say)."""
    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):  # a fact for the record, not worth failing for
        return None
    if isinstance(version, tuple):
        return ".".join(str(part) for part in version)
    return str(version)


# --- the parent: commands, environments, phases ---------------------------------------------


def child_command(args: argparse.Namespace) -> list[str]:
    """The engine command, the same for both engines and every mode (kiln fingerprints it)."""
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--model",
        args.model,
        "--max-model-len",
        str(args.max_model_len),
        "--gpu-memory-utilization",
        repr(args.gpu_memory_utilization),
        "--kv-cache-bytes",
        str(args.kv_cache_bytes),
    ]


def archive_dir(work: Path, engine: str) -> Path:
    return work / engine / "archive"


def command_for(start: Start, args: argparse.Namespace, work: Path) -> list[str]:
    me = child_command(args)
    mode = KILN_PHASES.get(start.phase)
    if mode is None:
        return me
    return kiln_run(mode, str(archive_dir(work, start.archive_of)), me)


def environment_for(start: Start, base: Mapping[str, str], work: Path) -> dict[str, str]:
    """The process's environment: the slot (or none), its output files, vLLM's settings."""
    env = {k: v for k, v in base.items() if k != REGION_SLOT}
    run_dir = work / start.phase
    env.update(
        KILN_BENCH_OUT=str(run_dir / f"{start.label}.json"),
        KILN_VLLM_STAGE_TIMES=str(run_dir / f"{start.label}-stages-{{rank}}.json"),
        VLLM_USE_V2_MODEL_RUNNER="1",
        VLLM_USE_FLASHINFER_SAMPLER="0",
    )
    if start.slot is not None:
        env[REGION_SLOT] = str(start.slot)
    if start.phase == "native":
        for name in NATIVE_CACHES:
            path = work / start.label / "native-cache" / name.lower()
            env[name] = str(path)
    else:
        for name in KILN_PINNED_CACHES:
            env.pop(name, None)
    return env


def run_phase(phase: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the phase's processes (all at once, unless ``--sequential``), wait for each,
    and return their results by label, with the phase's wall time."""
    run_dir = work / phase
    run_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for start in starts(phase):
        (run_dir / f"{start.label}.json").unlink(missing_ok=True)
        if phase in KILN_PHASES:
            # A report left by an earlier start must never pass for this one's.
            (archive_dir(work, start.archive_of) / REPORT).unlink(missing_ok=True)
        if phase == "native":
            for name in NATIVE_CACHES:
                (work / start.label / "native-cache" / name.lower()).mkdir(
                    parents=True, exist_ok=True
                )
        log = open(run_dir / f"{start.label}.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            command_for(start, args, work),
            env=environment_for(start, os.environ, work),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        procs[start.label] = (proc, time.perf_counter())
        if args.sequential:
            results[start.label] = finish(start, proc, args.timeout, work)
    for start in starts(phase):
        if start.label not in results:
            proc, began = procs[start.label]
            left = max(1.0, args.timeout - (time.perf_counter() - began))
            results[start.label] = finish(start, proc, left, work)
    return {"phase": phase, "wall_s": time.perf_counter() - t0, "starts": results}


def finish(
    start: Start, proc: subprocess.Popen[bytes], timeout: float, work: Path
) -> dict[str, Any]:
    run_dir = work / start.phase
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this script started
        rc = proc.wait()
    text = (run_dir / f"{start.label}.log").read_text(errors="replace")
    result: dict[str, Any] = {
        "label": start.label,
        "archive_of": start.archive_of,
        "slot": start.slot,
        "returncode": rc,
        "timed_out": timed_out,
    }
    out = run_dir / f"{start.label}.json"
    if rc == 0 and out.exists():
        result.update(json.loads(out.read_text()))
        result["ok"] = True
    else:
        result["ok"] = False
        result["log_tail"] = text[-4000:]
    if start.phase != "native":
        report = read_report(archive_dir(work, start.archive_of))
        if report is not None:
            result["kiln_report"] = report
        result["kiln_lines"] = kiln_lines(text)
    return result


def read_report(archive: Path) -> dict[str, Any] | None:
    path = archive / REPORT
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def kiln_lines(text: str, limit: int = 20) -> list[str]:
    """The log's lines that kiln wrote about the start's outcome (the last ``limit``)."""
    keep = ("kiln: failed", "kiln: saved", "kiln: restored", "fingerprint mismatch")
    return [line.strip()[:2000] for line in text.splitlines() if any(k in line for k in keep)][
        -limit:
    ]


# --- the record -----------------------------------------------------------------------------


def archive_facts(archive: Path) -> dict[str, Any]:
    """Where an engine's archive is, the region base its fingerprint records, its digest."""
    from kiln.errors import ArchiveError
    from kiln.lifecycle import archive_io

    path = archive_io.archive_file(archive, 0)
    facts: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    if not path.is_file():
        return facts
    try:
        fingerprint = archive_io.read_fingerprint(path)
    except ArchiveError as err:  # recorded; the archive then counts as not distinct
        return {**facts, "exists": False, "error": str(err)}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    facts.update(
        region_base=fingerprint.get("region_base"),
        region_size=fingerprint.get("region_size"),
        bytes=path.stat().st_size,
        sha256=digest.hexdigest(),
    )
    return facts


def archives_distinct(archives: Mapping[str, Mapping[str, Any]]) -> bool:
    """Both archives exist, in different files, with different contents and bases."""
    a, b = archives.get("a", {}), archives.get("b", {})
    if not (a.get("exists") and b.get("exists")):
        return False
    if os.path.realpath(a["path"]) == os.path.realpath(b["path"]):
        return False
    bases = (a.get("region_base"), b.get("region_base"))
    if not all(type(base) is int for base in bases) or bases[0] == bases[1]:
        return False
    return bool(a.get("sha256") != b.get("sha256"))


def fault_verdict(
    fault: Fault, result: Mapping[str, Any], archives: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Whether kiln refused the fault's LOAD, and whether the refusal named the region base
    SAVE recorded and the one this start's slot gives."""
    report = result.get("kiln_report") or {}
    error = report.get("error") or {}
    message = str(error.get("message", ""))
    saved_base = archives.get(fault.archive_of, {}).get("region_base")
    slot_engine = next((e for e, s in ENGINES.items() if s == fault.slot_used), None)
    this_base = archives.get(slot_engine or "", {}).get("region_base")
    refused = result.get("returncode") not in (0, None) and report.get("outcome") == "failed"
    named = (
        refused
        and error.get("type") == FAULT_ERROR
        and f"'{FAULT_FIELD}'" in message
        and type(saved_base) is int
        and type(this_base) is int
        and str(saved_base) in message
        and str(this_base) in message
    )
    return {
        "archive_of": fault.archive_of,
        "slot": fault.slot,
        "slot_used": fault.slot_used,
        "saved_region_base": saved_base,
        "this_region_base": this_base,
        "refused": refused,
        "named": named,
        "stage": error.get("stage"),
        "error_type": error.get("type"),
        "message": message,
        "kiln_lines": result.get("kiln_lines", []),
    }


def overlap_s(results: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Seconds during which both engines were inside `LLM()` (None if either did not say)."""
    spans = []
    for engine in ENGINES:
        r = results.get(engine, {})
        began, ended = r.get("llm_started_at"), r.get("llm_ended_at")
        if not isinstance(began, (int, float)) or not isinstance(ended, (int, float)):
            return None
        spans.append((float(began), float(ended)))
    return max(0.0, min(e for _, e in spans) - max(b for b, _ in spans))


def summarize(
    phases: Mapping[str, Mapping[str, Any]],
    archives: Mapping[str, Mapping[str, Any]],
    facts: Mapping[str, str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The record of the phases found (each as `run_phase` returned it)."""

    def result(phase: str, label: str) -> Mapping[str, Any]:
        return phases.get(phase, {}).get("starts", {}).get(label, {})

    tokens_identical: dict[str, bool] = {}
    for engine in ENGINES:
        runs = [result(p, engine) for p in ("native", "save", "load")]
        tokens_identical[engine] = all(r.get("ok") and r.get("tokens") for r in runs) and all(
            r["tokens"] == runs[0]["tokens"] for r in runs
        )
    restored = {
        engine: (result("load", engine).get("kiln_report") or {}).get("outcome") == "restored"
        for engine in ENGINES
    }
    faults = {
        f.name: fault_verdict(f, result("faults", f.name), archives)
        for f in FAULTS
        if "faults" in phases
    }
    missing = [p for p in PHASES if p not in phases]
    checks = {
        "tokens_identical": all(tokens_identical.values()),
        "archives_distinct": archives_distinct(archives),
        "load_restored": all(restored.values()),
        "faults_named": bool(faults) and all(v["named"] for v in faults.values()),
    }
    nccl = next(
        (
            result(p, e).get("nccl_version")
            for p in ("native", "save", "load")
            for e in ENGINES
            if result(p, e).get("nccl_version")
        ),
        None,
    )
    return {
        "benchmark": BENCHMARK,
        **{k: facts[k] for k in ("device_name", "driver", "commit", "date")},
        **settings,
        "engines": {engine: {"region_slot": slot} for engine, slot in ENGINES.items()},
        "requests": {"prompts": PROMPTS, "out_tokens": OUT_TOKENS, "greedy": True},
        "nccl_version": nccl,
        "phases_missing": missing,
        "tokens_identical": tokens_identical,
        "tokens_identical_all": checks["tokens_identical"],
        "engines_agree": bool(result("native", "a").get("tokens"))
        and result("native", "a").get("tokens") == result("native", "b").get("tokens"),
        "archives": dict(archives),
        "archives_distinct": checks["archives_distinct"],
        "load_restored": restored,
        "faults": faults,
        "faults_named": checks["faults_named"],
        "llm_init_overlap_s": {
            p: overlap_s(phases[p].get("starts", {}))
            for p in ("native", "save", "load")
            if p in phases
        },
        "phases": {
            p: {
                "wall_s": doc.get("wall_s"),
                "starts": {
                    label: {k: v for k, v in r.items() if k != "tokens"}
                    for label, r in doc.get("starts", {}).items()
                },
            }
            for p, doc in phases.items()
        },
        "tokens": {
            p: {label: r.get("tokens") for label, r in doc.get("starts", {}).items()}
            for p, doc in phases.items()
            if p != "faults"
        },
        "ok": not missing and all(checks.values()),
    }


def record_name(record: Mapping[str, Any]) -> str:
    device = str(record["device_name"]).replace(" ", "-")
    return f"vllm-two-slots-{device}-{record['date']}-{record['model']}.json"


def write_record(record: Mapping[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / record_name(record)
    path.write_text(json.dumps(record, indent=1, default=str))
    return path


def phase_file(work: Path, phase: str) -> Path:
    return work / f"phase-{phase}.json"


def load_phases(work: Path) -> dict[str, dict[str, Any]]:
    """The phases a run in this work directory completed, in PHASES order."""
    found: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        path = phase_file(work, phase)
        if path.is_file():
            found[phase] = json.loads(path.read_text())
    return found


def parse_phases(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(
            f"phases are a comma-separated subset of {','.join(PHASES)}, got {text!r}"
        )
    return phases


def parent(args: argparse.Namespace) -> int:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kiln-two-slots-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for phase in args.phases:
        doc = run_phase(phase, args, work)
        phase_file(work, phase).write_text(json.dumps(doc, default=str))
        brief = {
            label: {
                k: r.get(k) for k in ("ok", "returncode", "llm_init_s", "batch_s", "kiln_lines")
            }
            for label, r in doc["starts"].items()
        }
        print(json.dumps({"phase": phase, "wall_s": doc["wall_s"], **brief}, indent=1), flush=True)
    facts = {
        **device_facts(),
        "commit": os.environ.get("KILN_COMMIT", "unknown"),
        "date": datetime.date.today().isoformat(),
    }
    settings = {
        "model": Path(args.model).name,
        "max_model_len": args.max_model_len,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "kv_cache_memory_bytes": args.kv_cache_bytes,
        "concurrent": not args.sequential,
        "work_dir": str(work),
    }
    archives = {engine: archive_facts(archive_dir(work, engine)) for engine in ENGINES}
    record = summarize(load_phases(work), archives, facts, settings)
    path = write_record(record, Path(args.out_dir))
    keys = ("phases_missing", "tokens_identical", "archives_distinct", "load_restored")
    summary = {k: record[k] for k in keys}
    summary["faults"] = {n: (v["named"], v["message"][:300]) for n, v in record["faults"].items()}
    print(json.dumps({"record": str(path), **summary}, indent=1))
    return 0 if record["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (dummy weights)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--gpu-memory-utilization", type=float, default=DEFAULT_UTILIZATION)
    p.add_argument("--kv-cache-bytes", type=int, default=DEFAULT_KV_CACHE_BYTES)
    p.add_argument("--phases", type=parse_phases, default=list(PHASES))
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--work-dir", help="archives, logs and phase results (default: a temp dir)")
    p.add_argument("--timeout", type=int, default=420, help="seconds per process")
    p.add_argument(
        "--sequential", action="store_true", help="start a phase's processes one at a time"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p


def check_settings(args: argparse.Namespace) -> None:
    """Refuse settings with which two engines cannot share one GPU."""
    if not 0.0 < args.gpu_memory_utilization <= 0.45:
        raise SystemExit(
            f"--gpu-memory-utilization {args.gpu_memory_utilization}: two engines share the "
            "GPU, and each needs that share free when it starts; use a value in (0, 0.45]"
        )
    if args.kv_cache_bytes <= 0:
        raise SystemExit("--kv-cache-bytes must be positive (it keeps vLLM from profiling)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_settings(args)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
