"""Merge `vllm_cold_start.py` results of consecutive runs on one machine into one record, as
if one run had made every start.

The whole sequence (native-cold, native, save-cold, SAVE, LOADs) can be split over several
runs of a few modes each. Each run writes its record (greedy tokens left out) and a logs
archive whose `<mode>.json` files hold each start's tokens; this reads both back and
summarizes the starts together: tokens compared with `native`, ratios over `native`,
medians over repeats.

    python3 bench/vllm_merge_calls.py --out bench/results/NAME.json \\
        RESULT_A.json:LOGS_A.tgz RESULT_B.json:LOGS_B.tgz
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

from vllm_cold_start import FACT_KEYS, summarize


def starts_of(result_path: str, logs_path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One call's record and its starts, each with its greedy tokens put back."""
    record = json.loads(Path(result_path).read_text())
    starts: dict[str, dict[str, Any]] = {}
    with tarfile.open(logs_path) as logs:
        for mode, result in record["modes"].items():
            start = dict(result)
            if result.get("ok"):
                child = json.loads(_member(logs, logs_path, f"{mode}.json"))
                start["tokens"] = child["tokens"]
                start["long_tokens"] = child["long_tokens"]
            starts[mode] = start
    return record, starts


def _member(logs: tarfile.TarFile, logs_path: str, name: str) -> bytes:
    """A file of the logs archive (tar writes it as `./name` or `name`)."""
    for candidate in (f"./{name}", name):
        try:
            member = logs.extractfile(candidate)  # raises KeyError when absent
        except KeyError:
            continue
        if member is not None:
            return member.read()
    raise SystemExit(f"{logs_path} holds no {name}")


def merge(calls: list[tuple[str, str]]) -> dict[str, Any]:
    first: dict[str, Any] | None = None
    modes: dict[str, dict[str, Any]] = {}
    order: list[list[str]] = []
    for result_path, logs_path in calls:
        record, starts = starts_of(result_path, logs_path)
        if first is None:
            first = record
        for key in (*FACT_KEYS, "model", "max_model_len"):
            if record[key] != first[key]:
                raise SystemExit(f"{result_path}: {key} {record[key]!r}, not {first[key]!r}")
        for mode in starts:
            if mode in modes:
                raise SystemExit(f"mode {mode!r} started in two calls; name one `{mode}.2`")
        modes.update(starts)
        order.append(list(starts))
    assert first is not None
    facts = {k: first[k] for k in FACT_KEYS}
    merged = summarize(modes, facts, first["model"], first["max_model_len"])
    merged["device_calls"] = order  # the starts of each call, in order, on one machine
    return merged


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("calls", nargs="+", help="RESULT.json:LOGS.tgz of each call, in order")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    calls = [tuple(c.split(":", 1)) for c in args.calls]
    if any(len(c) != 2 for c in calls):
        raise SystemExit("each call is RESULT.json:LOGS.tgz")
    merged = merge([(r, logs) for r, logs in calls])
    Path(args.out).write_text(json.dumps(merged, indent=1, default=str))
    print(
        json.dumps(
            {"tokens": merged["tokens_identical_to_native"], "ratios": merged["ratios"]}, indent=1
        )
    )
    return 0 if all(merged["tokens_identical_to_native"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
