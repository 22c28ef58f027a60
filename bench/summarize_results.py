"""Keep `bench/results` readable: one summary per benchmark run, the bulk compressed in `raw/`.

Two steps, both lossless and idempotent:

- **Summaries.** A result JSON whose `modes.<mode>.kiln_report.stages` lists one entry per
  restored or captured graph (about 1,950 for qwen3-8b) keeps, at its own path, every field
  except those per-graph entries: each such list keeps its other stages and its first
  `capture_graph` entry (the one that waits for the restore). A top-level `summarized`
  object says what was cut and where it went. The full values go to
  `raw/<stem>.raw.json.xz`.
- **Repeats.** `restore-stages-*` files whose names differ only by a repeat number
  (`X`, `X2`, `X3` or `X`, `X-2`, `X-3`, ...) become one `<X>-runs.json` listing each run's
  record under its original file name; the original files go to `raw/<X>-runs.raw.json.xz`.

Nothing is written unless every original can be rebuilt byte for byte, first in memory and
again from the files written, before the original is replaced.

    python3 bench/summarize_results.py                 # summarize and group bench/results
    python3 bench/summarize_results.py --check         # rebuild every original, compare hashes
    python3 bench/summarize_results.py --expand NAME   # print an original (a summary's name or
                                                       # a grouped run's file name)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
RAW = "raw"
MARKER = "summarized"
RAW_FORMAT = "kiln-bench-raw/1"
#: Lists at most this long stay whole in the summary.
MIN_ENTRIES = 64
PER_GRAPH_STAGE = "capture_graph"
_REPEAT = re.compile(
    r"^(?P<base>.*?)(?:-(?P<dash>[2-9]|[1-9][0-9]+)|(?P<plain>[2-9]|[1-9][0-9]+))$"
)

Dump = dict[str, Any]


class RoundTripError(RuntimeError):
    """An original could not be rebuilt exactly from what would replace it."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dump_format(text: str) -> Dump | None:
    """The json.dumps settings that reproduce `text` exactly, or None."""
    value = json.loads(text)
    for indent in (2, 1, 4, None):
        body = json.dumps(value, indent=indent)
        for newline in (True, False):
            if body + ("\n" if newline else "") == text:
                return {"indent": indent, "trailing_newline": newline}
    return None


def dumps(value: Any, fmt: Dump) -> str:
    return json.dumps(value, indent=fmt["indent"]) + ("\n" if fmt["trailing_newline"] else "")


def raw_path(directory: Path, stem: str) -> Path:
    return directory / RAW / f"{stem}.raw.json.xz"


def read_raw(path: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(lzma.decompress(path.read_bytes()).decode("utf-8"))
    if raw.get("format") != RAW_FORMAT:
        raise RoundTripError(f"{path}: not a {RAW_FORMAT} file")
    return raw


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- summaries -------------------------------------------------------------------------------


def _bulky_lists(record: dict[str, Any]) -> list[list[str]]:
    """Paths of the long per-event lists: modes/<mode>/kiln_report/stages (one entry per
    graph) and modes/<mode>/worker_stages/collections (one entry per garbage collection)."""
    paths = []
    modes = record.get("modes")
    if isinstance(modes, dict):
        for mode, result in modes.items():
            if not isinstance(result, dict):
                continue
            for parent, key in (("kiln_report", "stages"), ("worker_stages", "collections")):
                holder = result.get(parent)
                value = holder.get(key) if isinstance(holder, dict) else None
                if isinstance(value, list) and len(value) > MIN_ENTRIES:
                    paths.append(["modes", mode, parent, key])
    return paths


def _get(value: Any, path: list[str]) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(value: Any, path: list[str], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new  # an existing key: its place in the object is kept


def _reduce_stages(stages: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    kept, per_graph, first_seen = [], [], False
    for entry in stages:
        if isinstance(entry, dict) and entry.get("name") == PER_GRAPH_STAGE:
            per_graph.append(entry)
            if first_seen:
                continue
            first_seen = True
        kept.append(entry)
    durations = [float(e.get("duration_s") or 0.0) for e in per_graph]
    note = {
        "entries": len(stages),
        "kept": len(kept),
        f"{PER_GRAPH_STAGE}_entries": len(per_graph),
        f"{PER_GRAPH_STAGE}_duration_s_sum": round(sum(durations), 6),
        f"{PER_GRAPH_STAGE}_duration_s_max": max(durations, default=0.0),
    }
    return kept, note


def _reduce_collections(collections: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Full (generation 2) collections stay; the note sums every generation's time."""
    kept = [c for c in collections if isinstance(c, dict) and c.get("generation") == 2]
    by_generation: dict[str, float] = defaultdict(float)
    for c in collections:
        if isinstance(c, dict):
            by_generation[str(c.get("generation"))] += float(c.get("s") or 0.0)
    note = {
        "entries": len(collections),
        "kept": len(kept),
        "kept_are": "generation 2 (full) collections",
        "s_sum": round(sum(by_generation.values()), 6),
        "s_sum_by_generation": {g: round(v, 6) for g, v in sorted(by_generation.items())},
    }
    return kept, note


def summarize(name: str, text: str) -> tuple[str, dict[str, Any]] | None:
    """(summary text, raw record) for one result file, or None when it has nothing bulky."""
    record = json.loads(text)
    if not isinstance(record, dict) or MARKER in record:
        return None
    paths = _bulky_lists(record)
    fmt = dump_format(text)
    if not paths or fmt is None:
        return None
    stem = name.removesuffix(".json")
    replaced, reduced = [], {}
    for path in paths:
        full = _get(record, path)
        kept, note = _reduce_stages(full) if path[-1] == "stages" else _reduce_collections(full)
        replaced.append({"path": path, "value": full})
        reduced["/".join(path)] = note
        _set(record, path, kept)
    record[MARKER] = {
        "raw": f"{RAW}/{stem}.raw.json.xz",
        "expand": f"python3 bench/summarize_results.py --expand {name}",
        "reduced": reduced,
    }
    raw = {
        "format": RAW_FORMAT,
        "kind": "summary",
        "source": name,
        "sha256": sha256(text),
        "dump": fmt,
        "replaced": replaced,
    }
    return dumps(record, fmt), raw


def expand_summary(summary_text: str, raw: dict[str, Any]) -> str:
    record = json.loads(summary_text)
    record.pop(MARKER)
    for item in raw["replaced"]:
        _set(record, item["path"], item["value"])
    text = dumps(record, raw["dump"])
    if sha256(text) != raw["sha256"]:
        raise RoundTripError(f"{raw['source']}: rebuilt text differs from the original")
    return text


# --- repeated runs ---------------------------------------------------------------------------


def repeat_groups(names: list[str]) -> dict[str, list[str]]:
    """restore-stages files that differ only by a repeat number, by family name (X)."""
    present = {n.removesuffix(".json") for n in names}
    groups: dict[str, set[str]] = defaultdict(set)
    for stem in sorted(present):
        if not stem.startswith("restore-stages-"):
            continue
        match = _REPEAT.match(stem)
        if not match:
            continue
        base = match["base"]
        # X2 counts as a repeat of X only where X exists (groups1, groups64, n2 are settings);
        # X-2 counts where X or another X-N exists.
        if match["plain"] is not None and base not in present:
            continue
        groups[base].add(stem)
        if base in present:
            groups[base].add(base)
    return {
        base: sorted(members, key=lambda stem: _repeat_number(base, stem))
        for base, members in sorted(groups.items())
        if len(members) >= 2
    }


def _repeat_number(base: str, stem: str) -> int:
    """1 for X itself, N for XN or X-N."""
    return int(stem[len(base) :].lstrip("-") or 1)


def group(base: str, texts: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    """(group file text, raw record) for one family of repeats, or None if formats differ."""
    formats = {json.dumps(dump_format(t)) for t in texts.values()}
    if len(formats) != 1 or "null" in formats:
        return None
    fmt: Dump = json.loads(formats.pop())
    records = {name: json.loads(text) for name, text in texts.items()}
    runs = [
        {"file": name, "sha256": sha256(texts[name]), "record": records[name]} for name in texts
    ]
    name = f"{base}-runs.json"
    doc: dict[str, Any] = {
        "benchmark": "restore-stages-runs",
        "family": base,
        "files": list(texts),
        "raw": f"{RAW}/{base}-runs.raw.json.xz",
        "expand": f"python3 bench/summarize_results.py --expand {next(iter(texts))}",
        "dump": fmt,
    }
    for key in ("restore_seconds", "capture_seconds"):
        if all(isinstance(r.get(key), (int, float)) for r in records.values()):
            doc[key] = [records[n][key] for n in texts]
    doc["runs"] = runs
    raw = {
        "format": RAW_FORMAT,
        "kind": "group",
        "source": name,
        "files": {n: {"sha256": sha256(t), "text": t} for n, t in texts.items()},
    }
    return dumps(doc, {"indent": 1, "trailing_newline": True}), raw


def expand_group(group_text: str, raw: dict[str, Any] | None, member: str) -> str:
    """One original of a group, from the group file (checked against raw/ where given)."""
    doc = json.loads(group_text)
    (run,) = [r for r in doc["runs"] if r["file"] == member]
    text = dumps(run["record"], doc["dump"])
    if sha256(text) != run["sha256"]:
        raise RoundTripError(f"{member}: rebuilt text differs from the original")
    if raw is not None and raw["files"][member]["text"] != text:
        raise RoundTripError(f"{member}: group file and raw/ disagree")
    return text


# --- driver ----------------------------------------------------------------------------------


def _compress(raw: dict[str, Any]) -> bytes:
    return lzma.compress(
        json.dumps(raw, separators=(",", ":")).encode("utf-8"), preset=9 | lzma.PRESET_EXTREME
    )


def run(directory: Path) -> list[str]:
    """Summarize and group `directory` in place; returns what was done, one line each."""
    done: list[str] = []
    names = sorted(p.name for p in directory.glob("*.json"))
    originals = {n: (directory / n).read_text(encoding="utf-8") for n in names}

    # Plan everything and check it in memory before writing anything.
    summaries: dict[str, tuple[str, bytes]] = {}
    for name, text in originals.items():
        made = summarize(name, text)
        if made is None:
            continue
        summary, raw = made
        blob = _compress(raw)
        if expand_summary(summary, read_raw_bytes(blob)) != text:
            raise RoundTripError(name)
        summaries[name] = (summary, blob)
    groups: dict[str, tuple[list[str], str, bytes]] = {}
    for base, stems in repeat_groups(names).items():
        members = [f"{s}.json" for s in stems]
        made = group(base, {m: originals[m] for m in members})
        if made is None:
            continue
        doc, raw = made
        blob = _compress(raw)
        for m in members:
            if expand_group(doc, read_raw_bytes(blob), m) != originals[m]:
                raise RoundTripError(m)
        groups[f"{base}-runs.json"] = (members, doc, blob)

    # Write raw/ first, read it back, then replace the originals.
    for name, (summary, blob) in summaries.items():
        path = raw_path(directory, name.removesuffix(".json"))
        _write(path, blob)
        if expand_summary(summary, read_raw(path)) != originals[name]:
            raise RoundTripError(name)
        _write(directory / name, summary.encode("utf-8"))
        if (
            expand_summary((directory / name).read_text(encoding="utf-8"), read_raw(path))
            != originals[name]
        ):
            raise RoundTripError(name)
        done.append(f"summarized {name}")
    for name, (members, doc, blob) in groups.items():
        path = raw_path(directory, name.removesuffix(".json"))
        _write(path, blob)
        _write(directory / name, doc.encode("utf-8"))
        written = (directory / name).read_text(encoding="utf-8")
        for m in members:
            if expand_group(written, read_raw(path), m) != originals[m]:
                raise RoundTripError(m)
        for m in members:
            (directory / m).unlink()
        done.append(f"grouped {len(members)} runs into {name}")
    return done


def read_raw_bytes(blob: bytes) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(lzma.decompress(blob).decode("utf-8"))
    return raw


def check(directory: Path) -> list[str]:
    """Rebuild every original that raw/ holds; returns one line per original checked."""
    checked = []
    for path in sorted((directory / RAW).glob("*.raw.json.xz")):
        raw = read_raw(path)
        source = directory / raw["source"]
        text = source.read_text(encoding="utf-8")
        if raw["kind"] == "summary":
            expand_summary(text, raw)
            checked.append(f"ok {raw['source']}")
        else:
            for member, entry in raw["files"].items():
                if sha256(entry["text"]) != entry["sha256"]:
                    raise RoundTripError(f"{path}: {member} does not match its hash")
                expand_group(text, raw, member)
                checked.append(f"ok {member} (in {raw['source']})")
    return checked


def expand(directory: Path, name: str) -> str:
    """The original text of `name`: a summarized file, or a run held by a `-runs.json` file."""
    for path in sorted((directory / RAW).glob("*.raw.json.xz")):
        raw = read_raw(path)
        if raw["kind"] == "summary" and raw["source"] == name:
            return expand_summary((directory / name).read_text(encoding="utf-8"), raw)
        if raw["kind"] == "group" and name in raw["files"]:
            return expand_group((directory / raw["source"]).read_text(encoding="utf-8"), raw, name)
    source = directory / name
    if source.exists():
        text = source.read_text(encoding="utf-8")
        if not name.endswith(".json") or MARKER not in json.loads(text):
            return text  # never summarized: the file is its own original
    raise FileNotFoundError(f"{name}: no such result in {directory}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dir", type=Path, default=RESULTS, help="results directory (default: bench/results)"
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="rebuild every original and compare")
    action.add_argument("--expand", metavar="NAME", help="write the original of NAME")
    p.add_argument("--out", type=Path, help="with --expand: write here instead of stdout")
    args = p.parse_args(argv)
    if args.expand:
        text = expand(args.dir, args.expand)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    lines = check(args.dir) if args.check else run(args.dir)
    print("\n".join(lines) if lines else "nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
