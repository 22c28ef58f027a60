"""The hostile-input campaign: thousands of damaged and crafted archives, manifests, JSON
sections and startup reports against every reader and CLI verb, and ``kiln run --mode
load`` of the CPU test engine under both policies.

    python bench/hostile_campaign.py --cases 5000 --out-dir bench/results

Counts, over all cases:

* ``crashes``: a process killed by a signal, or a traceback (an exception kiln let escape);
* ``hangs``: a case that did not finish within ``--timeout`` seconds;
* ``accepted``: a certainly corrupt input accepted (exit status 0; for ``kiln run``, a
  LOAD that restored);
* ``executed``: a command stored in an archive that ran (every archive's recipe is a
  command that creates a marker file; ``verify --gpu`` runs with the GPU check faked
  possible).

Also ``unexpected``: a LOAD under ``fallback`` that did not start natively, or one under
``strict`` that stopped without naming kiln's cause. The summary goes to
``OUT_DIR/hostile-<date>.json``. Needs kiln, its native core and the test adapter
(tests/fixtures/kiln_test_adapter) installed; runs on the CPU. Cases are reproducible from
``--seed``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.inspection.archives builds the rich archive

from bench.hostile_cases import CaseMaker

# Share of the cases per reader (the rest of the rounding goes to verify).
MIX = {
    "verify": 0.14,
    "special files": 0.02,
    "verify --gpu": 0.12,
    "inspect": 0.14,
    "diff": 0.10,
    "report": 0.14,
    "decoders": 0.14,
    "run load fallback": 0.10,
    "run load strict": 0.10,
}
BATCH = 150


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k != "LD_PRELOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _kiln(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _baselines(work: Path, marker: Path, env: dict[str, str]) -> tuple[Path, Path, bytes]:
    """A rich archive (graphs, binaries, manifest; its recipe the marker command), a toy
    engine archive saved by kiln run, and the toy SAVE's startup report."""
    from tests.inspection.archives import good_parts, write

    parts = good_parts()
    parts.recipe = {
        "kind": "command",
        "argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
    }
    rich = write(work / "base-rich" / "graphs.kiln", parts)
    toy_dir = work / "base-toy"
    engine = [sys.executable, "-m", "kiln_test_adapter.engine"]
    save = _kiln(["run", "--mode", "save", "--archive", str(toy_dir), "--", *engine], env, 120)
    if save.returncode != 0:
        raise SystemExit(f"the toy SAVE failed:\n{save.stderr}")
    # The oracle is sound only if an unchanged copy restores.
    copy = work / "base-toy-copy"
    copy.mkdir()
    shutil.copy(toy_dir / "graphs.kiln", copy / "graphs.kiln")
    load = _kiln(
        ["run", "--mode", "load", "--policy", "strict", "--archive", str(copy), "--", *engine],
        env,
        120,
    )
    if load.returncode != 0 or json.loads(load.stdout)["mode"] != "load":
        raise SystemExit(f"an unchanged toy archive does not restore:\n{load.stderr}")
    return rich, toy_dir / "graphs.kiln", (toy_dir / "startup-report.json").read_bytes()


def _worker_batch(cases: list[dict[str, Any]], env: dict[str, str], timeout: float) -> list[dict]:
    """Run ``cases`` in worker processes; a case that kills or stalls its worker is
    recorded as a crash or a hang and the rest go to a fresh worker."""
    results: list[dict[str, Any]] = []
    pending = list(cases)
    while pending:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "hostile_worker.py")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        feed = "".join(json.dumps(c) + "\n" for c in pending)
        done: set[int] = set()
        deadline = timeout * len(pending) + 30
        timed_out = False
        try:
            out, err = proc.communicate(feed, timeout=deadline)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            out, err = proc.communicate()
        for line in out.splitlines():
            result = json.loads(line)
            done.add(result["id"])
            results.append(result)
        pending = [c for c in pending if c["id"] not in done]
        if pending:
            first = pending.pop(0)
            killed = not timed_out and proc.returncode < 0
            results.append(
                {
                    "id": first["id"],
                    "status": None,
                    "hang": timed_out,
                    "signal": -proc.returncode if killed else None,
                    "traceback": None if timed_out or killed else err[-2000:] or "worker died",
                }
            )
    return results


def _run_case(case: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    try:
        proc = _kiln(case["argv"], env, timeout)
    except subprocess.TimeoutExpired:
        return {"id": case["id"], "status": None, "hang": True}
    restored = False
    try:
        restored = json.loads(proc.stdout.splitlines()[-1])["mode"] == "load"
    except (IndexError, ValueError, KeyError, TypeError):
        pass
    return {
        "id": case["id"],
        "status": proc.returncode,
        "signal": -proc.returncode if proc.returncode < 0 else None,
        "traceback": proc.stderr[-2000:]
        if "Traceback (most recent call last)" in proc.stderr
        else None,
        "restored": restored,
        "stopped_by_kiln": "start stopped by kiln:" in proc.stderr,
        # started natively: after a fallback in the engine, or kiln off from the start
        "fell_back": '"mode": "native"' in proc.stdout or '"mode": "off"' in proc.stdout,
        # `kiln run` may announce the plan before it refuses (the engine caches at LOAD)
        "refused_by_kiln_run": any(
            line.startswith("kiln run: error:") for line in proc.stderr.splitlines()
        ),
        # the launcher refused the archive's engine caches by name and started without them
        "caches_refused": "kiln: empty cache directory:" in proc.stderr,
        "stderr": proc.stderr[-600:],
    }


def _judge(case: dict[str, Any], result: dict[str, Any]) -> dict[str, bool]:
    crash = bool(result.get("signal")) or bool(result.get("traceback"))
    hang = bool(result.get("hang"))
    status = result.get("status")
    if "policy" in case:
        accepted = (
            case["corrupt"] and result.get("restored", False) and not result.get("caches_refused")
        )
        if case["policy"] == "fallback":
            expected = status == 0 and (result.get("restored") or result.get("fell_back"))
        else:
            expected = (
                (status == 0 and result.get("restored"))
                or (status == 3 and result.get("stopped_by_kiln"))
                or (status == 2 and result.get("refused_by_kiln_run"))
            )
    else:
        accepted = bool(case.get("corrupt")) and status == 0
        expected = status in (0, 1, 2)
    return {
        "crash": crash,
        "hang": hang,
        "accepted": bool(accepted),
        "unexpected": not crash and not hang and not expected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the cases' inputs")
    args = parser.parse_args(argv)

    started = time.time()
    env = _env()
    work = Path(tempfile.mkdtemp(prefix="kiln-hostile-"))
    marker = work / "stored-command-ran"
    rich, toy, report = _baselines(work, marker, env)
    maker = CaseMaker(work, rich, toy, report, marker)
    rng = random.Random(args.seed)
    kinds = [k for k, share in MIX.items() for _ in range(round(share * args.cases))]
    kinds += ["verify"] * (args.cases - len(kinds))
    rng.shuffle(kinds)
    cases = [maker.makers[kind](rng, i) for i, kind in enumerate(kinds)]

    in_process = [c for c in cases if "policy" not in c]
    runs = [c for c in cases if "policy" in c]
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(_worker_batch, in_process[i : i + BATCH], env, args.timeout)
            for i in range(0, len(in_process), BATCH)
        ]
        futures += [pool.submit(lambda c=c: [_run_case(c, env, args.timeout)]) for c in runs]
        for future in futures:
            results.extend(future.result())

    by_id = {c["id"]: c for c in cases}
    totals: Counter[str] = Counter()
    per_reader: dict[str, Counter[str]] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        case = by_id[result["id"]]
        verdict = _judge(case, result)
        counts = per_reader.setdefault(case["reader"], Counter())
        counts["cases"] += 1
        for key, bad in verdict.items():
            if bad:
                totals[key] += 1
                counts[key] += 1
                examples.setdefault(key, [])
                if len(examples[key]) < 10:
                    examples[key].append({"case": case, "result": result})
    executed = int(marker.exists())
    summary = {
        "campaign": "hostile archives and reports (issue 23)",
        "date": dt.date.today().isoformat(),
        "commit": _commit(),
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "seed": args.seed,
        "cases": len(results),
        "crashes": totals["crash"],
        "hangs": totals["hang"],
        "accepted": totals["accepted"],
        "executed": executed,
        "unexpected": totals["unexpected"],
        "corrupt_cases": sum(1 for c in cases if c.get("corrupt")),
        "per_reader": {
            reader: {
                "cases": c["cases"],
                "corrupt": sum(1 for x in cases if x["reader"] == reader and x.get("corrupt")),
                "crashes": c["crash"],
                "hangs": c["hang"],
                "accepted": c["accepted"],
                "unexpected": c["unexpected"],
            }
            for reader, c in sorted(per_reader.items())
        },
        "timeout_s": args.timeout,
        "duration_s": round(time.time() - started, 1),
    }
    if examples:
        summary["examples"] = examples
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"hostile-{summary['date']}.json"
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "cases",
                    "crashes",
                    "hangs",
                    "accepted",
                    "executed",
                    "unexpected",
                    "duration_s",
                )
            }
        )
    )
    print(f"summary: {out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"inputs kept in {work}")
    bad = summary["crashes"] or summary["hangs"] or summary["accepted"] or summary["executed"]
    return 1 if bad or summary["unexpected"] else 0


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
