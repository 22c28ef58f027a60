"""The environment an archive was made in. LOAD refuses an archive whose fingerprint differs
from this process's, naming the first differing field."""

from __future__ import annotations

from typing import Any

from kiln import __version__
from kiln.archive.format import FORMAT_VERSION
from kiln.native import native
from kiln.region import RegionConfig


def compute_capability(device: int) -> tuple[int, int]:
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def device_sm(device: int) -> int:
    """The device's architecture as fatbins number it (9.0 -> 90)."""
    major, minor = compute_capability(device)
    return major * 10 + minor


def environment_fingerprint(config: RegionConfig) -> dict[str, Any]:
    import torch

    major, minor = compute_capability(config.device)
    return {
        "format_version": FORMAT_VERSION,
        "kiln_version": __version__,
        "gpu_name": torch.cuda.get_device_name(config.device),
        "compute_capability": f"{major}.{minor}",
        "driver_version": int(native().driver_version()),
        "cuda_runtime": str(torch.version.cuda),
        "torch_version": str(torch.__version__),
        "region_base": config.base,
        "region_size": config.size,
    }
