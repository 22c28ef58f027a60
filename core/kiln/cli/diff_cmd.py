"""``kiln diff A B``: two archives' fingerprints, field by field."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.archive import diff_fingerprints
from kiln.cli.inspect_cmd import existing_archive
from kiln.cli.output import NEGATIVE, OK, console, literal, print_json
from kiln.lifecycle.archive_io import read_fingerprint


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "diff",
        help="compare two archives' fingerprints (exit 1 when they differ)",
    )
    parser.add_argument("a", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("b", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    a, b = existing_archive(args.a), existing_archive(args.b)
    fa, fb = read_fingerprint(a), read_fingerprint(b)
    differences = diff_fingerprints(fa, fb)
    if args.json:
        print_json(
            {
                "a": str(a),
                "b": str(b),
                "identical": not differences,
                "fields": len(fa.keys() | fb.keys()),
                "differences": [
                    {"field": field, "a": va, "b": vb} for field, va, vb in differences
                ],
            }
        )
    else:
        _show(a, b, differences, len(fa.keys() | fb.keys()))
    return NEGATIVE if differences else OK


def _show(a: Path, b: Path, differences: list[tuple[str, object, object]], total: int) -> None:
    from rich.table import Table

    out = console()
    if not differences:
        out.print(f"fingerprints are identical ({total} fields)")
        return
    table = Table(title=f"{len(differences)} of {total} fingerprint fields differ")
    table.add_column("field", style="bold")
    table.add_column(literal(f"A: {a}"), overflow="fold")
    table.add_column(literal(f"B: {b}"), overflow="fold")
    for field, va, vb in differences:
        table.add_row(literal(field), _text(va), _text(vb))
    out.print(table)


def _text(value: object) -> str:
    """The value as a person reads it, cut by literal() to MAX_CHARS characters: rich folds
    a cell in time that grows with the square of its length."""
    return "(absent)" if value is None else literal(repr(value))
