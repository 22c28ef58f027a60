"""`kiln demo`: capture a small workload in one process, restore it in a fresh one, and
compare outputs bit for bit. Without a GPU it says so and exits successfully."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from kiln._gpu import gpu_unavailable_reason


def main(argv: list[str] | None = None) -> int:
    workload = (argv or ["matmul"])[0] if argv else "matmul"
    reason = gpu_unavailable_reason()
    if reason:
        print(
            f"kiln demo: no GPU here ({reason}); nothing to save or restore. "
            "Run it on a machine with an NVIDIA GPU."
        )
        return 0
    from kiln.workloads.fresh import run_workload

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for mode in ("save", "load"):
            result, _proc = run_workload(workload, mode, Path(tmp))
            results[mode] = result or {"ok": False}
            if not results[mode].get("ok"):
                print(f"kiln demo: {mode} failed: {results[mode]}")
                return 1
    save, load = results["save"], results["load"]
    print(
        f"captured {save['graphs']} graphs in {save['capture_seconds']:.3f} s (SAVE process); "
        f"restored in {load['restore_seconds']:.3f} s (fresh LOAD process); "
        f"bit-exact vs SAVE's native graphs: {load['all_bit_exact_vs_save_native']}"
    )
    return 0 if load["all_bit_exact_vs_save_native"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
