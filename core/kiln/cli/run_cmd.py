"""``kiln run``: start an engine under kiln — LD_PRELOAD, the kiln environment, then exec."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Any

from kiln import _paths
from kiln.cli.output import literal, print_json
from kiln.config import LoadBuilds, Mode, Policy, load_config
from kiln.errors import KilnError
from kiln.lifecycle import cache_dirs, cache_transfer
from kiln.lifecycle.launch import LaunchPlan, plan_launch
from kiln.plugins import discover_adapters, make_plugin_manager, register_adapters

EXEC_FAILED = 127  # what shells return for a command that cannot be run

DESCRIPTION = """\
Start an engine command with the interposer preloaded and the kiln environment set, then
exec it (kiln does not stay in between). Every process the engine starts inherits both.

  kiln run --mode auto -- vllm serve Qwen/Qwen3-8B

auto loads the archive when one matching this command exists, and saves one otherwise.
The archive directory defaults to <archive.root>/<hash of the launch fingerprint>, so a
changed command, model or engine version never reuses a stale archive.
"""


class ExecFailed(KilnError):
    def __init__(self, program: str, err: OSError) -> None:
        super().__init__(f"cannot exec {program!r}: {err.strerror or err}")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run an engine command under kiln (save, load or auto)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode], help="default: config, auto")
    parser.add_argument("--archive", metavar="DIR", help="archive directory (default: derived)")
    parser.add_argument("--policy", choices=[p.value for p in Policy], help="on failure")
    parser.add_argument(
        "--load-builds",
        choices=[b.value for b in LoadBuilds],
        help="LOAD: build every graph's own executable in the background (default) or before "
        "the engine is ready",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan, do not exec")
    parser.add_argument(
        "--json", action="store_true", help="the plan as JSON (stderr, or stdout with --dry-run)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the engine command")
    parser.set_defaults(handler=run, takes_rest=True)


def run(args: argparse.Namespace) -> int:
    command = tuple(args.rest if args.rest is not None else args.command)
    config = load_config(
        args.config,
        overrides={
            "mode": args.mode,
            "archive.dir": args.archive,
            "policy": args.policy,
            "load_builds": args.load_builds,
        },
    )
    pm = make_plugin_manager()
    register_adapters(pm, discover_adapters(disabled=config.disable_adapters), engine=None)
    plan = plan_launch(command, config, os.environ, pm, _paths.preload_library(), time.time())
    _announce(plan, as_json=args.json, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    prepare_caches(plan, config.policy)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), plan.environment)
    except OSError as err:
        print(f"kiln run: error: {ExecFailed(command[0], err)}", file=sys.stderr)
        return EXEC_FAILED
    return 0  # only reached when exec is replaced (tests)


def prepare_caches(plan: LaunchPlan, policy: Policy) -> None:
    """SAVE: make the engine's cache directory; LOAD: install the archive's caches in a new
    one (a refusal stops the start under strict, empties the directory under fallback)."""
    if plan.mode not in ("save", "load") or plan.cache_dir is None or plan.archive_dir is None:
        return
    prepared = cache_transfer.prepare(
        plan.mode, plan.archive_dir, plan.cache_dir, cache_dirs.key_fields(plan.fingerprint), policy
    )
    if prepared.installed is not None:
        shown = f"{prepared.installed.entries} cache files from the archive in {plan.cache_dir}"
        print(f"kiln: {literal(shown)}", file=sys.stderr)
    elif prepared.refused is not None:
        print(f"kiln: empty cache directory: {literal(prepared.refused)}", file=sys.stderr)


def _announce(plan: LaunchPlan, *, as_json: bool, dry_run: bool) -> None:
    # stdout belongs to the engine once it runs; kiln's own line goes to stderr.
    stream = sys.stdout if dry_run else sys.stderr
    if as_json:
        print_json(plan.as_dict(), stream=stream)
        return
    # Paths, reasons and the command come from the user or an archive: shown literally.
    if plan.mode == "native":
        print(f"kiln: starting natively: {literal(plan.reason)}", file=stream)
    else:
        shown = literal(f"{plan.mode.upper()} {plan.archive_dir} ({plan.reason})")
        print(f"kiln: {shown}", file=stream)
    if dry_run:
        for name, value in plan.changes().items():
            line = f"{name}={value}" if value is not None else f"unset {name}"
            print(f"  {literal(line, limit=1 << 16)}", file=stream)
        print(f"  exec {literal(shlex.join(plan.command), limit=1 << 16)}", file=stream)
