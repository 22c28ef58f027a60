"""``kiln adapters``: installed adapters, their versions and the engine versions they support."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.output import NEGATIVE, OK, console, print_json
from kiln.plugins import AdapterInfo, discover_adapters


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "adapters", help="list engine adapters (exit 1 when one fails to load)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    adapters = discover_adapters()
    if args.json:
        print_json([info.as_dict() for info in adapters])
    else:
        _show(adapters)
    return NEGATIVE if any(info.error for info in adapters) else OK


def _show(adapters: list[AdapterInfo]) -> None:
    from rich.table import Table

    out = console()
    if not adapters:
        out.print("no adapters installed (entry-point group kiln.adapters)")
        return
    table = Table("adapter", "version", "engine", "supports", "installed", "status")
    for info in adapters:
        row = info.as_dict()
        table.add_row(
            info.name,
            _text(row["version"]),
            _text(row["engine"] or "(any)" if info.spec else None),
            _text(row["engine_versions"]),
            _text(row["engine_installed"]),
            _status(info),
        )
    out.print(table)


def _status(info: AdapterInfo) -> str:
    if info.error:
        return f"[red]error[/red]: {info.error}"
    supported = info.engine_supported
    if supported is False:
        return "[yellow]engine version not supported[/yellow]"
    return "ok"


def _text(value: object) -> str:
    return "—" if value in (None, "") else str(value)
