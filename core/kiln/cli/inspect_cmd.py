"""``kiln inspect ARCHIVE``: what an archive holds (delegates to kiln.inspection)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.cli.output import OK, console, print_json, tree
from kiln.lifecycle.archive_io import resolve_archive
from kiln.lifecycle.errors import ArchiveMissing


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("inspect", help="describe an archive")
    parser.add_argument("archive", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.inspection import describe_archive  # imports the core only when needed

    path = existing_archive(args.archive)
    description = describe_archive(path)
    if args.json:
        print_json(description)
    else:
        console().print(tree(str(path), description))
    return OK


def existing_archive(path: Path) -> Path:
    resolved = resolve_archive(path)
    if not resolved.is_file():
        raise ArchiveMissing(resolved)
    return resolved
