"""Output helpers shared by the commands: JSON for scripts, rich for people.

rich is imported only when something is rendered for a person, so that ``kiln run`` (which
execs the engine right away) and ``--json`` output stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

#: Exit codes: success, a negative answer (verify found problems, diff found differences),
#: an error (bad arguments, unreadable archive, a failed kiln operation).
OK, NEGATIVE, ERROR = 0, 1, 2
MAX_ITEMS = 20  # items of a list shown in human output before "… N more"


def print_json(obj: object, *, stream: Any = None) -> None:
    stream = sys.stdout if stream is None else stream
    json.dump(obj, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextmanager
def working(message: str, *, enabled: bool) -> Iterator[None]:
    """A spinner on stderr for long work, only on a terminal and never with --json."""
    if not enabled or not sys.stderr.isatty():
        with nullcontext():
            yield
        return
    with console(stderr=True).status(message):
        yield


def tree(title: str, data: Mapping[str, Any]) -> Tree:
    from rich.tree import Tree

    root = Tree(f"[bold]{_escape(title)}[/bold]")
    _branch(root, data)
    return root


def _branch(node: Tree, data: object) -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, Mapping | list | tuple) and value:
                _branch(node.add(f"[bold]{_escape(str(key))}[/bold]"), value)
            else:
                node.add(f"[bold]{_escape(str(key))}[/bold]: {_escape(_scalar(value))}")
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if all(not isinstance(item, Mapping | list | tuple) for item in data):
            shown = ", ".join(_scalar(item) for item in data[:MAX_ITEMS])
            more = f", … {len(data) - MAX_ITEMS} more" if len(data) > MAX_ITEMS else ""
            node.add(_escape(shown + more))
            return
        for index, item in enumerate(data[:MAX_ITEMS]):
            _branch(node.add(f"[{index}]".replace("[", "\\[")), item)
        if len(data) > MAX_ITEMS:
            node.add(f"… {len(data) - MAX_ITEMS} more")
    else:
        node.add(_escape(_scalar(data)))


def _scalar(value: object) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
