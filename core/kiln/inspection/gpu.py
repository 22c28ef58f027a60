"""``kiln verify --gpu``: restore the archive on this GPU in a fresh process, under the
interposer, and compare its outputs bit for bit with the SAVE process's.

A restore needs the allocations the SAVE process made before its capture window: those
belong to the program that saved the archive, which only the archive's recipe can re-run.
Recipes of kind ``workload`` name a workload of ``kiln_workloads`` (kiln's test and
benchmark workloads, a separate package: ./workloads), re-run with
``python -m kiln_workloads.run --mode load``; the SAVE process's outputs are read from
``reference.pt`` beside the archive (what ``--mode save`` writes). Recipes of kind
``command`` (archives saved by ``kiln run``) are restored by re-running a command under
``kiln run --mode load``: the one the user gives, never the stored one without the user's
consent (docs/cli.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from kiln import env_settings
from kiln._gpu import gpu_unavailable_reason
from kiln._paths import package_dir, preload_library
from kiln.archive.manifest import Manifest
from kiln.inspection.problems import Problems
from kiln.lifecycle.archive_io import REPORT_FILE
from kiln.lifecycle.report_reader import ReportUnreadable, read_report

TIMEOUT_S: Final = 900
REFERENCE: Final = "reference.pt"
#: The package whose runner restores archives with a workload recipe (not part of kiln).
WORKLOADS: Final = "kiln_workloads"


#: Asked, with the command an archive stores, whether to run it (``kiln verify --gpu
#: --ask``); without it a stored command is never run.
Consent = Callable[[list[str]], bool]


def verify_on_gpu(
    path: Path,
    manifest: Manifest | None,
    problems: Problems,
    command: Sequence[str] | None = None,
    consent: Consent | None = None,
) -> dict[str, Any]:
    """Restore ``path`` in a fresh process; adds a problem unless it restores bit-exact.

    Runs only where the archive passed the CPU checks (``problems`` is empty): an archive
    holds kernels that a restore runs on the GPU. Where no GPU can be used the check is
    skipped (``report["skipped"]`` says why), not failed.

    An archive whose recipe is a command is restored by re-running a command under
    ``kiln run --mode load``: ``command``, given by the user. The command stored in the
    archive is never run on its own say: only when ``consent`` (asked with it) says yes.
    Whoever can write an archive can write its command and recompute its checksums."""
    report: dict[str, Any] = {"ran": False}
    if manifest is None:
        report["skipped"] = "the manifest could not be read"
        return report
    if problems:
        report["skipped"] = "the archive failed the CPU checks; it is not restored"
        return report
    recipe = manifest.recipe or {}
    by_command = command is not None or recipe.get("kind") == "command"
    workload = None if by_command else _workload(manifest, problems)
    if not by_command and workload is None:
        return report
    reason = gpu_unavailable_reason()
    if reason is not None:
        report["skipped"] = f"no GPU can be used here: {reason}"
        return report
    if by_command:
        argv = _command_to_run(recipe, command, consent, report)
        if argv is None:
            return report
        report.update(_verify_command(path, argv, problems))
        report["ran"] = True
        return report
    assert workload is not None
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


def _command_to_run(
    recipe: Mapping[str, Any],
    command: Sequence[str] | None,
    consent: Consent | None,
    report: dict[str, Any],
) -> list[str] | None:
    """The command the user gave, or the stored one if ``consent`` allows it; ``None``
    (with ``report["skipped"]`` saying why) otherwise."""
    if command is not None:
        if not command:
            report["skipped"] = "the command given after -- is empty"
            return None
        return list(command)
    stored = recipe.get("argv")
    if not isinstance(stored, list) or not stored or not all(isinstance(a, str) for a in stored):
        report["skipped"] = "the archive's command recipe has no usable argv"
        return None
    report["stored_command"] = list(stored)
    if consent is not None and consent(list(stored)):
        return list(stored)
    report["skipped"] = (
        "the archive was saved by a command, and kiln runs no command stored in an archive "
        "without consent: give the command to re-run after -- (kiln verify --gpu ARCHIVE -- "
        "COMMAND...), or pass --ask to see the stored one and confirm it"
    )
    return None


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


def _verify_command(path: Path, argv: list[str], problems: Problems) -> dict[str, Any]:
    """Re-run ``argv`` (a command the user gave or confirmed) under `kiln run --mode load
    --policy strict`; it must exit 0 and report every graph restored (programs like
    kiln.demo_program compare their outputs with SAVE's and exit 1 otherwise)."""
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
    try:
        _, startup = read_report(path.parent / REPORT_FILE)
    except ReportUnreadable as err:
        startup = None
        unreadable = str(err)
    summary["outcome"] = None if startup is None else startup.outcome
    summary["graphs_restored"] = None if startup is None else startup.graphs_restored
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        problems.add(f"GPU verification: the command exited with status {proc.returncode}: {tail}")
    elif startup is None:
        problems.add(f"GPU verification: {unreadable}")
    elif startup.outcome != "restored":
        problems.add(
            f"GPU verification: the startup report says {startup.outcome!r}, not 'restored'"
            + (f" ({startup.fallback_reason})" if startup.fallback_reason else "")
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
    env[env_settings.ENABLE] = "1"
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
    if importlib.util.find_spec(WORKLOADS) is None:
        # kiln's own workloads are test and benchmark code, not part of the runtime package.
        return {
            "error": f"the archive's workload recipe needs kiln's workloads ({WORKLOADS}), "
            "which are not installed: pip install ./workloads from kiln's source tree"
        }
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
            f"{WORKLOADS}.run",
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
