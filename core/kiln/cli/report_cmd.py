"""``kiln report ARCHIVE``: the last startup report written next to an archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.cli.output import OK, console, literal, print_json, styled
from kiln.lifecycle.archive_io import ARCHIVE_FILE, report_file
from kiln.lifecycle.report_reader import ReportDoc, read_report


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("report", help="show the last startup report of an archive")
    parser.add_argument("archive", type=Path, help="archive directory or graphs.kiln file")
    parser.add_argument("--rank", type=_rank, default=0, help="the rank's report (default 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def _rank(text: str) -> int:
    rank = int(text)
    if rank < 0:
        raise ValueError(text)
    return rank


def run(args: argparse.Namespace) -> int:
    directory = args.archive.parent if args.archive.name == ARCHIVE_FILE else args.archive
    raw, report = read_report(report_file(directory, args.rank))
    if args.json:
        print_json(raw)
    else:
        _show(report)
    return OK


def _show(report: ReportDoc) -> None:
    from rich.table import Table

    out = console()
    out.print(
        styled(
            (report.outcome, "bold"),
            f" — {report.engine} rank {report.rank}, mode {report.mode}, "
            f"{report.graphs_restored} restored / {report.graphs_captured} captured",
        )
    )
    if report.graphs_on_template_at_ready is not None:
        out.print(
            styled(
                f"at ready: {report.graphs_own_executable_at_ready} graphs with their own "
                f"executable, {report.graphs_on_template_at_ready} on templates "
                f"(load_builds {report.load_builds})"
            )
        )
    if report.fallback_reason:
        out.print(styled(f"fallback_reason: {report.fallback_reason}"))
    if report.error is not None:
        error = report.error
        out.print(styled(f"error: {error.stage}: {error.type}: {error.message}"))
    table = Table("phase", "seconds")
    for phase, seconds in report.phases_s.items():
        table.add_row(literal(phase), "—" if seconds is None else f"{seconds:.3f}")
    if report.total_s is not None:
        table.add_row(styled(("total", "bold")), f"{report.total_s:.3f}")
    out.print(table)
