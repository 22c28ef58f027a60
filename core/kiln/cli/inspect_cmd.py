"""``kiln inspect ARCHIVE``: what an archive holds (delegates to kiln.inspection)."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from kiln.cli.output import OK, console, print_json, tree
from kiln.errors import ArchiveError
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
    """The archive file ``path`` names (a directory names its graphs.kiln); an error when
    there is none, or when it is no regular file (a FIFO, a device, a directory)."""
    resolved = resolve_archive(path)
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise ArchiveMissing(resolved) from None
    except OSError as err:
        raise ArchiveError(f"cannot read archive {resolved}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise ArchiveError(f"archive {resolved} is not a regular file")
    return resolved
