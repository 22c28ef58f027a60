"""``kiln report ARCHIVE``: the last startup report written next to an archive."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kiln.cli.output import OK, console, print_json
from kiln.errors import KilnError
from kiln.lifecycle.archive_io import ARCHIVE_FILE, report_file


class ReportMissing(KilnError):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"no startup report at {path}: {why}")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("report", help="show the last startup report of an archive")
    parser.add_argument("archive", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--rank", type=int, default=0, help="the rank's report (default 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    directory = args.archive.parent if args.archive.name == ARCHIVE_FILE else args.archive
    path = report_file(directory, args.rank)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportMissing(path, "the engine has not reached a report yet") from None
    except (OSError, ValueError) as err:
        raise ReportMissing(path, str(err)) from None
    if args.json:
        print_json(report)
    else:
        _show(report)
    return OK


def _show(report: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    out.print(
        f"[bold]{report.get('outcome')}[/bold] — {report.get('engine')} rank "
        f"{report.get('rank')}, mode {report.get('mode')}, "
        f"{report.get('graphs_restored')} restored / {report.get('graphs_captured')} captured"
    )
    if report.get("graphs_on_template_at_ready") is not None:
        out.print(
            f"at ready: {report.get('graphs_own_executable_at_ready')} graphs with their own "
            f"executable, {report['graphs_on_template_at_ready']} on templates "
            f"(load_builds {report.get('load_builds')})"
        )
    for key in ("fallback_reason", "error"):
        if report.get(key):
            out.print(f"{key}: {report[key]}", markup=False)
    table = Table("phase", "seconds")
    for phase, seconds in (report.get("phases_s") or {}).items():
        table.add_row(phase, "—" if seconds is None else f"{seconds:.3f}")
    if report.get("total_s") is not None:
        table.add_row("[bold]total[/bold]", f"{report['total_s']:.3f}")
    out.print(table)
