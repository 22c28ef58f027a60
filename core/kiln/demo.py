"""`kiln demo`: capture a small workload in one process, restore it in a fresh one, and
compare outputs bit for bit. Without a GPU it says so and exits successfully."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _gpu_missing() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver on this machine (nvidia-smi not found)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def main(argv: list[str] | None = None) -> int:
    workload = (argv or ["matmul"])[0] if argv else "matmul"
    reason = _gpu_missing()
    if reason:
        print(
            f"kiln demo: no GPU here ({reason}); nothing to save or restore. "
            "Run it on a machine with an NVIDIA GPU."
        )
        return 0
    from kiln._paths import preload_library

    env = dict(os.environ, LD_PRELOAD=str(preload_library()), KILN_ENABLE="1")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for mode in ("save", "load"):
            out = Path(tmp) / f"{mode}.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kiln.workloads.run",
                    "--workload",
                    workload,
                    "--mode",
                    mode,
                    "--archive",
                    tmp,
                    "--out",
                    str(out),
                ],
                env=env,
                check=False,
            )
            results[mode] = json.loads(out.read_text()) if out.exists() else {"ok": False}
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
