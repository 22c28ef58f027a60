"""Output helpers shared by the commands: JSON for scripts, rich for people.

Every string that comes from a user, an archive, a manifest or a report is shown literally:
the console interprets no markup and no emoji codes in plain strings (styling goes through
``rich.text.Text`` objects), control characters and lone surrogates are shown as escapes,
and long values are cut to :data:`MAX_CHARS` characters before rich lays them out.

rich is imported only when something is rendered for a person, so that ``kiln run`` (which
execs the engine right away) and ``--json`` output stay fast.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

#: Exit codes, the same for every command (listed in ``kiln --help``).
OK = 0  # success
NEGATIVE = 1  # a check failed: verify found problems, diff found differences, ...
ERROR = 2  # a usage error, or input that cannot be read (missing, not an archive, ...)
EXIT_CODES_HELP = """\
exit status (every command):
  0  success
  1  a check failed (verify found problems, diff found differences, an adapter failed)
  2  usage error, or input that cannot be read (missing, not a kiln archive, not a
     regular file, malformed report)
"""
MAX_ITEMS = 20  # items of a list shown in human output before "… N more"
MAX_CHARS = 2000  # characters of one value shown in human output before "… N more characters"

# C0 and C1 control characters (a terminal would act on them) and lone surrogates (which no
# encoder can write).
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def literal(text: object, *, limit: int = MAX_CHARS) -> str:
    """``text`` as it can be shown as is: unshowable characters escaped, at most ``limit``
    characters (then the number of characters left out)."""
    value = text if isinstance(text, str) else str(text)
    more = len(value) - limit
    if more > 0:
        value = value[:limit]
    value = _UNSHOWABLE.sub(_escape_char, value)
    return value + f"… ({more} more characters)" if more > 0 else value


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line built from literal parts: ``"text"`` or ``("text", "style")``; every text is
    passed through :func:`literal`, none is read as markup."""
    from rich.text import Text

    line = Text()
    for part in parts:
        if isinstance(part, tuple):
            line.append(literal(part[0]), style=part[1])
        else:
            line.append(literal(part))
    return line


def print_json(obj: object, *, stream: Any = None) -> None:
    stream = sys.stdout if stream is None else stream
    # ensure_ascii: lone surrogates and control characters travel as JSON escapes.
    json.dump(obj, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def console(*, stderr: bool = False) -> Console:
    """A console that prints plain strings literally (no markup, emoji codes or
    highlighting); style with :func:`styled`."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=True)


def robust_streams() -> None:
    """Let stdout and stderr write any string: what their encoding cannot hold is escaped."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or exotic stream: left as it is
                pass


@contextmanager
def working(message: str, *, enabled: bool) -> Iterator[None]:
    """A spinner on stderr for long work, only on a terminal and never with --json."""
    if not enabled or not sys.stderr.isatty():
        with nullcontext():
            yield
        return
    with console(stderr=True).status(styled(message)):
        yield


def tree(title: str, data: Mapping[str, Any]) -> Tree:
    from rich.tree import Tree

    root = Tree(styled((title, "bold")))
    _branch(root, data)
    return root


def _branch(node: Tree, data: object) -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, Mapping | list | tuple) and value:
                _branch(node.add(styled((str(key), "bold"))), value)
            else:
                node.add(styled((str(key), "bold"), ": ", _scalar(value)))
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if all(not isinstance(item, Mapping | list | tuple) for item in data):
            shown = ", ".join(_scalar(item)[:MAX_CHARS] for item in data[:MAX_ITEMS])
            more = f", … {len(data) - MAX_ITEMS} more" if len(data) > MAX_ITEMS else ""
            node.add(styled(shown + more))
            return
        for index, item in enumerate(data[:MAX_ITEMS]):
            _branch(node.add(styled(f"[{index}]")), item)
        if len(data) > MAX_ITEMS:
            node.add(styled(f"… {len(data) - MAX_ITEMS} more"))
    else:
        node.add(styled(_scalar(data)))


def _scalar(value: object) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
