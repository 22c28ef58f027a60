"""The node's GPU topology as a rank sees it, read without any call into the GPU.

Communication libraries size and connect their state from the topology (how many GPUs, which
models, NVSwitch or not, RDMA NICs, which transports the settings allow), so a SAVE is valid
only on the topology it was made on (kiln.lifecycle.job). Every fact here comes from files the
NVIDIA kernel driver and the kernel publish, or from the environment: reading them cannot hang
or fail the way a driver call on a faulty GPU can, and a missing file is a fact ("none"), not
an error. GPU order is deliberately not part of it: a rank's region follows its rank slot, not
its CUDA device number, so ``CUDA_VISIBLE_DEVICES=1,0`` after ``0,1`` is the same topology.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kiln.lifecycle.types import FingerprintValue

#: The NCCL settings that choose which interconnect NCCL uses (and so what it allocates).
TRANSPORT_SETTINGS = (
    "NCCL_P2P_DISABLE",
    "NCCL_P2P_LEVEL",
    "NCCL_SHM_DISABLE",
    "NCCL_IB_DISABLE",
    "NCCL_NET",
    "NCCL_NVLS_ENABLE",
    "NCCL_CUMEM_ENABLE",
)
_MAX_INFO_BYTES = 1 << 16  # a GPU's information file is a few hundred bytes
_MAX_ENTRIES = 1024


class Sources:
    """Where the facts are read from (tests point these at a directory of their own)."""

    def __init__(
        self,
        gpus: Path = Path("/proc/driver/nvidia/gpus"),
        dev: Path = Path("/dev"),
        rdma: Path = Path("/sys/class/infiniband"),
    ) -> None:
        self.gpus = gpus
        self.dev = dev
        self.rdma = rdma


def read_topology(
    environ: Mapping[str, str] | None = None, sources: Sources | None = None
) -> dict[str, FingerprintValue]:
    """The topology facts, each a JSON scalar:

    - ``gpu_models``: the node's GPU models, sorted, ``;``-joined (order-free);
    - ``devices_per_node``: GPUs this process may use (``CUDA_VISIBLE_DEVICES``'s entries
      when set, else the node's GPUs);
    - ``nvswitches``: NVSwitch device nodes (an NVSwitch fabric connects every GPU);
    - ``rdma_devices``: RDMA NICs (NCCL's and NVSHMEM's network transports);
    - ``nccl_transport``: the transport-choosing NCCL settings that are set, ``name=value``
      joined by ``;`` in :data:`TRANSPORT_SETTINGS` order.
    """
    environ = os.environ if environ is None else environ
    sources = Sources() if sources is None else sources
    models = sorted(_gpu_models(sources.gpus))
    return {
        "gpu_models": ";".join(models),
        "devices_per_node": _visible_devices(environ, len(models)),
        "nvswitches": _count(sources.dev, "nvidia-nvswitch", digits=True),
        "rdma_devices": _count(sources.rdma, ""),
        "nccl_transport": ";".join(
            f"{name}={environ[name]}" for name in TRANSPORT_SETTINGS if name in environ
        ),
    }


def _gpu_models(root: Path) -> list[str]:
    models = []
    for entry in _entries(root):
        model = "unknown"
        try:
            with open(root / entry / "information", "rb") as f:
                text = f.read(_MAX_INFO_BYTES).decode("utf-8", "replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "Model":
                model = " ".join(value.split())[:128] or "unknown"
                break
        models.append(model)
    return models


def _visible_devices(environ: Mapping[str, str], on_node: int) -> int:
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return on_node
    # CUDA stops at the first entry it cannot parse; an empty value hides every GPU.
    count = 0
    for item in visible.split(","):
        item = item.strip()
        if not item or not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
            break
        count += 1
    return count


def _count(root: Path, prefix: str, digits: bool = False) -> int:
    names = [name for name in _entries(root) if name.startswith(prefix)]
    if digits:
        names = [name for name in names if name[len(prefix) :].isdigit()]
    return len(names)


def _entries(root: Path) -> list[str]:
    try:
        with os.scandir(root) as it:
            names = []
            for entry in it:
                names.append(entry.name)
                if len(names) >= _MAX_ENTRIES:
                    break
            return sorted(names)
    except OSError:
        return []
