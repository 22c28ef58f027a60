"""``kiln config``: the effective configuration and where each value comes from."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.output import OK, console, literal, print_json
from kiln.config import ENVIRONMENT_VARIABLES, load_config


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("config", help="show the effective configuration")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    values = config.as_dict()
    if args.json:
        print_json(
            {
                "file": None if config.config_file is None else str(config.config_file),
                "values": values,
                "sources": dict(config.sources),
            }
        )
        return OK
    from rich.table import Table

    table = Table(
        "key", "value", "source", "variable", title=literal(f"file: {config.config_file}")
    )
    for key, value in values.items():
        table.add_row(
            literal(key),
            literal(value),
            literal(config.sources.get(key, "default")),
            literal(ENVIRONMENT_VARIABLES[key]),
        )
    console().print(table)
    return OK
