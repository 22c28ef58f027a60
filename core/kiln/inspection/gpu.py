"""``kiln verify --gpu``: restore the archive on this GPU in a fresh process, under the
interposer, and compare its outputs bit for bit with the SAVE process's.

A restore needs the allocations the SAVE process made before its capture window: those
belong to the program that saved the archive, which only the archive's recipe can re-run.
Recipes of kind ``workload`` name a workload of :mod:`kiln.workloads`, re-run with
``python -m kiln.workloads.run --mode load``; the SAVE process's outputs are read from
``reference.pt`` beside the archive (what ``--mode save`` writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from kiln._gpu import gpu_unavailable_reason
from kiln._paths import package_dir, preload_library
from kiln.inspection.problems import Problems
from kiln.manifest import Manifest

TIMEOUT_S: Final = 900
REFERENCE: Final = "reference.pt"


def verify_on_gpu(path: Path, manifest: Manifest | None, problems: Problems) -> dict[str, Any]:
    """Restore ``path`` in a fresh process; adds a problem unless it restores bit-exact.

    Runs only where the archive passed the CPU checks (``problems`` is empty): an archive
    holds kernels that a restore runs on the GPU."""
    report: dict[str, Any] = {"ran": False}
    cpu_ok = not problems
    reason = gpu_unavailable_reason()
    if reason is not None:
        problems.add(f"GPU verification is not possible here: {reason}")
    if manifest is None:
        report["skipped"] = "the manifest could not be read"
        return report
    recipe = manifest.recipe or {}
    if recipe.get("kind") == "command":
        if not cpu_ok:
            report["skipped"] = "the archive failed the CPU checks; it is not restored"
        if reason is not None or not cpu_ok:
            return report
        report.update(_verify_command(path, recipe.get("argv"), problems))
        report["ran"] = True
        return report
    workload = _workload(manifest, problems)
    if not cpu_ok:
        report["skipped"] = "the archive failed the CPU checks; it is not restored"
    if reason is not None or workload is None or not cpu_ok:
        return report
    reference = path.parent / REFERENCE
    if not reference.is_file():
        problems.add(
            f"GPU verification compares the restore with the SAVE process's outputs, but "
            f"{reference} does not exist"
        )
        return report
    report["workload"] = workload
    outcome = run_restore(path, reference, workload)
    report.update(_judge(workload, outcome, problems))
    report["ran"] = True
    return report


def _run(command: list[str]) -> subprocess.CompletedProcess[str] | str:
    """The finished process, or why it did not finish."""
    try:
        return subprocess.run(
            command,
            env=restore_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {TIMEOUT_S} s"
    except OSError as e:
        return f"could not be started: {e}"


def _verify_command(path: Path, argv: object, problems: Problems) -> dict[str, Any]:
    """Re-run the command that saved the archive under `kiln run --mode load --policy strict`;
    it must exit 0 and report every graph restored (programs like
    kiln.workloads.lifecycle_demo compare their outputs with SAVE's and exit 1 otherwise)."""
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        problems.add(f"the archive's command recipe has no usable argv ({argv!r})")
        return {}
    command = [
        sys.executable,
        "-m",
        "kiln.cli",
        "run",
        "--mode",
        "load",
        "--policy",
        "strict",
        "--archive",
        str(path.parent),
        "--",
        *argv,
    ]
    proc = _run(command)
    if isinstance(proc, str):
        problems.add(f"GPU verification: the command {proc}")
        return {"command": argv}
    summary: dict[str, Any] = {"command": argv, "exit_status": proc.returncode}
    report_path = path.parent / "startup-report.json"
    try:
        startup = json.loads(report_path.read_text())
    except (OSError, ValueError):
        startup = {}
    summary["outcome"] = startup.get("outcome")
    summary["graphs_restored"] = startup.get("graphs_restored")
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        problems.add(f"GPU verification: the command exited with status {proc.returncode}: {tail}")
    elif startup.get("outcome") != "restored":
        problems.add(
            f"GPU verification: the startup report says {startup.get('outcome')!r}, not 'restored'"
            + (f" ({startup.get('fallback_reason')})" if startup.get("fallback_reason") else "")
        )
    return summary


def _workload(manifest: Manifest, problems: Problems) -> str | None:
    recipe = manifest.recipe
    if recipe is None:
        problems.add(
            "GPU verification needs a recipe, and this archive has none: the "
            f"{manifest.window[0]} allocations before its capture window belong to a program "
            "kiln cannot re-run (save with recipe={'kind': 'workload', 'workload': NAME})"
        )
        return None
    kind, workload = recipe.get("kind"), recipe.get("workload")
    if kind != "workload":
        problems.add(
            f"GPU verification re-runs recipes of kind 'workload' only; this archive's recipe "
            f"has kind {kind!r}"
        )
        return None
    if not isinstance(workload, str) or not workload:
        problems.add(f"the archive's workload recipe names no workload ({workload!r})")
        return None
    return workload


def restore_env() -> dict[str, str]:
    """This process's environment with the interposer enabled, importing this kiln."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload_library())  # the library checked to exist
    env["KILN_ENABLE"] = "1"
    here = str(package_dir().parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([here, *paths])
    return env


def run_restore(path: Path, reference: Path, workload: str) -> dict[str, Any]:
    """Run the workload's LOAD in a fresh process on ``path``; its result, or what went wrong
    (``{"error": ...}``)."""
    library = preload_library()
    if not library.is_file():
        return {"error": f"kiln's interposer {library} is not installed"}
    with tempfile.TemporaryDirectory(prefix="kiln-verify-") as tmp:
        work = Path(tmp)
        # The runner reads DIR/graphs.kiln and DIR/reference.pt, whatever the archive's name.
        try:
            (work / "graphs.kiln").symlink_to(path.resolve())
            (work / REFERENCE).symlink_to(reference.resolve())
        except OSError as e:
            return {"error": f"cannot prepare the restore's directory {work}: {e}"}
        out = work / "load.json"
        command = [
            sys.executable,
            "-m",
            "kiln.workloads.run",
            "--workload",
            workload,
            "--mode",
            "load",
            "--archive",
            str(work),
            "--out",
            str(out),
        ]
        proc = _run(command)
        if isinstance(proc, str):
            return {"error": f"the restore process {proc}"}
        if not out.is_file():
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return {
                "error": f"the restore process wrote no result (exit status {proc.returncode})"
                + (f": {tail}" if tail else "")
            }
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError) as e:
            return {"error": f"the restore process's result is unreadable: {e}"}
    if not isinstance(result, dict):
        return {"error": "the restore process's result is not a JSON object"}
    result["exit_status"] = proc.returncode
    return result


def _judge(workload: str, outcome: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """Problems for a restore that failed or differs; the summary kept in the report."""
    if "error" in outcome and "ok" not in outcome:
        problems.add(f"GPU verification (workload {workload!r}): {outcome['error']}")
        return {}
    summary = {
        key: outcome.get(key)
        for key in (
            "exit_status",
            "restore_seconds",
            "all_bit_exact_vs_save_native",
            "all_eager_checks_ok",
            "device_name",
        )
    }
    if outcome.get("ok") is not True:
        problems.add(
            f"GPU verification (workload {workload!r}): the restore failed: "
            f"{outcome.get('error_class', 'error')}: {outcome.get('error', 'no message')}"
        )
        return summary
    graphs = outcome.get("graphs")
    graphs = graphs if isinstance(graphs, dict) else {}
    summary["graphs"] = len(graphs)
    if outcome.get("all_bit_exact_vs_save_native") is not True:
        failing = outcome.get("failing_graphs") or sorted(graphs)
        problems.add(
            f"GPU verification (workload {workload!r}): restored graphs differ from the SAVE "
            f"process's native replay: {', '.join(map(str, failing))}"
        )
    if outcome.get("all_eager_checks_ok") is not True:
        failing = sorted(
            name
            for name, g in graphs.items()
            if not (isinstance(g, dict) and g.get("eager_check_ok") is True)
        )
        problems.add(
            f"GPU verification (workload {workload!r}): restored graphs differ from eager "
            f"execution in this process: {', '.join(failing) or 'unnamed graphs'}"
        )
    return summary
