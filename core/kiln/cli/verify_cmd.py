"""``kiln verify ARCHIVE [--gpu]``: check an archive (delegates to kiln.inspection)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.cli.inspect_cmd import existing_archive
from kiln.cli.output import NEGATIVE, OK, console, print_json, working
from kiln.errors import KilnError


class BadVerifyResult(KilnError):
    def __init__(self, result: object) -> None:
        super().__init__(f"verify_archive returned {result!r}; expected 'ok' and 'problems'")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check an archive's integrity (and, with --gpu, that it restores here)",
    )
    parser.add_argument("archive", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--gpu", action="store_true", help="also restore on this GPU")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.inspection import verify_archive

    path = existing_archive(args.archive)
    with working(f"verifying {path}", enabled=not args.json):
        result = verify_archive(path, args.gpu)
    ok, problems = _checked(result)
    if args.json:
        print_json(result)
    else:
        out = console()
        out.print(f"[bold]{'OK' if ok else 'FAILED'}[/bold]: {path}")
        for problem in problems:
            out.print(f"  - {problem}", markup=False)
    return OK if ok else NEGATIVE


def _checked(result: object) -> tuple[bool, list[str]]:
    if not isinstance(result, dict):
        raise BadVerifyResult(result)
    ok, problems = result.get("ok"), result.get("problems")
    if not isinstance(ok, bool) or not isinstance(problems, list):
        raise BadVerifyResult(result)
    # An archive with problems is not OK, whatever the flag says.
    return ok and not problems, [str(problem) for problem in problems]
