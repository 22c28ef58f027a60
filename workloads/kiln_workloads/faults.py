"""Fault injection against a real archive, in one LOAD process: every corrupted variant
must fail with its specific error before touching memory, then the intact archive must
still restore bit-exact.

    python -m kiln_workloads.faults --workload matmul --archive DIR --out faults.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kiln.archive import ArchiveReader, write_archive
from kiln.archive.jsonsec import dump_json, load_json


def variants(good: Path, workdir: Path) -> list[tuple[str, Path, str]]:
    """(label, path, expected error class) for each corruption of `good`."""
    out = []
    data = good.read_bytes()
    with ArchiveReader(good) as r:
        names = list(r.names)
        sections = {n: bytes(r.section(n)) for n in names}
        offsets = {}
        for n in names:
            view = r.section(n)
            if len(view):
                # Locate the section in the file through its bytes' position in the mmap.
                offsets[n] = data.find(bytes(view[: min(64, len(view))]))
    for n in names:
        if n not in offsets or offsets[n] < 0:
            continue
        b = bytearray(data)
        mid = offsets[n] + max(0, min(len(sections[n]), 64) // 2)
        b[mid] ^= 0x40
        p = workdir / f"flip-{n}.kiln"
        p.write_bytes(bytes(b))
        out.append((f"flipped byte in section {n}", p, "ArchiveCorrupt"))
    for frac in (0.5, 0.99):
        p = workdir / f"truncated-{frac}.kiln"
        p.write_bytes(data[: int(len(data) * frac)])
        out.append((f"truncated to {frac:.0%}", p, "ArchiveTruncated"))
    fp = load_json(sections["fingerprint"], "fingerprint")
    for field, value in (
        ("gpu_name", "Imaginary GPU"),
        ("torch_version", "0.0.0"),
        ("driver_version", 1),
    ):
        changed = dict(sections)
        changed["fingerprint"] = dump_json({**fp, field: value})
        p = workdir / f"fingerprint-{field}.kiln"
        write_archive(p, changed)
        out.append((f"fingerprint field {field} changed", p, "FingerprintMismatch"))
    return out


def main(argv: list[str] | None = None) -> int:
    import kiln
    import torch

    from kiln_workloads import build
    from kiln_workloads.run import SEED, _compare, _outputs

    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--archive", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    good = Path(args.archive) / "graphs.kiln"
    workdir = Path(args.archive) / "faults"
    workdir.mkdir(exist_ok=True)

    region = kiln.Region().open()
    wl = build(args.workload)
    torch.cuda.synchronize()
    cases: list[dict[str, Any]] = []
    for label, path, expected in variants(good, workdir):
        before = region.trajectory_length()
        try:
            kiln.load(path, region)
            got, msg = "no error", ""
        except Exception as e:  # noqa: BLE001 (each case reports whatever it raised)
            got, msg = type(e).__name__, str(e)
        cases.append(
            {
                "case": label,
                "expected": expected,
                "got": got,
                "message": msg,
                "ok": got == expected and region.trajectory_length() == before,
            }
        )
    restored = kiln.load(good, region)
    exact = True
    for g in wl.graphs:
        wl.refill(SEED)
        restored[g.name].replay()
        got_out = [t.clone() for t in restored[g.name].outputs]
        wl.refill(SEED)
        exact &= _compare(got_out, [t.clone() for t in _outputs(g.fn(*g.inputs))])["bit_exact"]
    result = {
        "cases": cases,
        "all_ok": all(c["ok"] for c in cases),
        "intact_restore_bit_exact": exact,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0 if result["all_ok"] and exact else 1


if __name__ == "__main__":
    sys.exit(main())
