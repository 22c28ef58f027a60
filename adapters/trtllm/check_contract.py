#!/usr/bin/env python3
"""Check kiln-trtllm's seam contract against a TensorRT-LLM source tree (a checkout at the
release commit, or the Python files of the unpacked wheel), without importing it.

    python adapters/trtllm/check_contract.py --source /path/to/TensorRT-LLM

Exit status 0 and "contract holds" when every seam is where kiln-trtllm expects it; 1 and
one line per moved seam otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="holds tensorrt_llm/")
    args = parser.parse_args(argv)
    from kiln_trtllm.seams import SEAMS, check_source

    if not (args.source / "tensorrt_llm").is_dir():
        print(f"{args.source} has no tensorrt_llm/ directory", file=sys.stderr)
        return 2
    problems = check_source(args.source)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} of {len(SEAMS)} seams moved", file=sys.stderr)
        return 1
    print(f"contract holds: {len(SEAMS)} seams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
