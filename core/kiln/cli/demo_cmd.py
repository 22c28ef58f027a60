"""``kiln demo``: the end-to-end demonstration (delegates to kiln.demo)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="capture, save and restore a small model's graphs (needs a GPU)"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the demo")
    parser.set_defaults(handler=run, takes_rest=True)


def run(args: argparse.Namespace) -> int:
    from kiln.demo import main as demo_main  # imports torch: only when asked for

    status: int = demo_main([*args.args, *(args.rest or [])])
    return status
