"""``kiln adapters``: installed adapters, their versions and the engine versions they support."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.output import NEGATIVE, OK, console, literal, print_json, styled
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
        print_json([{**info.as_dict(), "status": status(info)} for info in adapters])
    else:
        _show(adapters)
    return NEGATIVE if any(info.error for info in adapters) else OK


def status(info: AdapterInfo) -> str:
    """``error``, ``engine not installed``, ``engine version not supported`` or ``ok``."""
    if info.error:
        return "error"
    if info.spec is not None and info.spec.engine and info.engine_version is None:
        return "engine not installed"
    if info.engine_supported is False:
        return "engine version not supported"
    return "ok"


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
            literal(info.name),
            _text(row["version"]),
            _text(row["engine"] or "(any)" if info.spec else None),
            _text(row["engine_versions"]),
            _text(row["engine_installed"]),
            _status(info),
        )
    out.print(table)


_STYLES = {
    "error": "red",
    "engine version not supported": "yellow",
    "engine not installed": "yellow",
}


def _status(info: AdapterInfo) -> Any:
    shown = status(info)
    if info.error:
        return styled((shown, "red"), f": {info.error}")
    return styled((shown, _STYLES.get(shown, "")))


def _text(value: object) -> str:
    return "—" if value in (None, "") else literal(value)
