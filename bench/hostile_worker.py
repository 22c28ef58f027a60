"""Runs a batch of hostile cases in one process for bench/hostile_campaign.py.

Reads the cases (JSON lines) on stdin and writes one JSON line per finished case on stdout,
so that the campaign sees which case a crash (a signal) or a hang interrupted. Each CLI case
calls ``kiln.cli.main`` with stdout and stderr replaced by strict ASCII streams (as on a
terminal that cannot show what it is given); a traceback is any exception ``main`` lets
escape. ``fake_gpu`` cases make the GPU check possible (it is not on CPU machines), so that
``verify --gpu`` reaches the point where it would run a stored command.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
from pathlib import Path
from typing import Any


def _cli(case: dict[str, Any]) -> dict[str, Any]:
    from kiln.cli import main
    from kiln.inspection import gpu

    saved = sys.stdout, sys.stderr, sys.stdin, gpu.gpu_unavailable_reason
    out, err = io.BytesIO(), io.BytesIO()
    streams = (
        io.TextIOWrapper(out, encoding="ascii", errors="strict", write_through=True),
        io.TextIOWrapper(err, encoding="ascii", errors="strict", write_through=True),
    )
    sys.stdout, sys.stderr = streams
    sys.stdin = io.StringIO("y\n")  # not a terminal: --ask must still refuse
    if case.get("fake_gpu"):
        gpu.gpu_unavailable_reason = lambda: None  # type: ignore[assignment]
    try:
        status: int | None = main(case["argv"])
        crash = None
    except SystemExit as exit_:  # argparse
        status, crash = (exit_.code if isinstance(exit_.code, int) else 2), None
    except BaseException:  # noqa: BLE001 - what the campaign counts
        status, crash = None, traceback.format_exc()
    finally:
        for stream in streams:
            stream.flush()
        sys.stdout, sys.stderr, sys.stdin, gpu.gpu_unavailable_reason = saved
    result = {
        "status": status,
        "traceback": crash,
        "stdout": out.getvalue()[-2000:].decode("ascii", "replace"),
        "stderr": err.getvalue()[-2000:].decode("ascii", "replace"),
    }
    for stream in streams:
        stream.detach()  # the buffers stay open for the next read
    return result


def _decoder(case: dict[str, Any]) -> dict[str, Any]:
    from kiln.errors import KilnError
    from kiln.native import native

    data = Path(case["input"]).read_bytes()
    try:
        result = getattr(native(), case["decoder"])(data)
        if case["decoder"] == "decode_graph":
            result.to_dict()
        return {"status": 0, "traceback": None}
    except KilnError as err:
        return {"status": 2, "traceback": None, "stderr": str(err)[:500]}
    except BaseException:  # noqa: BLE001
        return {"status": None, "traceback": traceback.format_exc()}


def main() -> int:
    for line in sys.stdin.readlines():
        case = json.loads(line)
        result = _decoder(case) if "decoder" in case else _cli(case)
        result["id"] = case["id"]
        sys.__stdout__.write(json.dumps(result) + "\n")
        sys.__stdout__.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
