#!/usr/bin/env python3
"""Assemble the TensorRT-LLM files kiln-trtllm's seam contract reads into a directory of their
own, and check the contract on it. It fetches nothing: the source is an existing TensorRT-LLM
checkout (at the release commit) or the directory holding an installed or unpacked
`tensorrt_llm/` package.

    python adapters/trtllm/tools/assemble_contract_tree.py --list
    python adapters/trtllm/tools/assemble_contract_tree.py --from /path/to/TensorRT-LLM --to DIR

`--list` prints the files, one per line, relative to the directory that holds `tensorrt_llm/`.
`--from/--to` copies exactly those files (nothing else) into DIR, keeping their paths, prints
each file's sha256 (to record which version was checked), then runs the contract on DIR and
exits as adapters/trtllm/check_contract.py does: 0 when it holds, 1 with one line per moved
seam, 2 when a file is missing from the source. Then, for the test suite:
`KILN_TRTLLM_SOURCE=DIR python -m pytest -q tests/adapters/trtllm/test_seam_contract.py`.

The assembled directory holds TensorRT-LLM's own files: keep it outside kiln's checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the files and exit")
    parser.add_argument("--from", dest="source", type=Path, help="holds tensorrt_llm/")
    parser.add_argument("--to", dest="dest", type=Path, help="the directory to assemble")
    args = parser.parse_args(argv)
    from kiln_trtllm.seams import SEAMS, check_source, source_files

    files = source_files()
    if args.list:
        print("\n".join(files))
        return 0
    if args.source is None or args.dest is None:
        parser.error("give --list, or both --from and --to")
    missing = [f for f in files if not (args.source / f).is_file()]
    if missing:
        for f in missing:
            print(f"{args.source / f}: no such file", file=sys.stderr)
        return 2
    for f in files:
        target = args.dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.source / f, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        print(f"{digest}  {f}")
    problems = check_source(args.dest)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} of {len(SEAMS)} seams moved", file=sys.stderr)
        return 1
    print(f"contract holds: {len(SEAMS)} seams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
