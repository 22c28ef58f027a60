"""Hostile inputs for bench/hostile_campaign.py: mutated archives, JSON sections and
startup reports, each with the verdict a sound kiln must give.

A case is a dict (JSON-serialisable): ``id``, ``reader`` (what it exercises), ``argv`` or
``decoder``, the file(s) it reads and ``corrupt``: whether the input is certainly invalid
(a byte of a checksummed archive changed, or a value its schema forbids). A corrupt input
must never be accepted (exit status 0, or a LOAD that restores).
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln.archive import ArchiveReader, write_archive

HOSTILE_STRINGS = [
    "[/]x",
    "dir_[/]x",
    ":cross_mark:",
    "[bold]b[/bold]",
    "\x1b[2J\x1b[H",
    "\udc80lone",
    "a\\",
    "\u202eevil",
    "x" * 70_000,
]
INVALID_SCALARS: list[Any] = [-1, 10**30, -(10**30), True, "0", None, [], {}, 1.5, "[/]x"]

# Values each schema certainly forbids, by section and path.
INVALID_MANIFEST: list[tuple[tuple[Any, ...], Any]] = [
    (("device",), -1),
    (("device",), "0"),
    (("device",), 10**30),
    (("trajectory",), 5),
    (("trajectory",), [[0, 0, 0]]),
    (("trajectory",), [[0, 4096]]),
    (("trajectory",), [[0, 1, 9]]),
    (("trajectory",), [[-1, 1, 0]]),
    (("window",), [5, 1]),
    (("window",), "all"),
    (("binaries", 0, "size"), 0),
    (("binaries", 0, "size"), -5),
    (("binaries", 0, "sha256"), "zz" * 32),
    (("binaries", 0, "section"), "nowhere"),
    (("graphs", 0, "nodes"), -1),
    (("graphs", 0, "nodes"), 10**30),
    (("graphs", 0, "section"), "nowhere"),
    (("graphs", 0, "inputs", 0, "dtype"), "complex128"),
    (("graphs", 0, "inputs", 0, "address"), 0),
    (("graphs", 0, "inputs", 0, "shape"), [-1, 64]),
    (("graphs", 0, "outputs"), "none"),
    (("recipe",), "sh -c 'touch /tmp/x'"),
    (("recipe",), {"kind": ""}),
    (("groups",), [{"template": "decode/bs=1", "members": [], "differing": []}]),
    (("window_unbacked",), [99]),
]
INVALID_LIFECYCLE: list[tuple[tuple[Any, ...], Any]] = [
    (("kv_capacity",), {"num_blocks": -1}),
    (("kv_capacity",), {"num_blocks": 10**30}),
    (("kv_capacity",), {"num_blocks": "1000"}),
    (("kv_capacity",), {"num_blocks": True}),
    (("kv_capacity",), {}),
    (("kv_capacity",), [1000]),
    (("version",), 2),
    (("engine",), 5),
    (("warmup",), {"compile": "fly"}),
    (("warmup",), ["run"]),
    (("graphs",), "all"),
    (("graphs",), [1, 2]),
]
INVALID_FINGERPRINT: list[Any] = [[1, 2], {"a": 1}, 10**30, "x" * 70_000]
INVALID_REPORTS: list[str] = [
    "[]",
    "null",
    '"restored"',
    "{}",
    '{"total_s": "fast"}',
    '{"outcome": "[/]x"}',
    '{"outcome": "restored", "phases_s": []}',
    '{"outcome": "restored", "phases_s": {"a": "slow"}}',
    '{"outcome": "failed", "error": "boom"}',
    '{"outcome": "restored", "graphs_restored": -1}',
    '{"outcome": "restored", "rank": "0"}',
    '{"outcome": "restored", "total_s": 1e999}',
    "{outcome",
    "\xff\xfe",
]


def mutate_bytes(rng: random.Random, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        how = rng.choice(["flip", "flip", "truncate", "extend", "splice"])
        if how == "flip" and data:
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        elif how == "truncate":
            del data[rng.randint(0, len(data)) :]
        elif how == "extend":
            data += rng.randbytes(rng.randint(1, 64))
        elif data:
            i = rng.randrange(len(data))
            data[i : i + rng.randint(0, 16)] = rng.randbytes(rng.randint(0, 16))
    return bytes(data)


def sections_of(path: Path) -> dict[str, bytes]:
    with ArchiveReader(path) as reader:
        return {name: bytes(reader.section(name)) for name in reader.names}


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> bool:
    node = doc
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) or (isinstance(node, list) and path[-1] < len(node)):
        node[path[-1]] = value
        return True
    return False


def _random_leaf(rng: random.Random, doc: Any) -> Any:
    """``doc`` with one random leaf replaced by a hostile value (validity unknown)."""
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return doc
        key = rng.choice(keys)
        if isinstance(node[key], dict | list) and node[key] and rng.random() < 0.6:
            node = node[key]
            continue
        node[key] = rng.choice([*INVALID_SCALARS, *HOSTILE_STRINGS])
        return doc


def _json_bytes(doc: Any) -> bytes:
    # ensure_ascii: a lone surrogate travels as an escape, as a hostile writer would write it
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def rewrite(path: Path, base: dict[str, bytes], section: str, doc: Any) -> None:
    sections = dict(base)
    sections[section] = _json_bytes(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_archive(path, sections)  # checksums recomputed: only the schema can refuse it


def semantic(
    rng: random.Random, base: dict[str, bytes], path: Path, invalid: dict[str, list[Any]]
) -> bool:
    """Write ``base`` with one JSON section patched into ``path``; whether it is certainly
    invalid (a value the schema forbids) rather than random."""
    section = rng.choice(sorted(invalid))
    doc = json.loads(base[section])
    choices = invalid[section]
    if rng.random() < 0.7 and choices:
        if section == "fingerprint":
            doc[rng.choice(sorted(doc))] = rng.choice(choices)
            ok = True
        else:
            where, value = rng.choice(choices)
            ok = _set(doc, where, value)
    else:
        doc, ok = _random_leaf(rng, doc), False
    rewrite(path, base, section, doc)
    return ok


class CaseMaker:
    """Writes each case's input under ``root`` and returns its description."""

    def __init__(self, root: Path, rich: Path, toy: Path, report: bytes, marker: Path) -> None:
        self.root = root
        self.rich_bytes = rich.read_bytes()
        self.rich = sections_of(rich)
        self.toy_bytes = toy.read_bytes()
        self.toy = sections_of(toy)
        self.report = report
        self.marker = marker
        self.makers: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
            "verify": self.verify,
            "verify --gpu": self.verify_gpu,
            "inspect": self.inspect,
            "diff": self.diff,
            "report": self.report_case,
            "decoders": self.decoders,
            "run load fallback": lambda rng, i: self.run(rng, i, "fallback"),
            "run load strict": lambda rng, i: self.run(rng, i, "strict"),
            "special files": self.special,
        }

    def _rich_archive(self, rng: random.Random, directory: Path) -> bool:
        path = directory / "graphs.kiln"
        directory.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.5:
            data = mutate_bytes(rng, self.rich_bytes)
            path.write_bytes(data)
            return data != self.rich_bytes
        invalid = {"manifest": INVALID_MANIFEST, "fingerprint": INVALID_FINGERPRINT}
        return semantic(rng, self.rich, path, invalid)

    def _archive_case(self, rng: random.Random, i: int, reader: str, argv: list[str]) -> dict:
        directory = self.root / f"{i:06d}"
        corrupt = self._rich_archive(rng, directory)
        json_flag = ["--json"] if rng.random() < 0.5 else []
        return {
            "id": i,
            "reader": reader,
            "argv": [*argv, str(directory / "graphs.kiln"), *json_flag],
            "corrupt": corrupt,
        }

    def verify(self, rng: random.Random, i: int) -> dict:
        return self._archive_case(rng, i, "verify", ["verify"])

    def verify_gpu(self, rng: random.Random, i: int) -> dict:
        ask = ["--ask"] if rng.random() < 0.5 else []
        case = self._archive_case(rng, i, "verify --gpu", ["verify", "--gpu", *ask])
        case["fake_gpu"] = True
        return case

    def inspect(self, rng: random.Random, i: int) -> dict:
        return self._archive_case(rng, i, "inspect", ["inspect"])

    def diff(self, rng: random.Random, i: int) -> dict:
        directory = self.root / f"{i:06d}"
        path = directory / "graphs.kiln"
        directory.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.4:
            data = mutate_bytes(rng, self.rich_bytes)
            path.write_bytes(data)
            corrupt = False  # diff reads the header and the fingerprint only
        else:
            corrupt = semantic(rng, self.rich, path, {"fingerprint": INVALID_FINGERPRINT})
        other = self.root / "base-rich" / "graphs.kiln"
        argv = ["diff", str(other), str(path)] + (["--json"] if rng.random() < 0.5 else [])
        return {"id": i, "reader": "diff", "argv": argv, "corrupt": corrupt}

    def report_case(self, rng: random.Random, i: int) -> dict:
        directory = self.root / f"{i:06d}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "startup-report.json"
        roll = rng.random()
        if roll < 0.4:
            path.write_bytes(rng.choice(INVALID_REPORTS).encode("utf-8", "surrogateescape"))
            corrupt = True
        elif roll < 0.7:
            doc = _random_leaf(rng, json.loads(self.report))
            path.write_bytes(_json_bytes(doc))
            corrupt = False
        else:
            data = mutate_bytes(rng, self.report)
            path.write_bytes(data)
            corrupt = False  # a mutation may leave valid JSON
        argv = ["report", str(directory)] + (["--json"] if rng.random() < 0.5 else [])
        return {"id": i, "reader": "report", "argv": argv, "corrupt": corrupt}

    def decoders(self, rng: random.Random, i: int) -> dict:
        # The graph blob and the kernel images of the rich archive, mutated.
        name = rng.choice([n for n in self.rich if n.startswith(("g", "b"))])
        data = mutate_bytes(rng, self.rich[name])
        path = self.root / f"{i:06d}.bin"
        path.write_bytes(data)
        decoder = "decode_graph" if name.startswith("g") else "validate_image"
        return {"id": i, "reader": f"native {decoder}", "decoder": decoder, "input": str(path)}

    def run(self, rng: random.Random, i: int, policy: str, directory: Path | None = None) -> dict:
        special = directory is not None
        directory = directory or self.root / f"{i:06d}"
        path = directory / "graphs.kiln"
        directory.mkdir(parents=True, exist_ok=True)
        if special:
            corrupt = True
        elif rng.random() < 0.5:
            data = mutate_bytes(rng, self.toy_bytes)
            path.write_bytes(data)
            corrupt = data != self.toy_bytes
        else:
            invalid = {"lifecycle": INVALID_LIFECYCLE, "fingerprint": INVALID_FINGERPRINT}
            corrupt = semantic(rng, self.toy, path, invalid)
        argv = [
            "run",
            "--mode",
            "load",
            "--policy",
            policy,
            "--archive",
            str(directory),
            "--",
            sys.executable,
            "-m",
            "kiln_test_adapter.engine",
        ]
        return {
            "id": i,
            "reader": f"run --mode load --policy {policy}",
            "argv": argv,
            "corrupt": corrupt,
            "policy": policy,
        }

    def special(self, rng: random.Random, i: int) -> dict:
        """A FIFO, a device, a directory or a dangling link where an archive or a report
        belongs: refused by name, never read (a FIFO would block, /dev/zero never ends)."""
        directory = self.root / f"{i:06d}"
        directory.mkdir(parents=True, exist_ok=True)
        verb = rng.choice(["verify", "inspect", "diff", "report", "run fallback", "run strict"])
        name = "startup-report.json" if verb == "report" else "graphs.kiln"
        target = directory / name
        kind = rng.choice(["fifo", "dev-zero", "dev-null", "directory", "dangling"])
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "directory":
            target.mkdir()
        else:
            where = {"dev-zero": "/dev/zero", "dev-null": "/dev/null"}.get(kind, "/nonexistent")
            target.symlink_to(where)
        if verb.startswith("run"):
            case = self.run(rng, i, verb.split()[1], directory=directory)
        elif verb == "diff":
            case = {"argv": ["diff", str(self.root / "base-rich"), str(directory)]}
        else:
            case = {"argv": [verb, str(directory)]}
        case.update({"id": i, "reader": f"special files ({verb})", "corrupt": True})
        return case
