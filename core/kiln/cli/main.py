"""``kiln``: argument parsing and dispatch. Each command lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln import __version__
from kiln.cli import (
    adapters_cmd,
    config_cmd,
    demo_cmd,
    diff_cmd,
    inspect_cmd,
    report_cmd,
    run_cmd,
    verify_cmd,
)
from kiln.cli.output import ERROR, EXIT_CODES_HELP, literal, print_json, robust_streams
from kiln.errors import KilnError

COMMANDS = (
    run_cmd,
    inspect_cmd,
    verify_cmd,
    diff_cmd,
    report_cmd,
    adapters_cmd,
    config_cmd,
    demo_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln",
        description="Persist captured CUDA graphs with their execution context; restart LLM "
        "engines in seconds.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $KILN_CONFIG, ./kiln.toml, $XDG_CONFIG_HOME/kiln/config.toml)",
    )
    # "verb", not "command": `kiln run` has a positional argument named command.
    commands = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kiln``; returns the exit status (0 ok, 1 a check failed, 2 usage error or
    unreadable input: see EXIT_CODES_HELP)."""
    robust_streams()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the engine (run) or the demo, untouched:
    # argparse would otherwise try to interpret the engine's own options.
    head, rest = _split(args_list)
    parser = build_parser()
    args = parser.parse_args(head)
    if rest is not None and not getattr(args, "takes_rest", False):
        parser.error(f"kiln {args.verb} takes no arguments after --")
    args.rest = rest
    try:
        status: int = args.handler(args)
        return status
    except KilnError as err:
        if getattr(args, "json", False):
            print_json({"error": str(err), "type": type(err).__name__})
        else:
            print(f"kiln {args.verb}: error: {literal(err, limit=8192)}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return 130


def _split(argv: list[str]) -> tuple[list[str], list[str] | None]:
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]
