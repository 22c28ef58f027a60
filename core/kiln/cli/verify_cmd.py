"""``kiln verify ARCHIVE [--gpu [-- COMMAND...]]``: check an archive (delegates to
kiln.inspection).

``--gpu`` restores the archive on this GPU in a fresh process. For an archive saved by a
command (recipe kind ``command``), the restore re-runs a command under ``kiln run --mode
load``: the one given after ``--``. The command stored in the archive is run only with
``--ask``, after it was shown and confirmed on a terminal: an archive is untrusted input.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from kiln.cli.inspect_cmd import existing_archive
from kiln.cli.output import NEGATIVE, OK, console, literal, print_json, styled, working
from kiln.errors import ArchiveError, KilnError

DESCRIPTION = """\
Check an archive's integrity without a GPU; with --gpu, also restore it on this GPU in a
fresh process and compare its outputs with the SAVE process's.

An archive saved by a command (kiln run) is restored by re-running a command under
`kiln run --mode load`. kiln never runs the command stored in the archive on its own: give
the command after --, or pass --ask to be shown the stored command and confirm it (on a
terminal only). Anyone who can write an archive can write its command and its checksums.

  kiln verify --gpu ARCHIVE -- python serve.py --model m

Without a usable GPU the GPU check is skipped (exit status 0 when the CPU checks pass).
"""


class BadVerifyResult(KilnError):
    def __init__(self, result: object) -> None:
        super().__init__(f"verify_archive returned {result!r}; expected 'ok' and 'problems'")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check an archive's integrity (and, with --gpu, that it restores here)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--gpu", action="store_true", help="also restore on this GPU")
    parser.add_argument(
        "--ask",
        action="store_true",
        help="with --gpu: show the command stored in the archive and ask whether to run it",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run, takes_rest=True)


def run(args: argparse.Namespace) -> int:
    from kiln.inspection import verify_archive

    if args.rest is not None and not args.gpu:
        raise VerifyUsage("a command after -- is re-run by --gpu only")
    path = existing_archive(args.archive)
    consent = _ask if args.ask else None
    with working(f"verifying {path}", enabled=not args.json):
        result = verify_archive(path, args.gpu, args.rest, consent)
    ok, problems = _checked(result)
    if result.get("readable") is False:
        raise ArchiveError(problems[0] if problems else f"{path} is not a kiln archive")
    if args.json:
        print_json(result)
    else:
        out = console()
        out.print(styled(("OK" if ok else "FAILED", "bold"), f": {path}"))
        for problem in problems:
            out.print(styled(f"  - {problem}"))
        gpu = result.get("gpu")
        if isinstance(gpu, dict) and gpu.get("skipped"):
            out.print(styled(("GPU check skipped", "yellow"), f": {gpu['skipped']}"))
            if gpu.get("stored_command"):
                out.print(styled(f"  the archive stores: {_shown(gpu['stored_command'])}"))
    return OK if ok else NEGATIVE


class VerifyUsage(KilnError):
    """Arguments that do not fit together."""


def _shown(argv: list[str]) -> str:
    return literal(shlex.join(argv))


def _ask(argv: list[str]) -> bool:
    """Show the stored command and ask; no terminal, no consent."""
    if not sys.stdin.isatty():
        print(
            "kiln verify: --ask needs a terminal; the stored command is not run",
            file=sys.stderr,
        )
        return False
    print(f"The archive asks to run:\n  {_shown(argv)}", file=sys.stderr)
    try:
        answer = input("Run this command under kiln run --mode load? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _checked(result: object) -> tuple[bool, list[str]]:
    if not isinstance(result, dict):
        raise BadVerifyResult(result)
    ok, problems = result.get("ok"), result.get("problems")
    if not isinstance(ok, bool) or not isinstance(problems, list):
        raise BadVerifyResult(result)
    # An archive with problems is not OK, whatever the flag says.
    return ok and not problems, [str(problem) for problem in problems]
