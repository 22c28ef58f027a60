"""Whether this machine can run kiln on a GPU: one answer for the demo, `kiln verify --gpu`
and the GPU tests' skip reasons."""

from __future__ import annotations

import importlib.util
import shutil

from kiln.errors import KilnError


def gpu_unavailable_reason() -> str | None:
    """Why kiln cannot use a GPU here, or None. Cheap checks first: torch is imported only
    when a driver and torch are present."""
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver on this machine (nvidia-smi not found)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    try:
        from kiln.native import native

        if not native().driver_available():
            return "the CUDA driver library libcuda.so.1 cannot be loaded"
    except KilnError as e:
        return str(e)
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None
