"""The deterministic memory region, from Python.

While a region is open on a device, every device allocation the process makes there
(PyTorch's caching allocator, cuBLAS workspaces, NCCL buffers) is placed by kiln's bump
allocator at a fixed base, so a later process making the same requests gets the same
addresses. The region is never unmapped while the process runs: PyTorch keeps pointers
into it until exit.

The top of the region holds one slot per communication library (NCCL, NVSHMEM), each with
its own cursor: a library's reservations and allocations go there, so a change in what a
library allocates never moves the engine's memory (docs/region.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kiln.config import VA_LIMIT, region_from_environment
from kiln.env_settings import (
    REGION_LIBRARY_SLOT,
    REGION_PREALLOC,
    REGION_SLOT,
    count_setting,
    size_setting,
)
from kiln.errors import ConfigError, UnsupportedAllocator
from kiln.native import native, require_interposer

DEFAULT_BASE = 0x6000_0000_0000
DEFAULT_SIZE = 512 << 30  # virtual address space only; backed on demand

Trajectory = list[tuple[int, int, int]]


@dataclass(frozen=True)
class RegionConfig:
    device: int = 0
    base: int = DEFAULT_BASE
    size: int = DEFAULT_SIZE
    prealloc: int = 0
    # Bytes of each communication library's slot; None: an eighth of the region.
    library_slot: int | None = None

    @property
    def library_slot_bytes(self) -> int:
        return self.size // 8 if self.library_slot is None else self.library_slot

    @classmethod
    def from_env(
        cls, device: int = 0, environ: Mapping[str, str] | None = None, *, slot: int | None = None
    ) -> RegionConfig:
        """Defaults overridden by KILN_REGION_BASE / KILN_REGION_SIZE / KILN_REGION_PREALLOC /
        KILN_REGION_LIBRARY_SLOT, parsed as the config file's values are (``64GiB``, hex, bytes); a bad value raises
        ConfigError naming the variable.

        The region lies at ``base + slot x size``. An engine rank passes its rank slot
        (:func:`rank_slot`), so its addresses depend on which rank it is, never on which
        CUDA device number it was given; without a slot, the device number is the slot (one
        process opening regions on several devices gets one slice per device)."""
        base, size = region_from_environment(environ)
        base = DEFAULT_BASE if base is None else base
        size = DEFAULT_SIZE if size is None else size
        prealloc = size_setting(REGION_PREALLOC, 0, "a size in bytes", environ)
        library_slot = size_setting(REGION_LIBRARY_SLOT, -1, "a size in bytes", environ)
        index = device if slot is None else slot
        if index < 0 or base + (index + 1) * size > VA_LIMIT:
            raise ConfigError(
                None,
                f"environment {REGION_SLOT}" if slot is not None else "region slot",
                f"slot {index} puts the region at {base + index * size:#x}, ending above 2**48 "
                f"(base {base:#x}, {size:#x} bytes per slot): use a smaller KILN_REGION_SIZE "
                "or slot",
            )
        return cls(
            device,
            base + index * size,
            size,
            prealloc,
            None if library_slot < 0 else library_slot,
        )


def rank_slot(rank: int, environ: Mapping[str, str] | None = None) -> int:
    """The region slot of an engine rank: KILN_REGION_SLOT when set (two independent engines
    sharing one GPU give each its own), else the rank itself. Ranks of one job thus never
    share a slot, whichever GPUs they run on, and a rank keeps its addresses when
    CUDA_VISIBLE_DEVICES orders the GPUs differently."""
    environ = os.environ if environ is None else environ
    if REGION_SLOT not in environ:
        return rank
    return count_setting(REGION_SLOT, rank, "region slot", environ=environ)


def check_allocator_settings(env: dict[str, str] | None = None) -> None:
    """Refuse PyTorch allocator settings whose addresses cannot be made deterministic."""
    conf = (env if env is not None else os.environ).get("PYTORCH_CUDA_ALLOC_CONF", "")
    conf += "," + (env if env is not None else os.environ).get("PYTORCH_ALLOC_CONF", "")
    opts = {}
    for item in conf.replace(" ", "").split(","):
        if ":" in item:
            k, v = item.split(":", 1)
            opts[k.lower()] = v.lower()
    if opts.get("backend") == "cudamallocasync":
        raise UnsupportedAllocator(
            "PyTorch is set to use the stream-ordered allocator (backend:cudaMallocAsync), whose "
            "addresses cannot be made deterministic: remove it from PYTORCH_CUDA_ALLOC_CONF"
        )
    if opts.get("expandable_segments") in ("true", "1"):
        raise UnsupportedAllocator(
            "PyTorch expandable segments map memory outside kiln's allocator: remove "
            "expandable_segments:True from PYTORCH_CUDA_ALLOC_CONF"
        )


class Region:
    """One device's deterministic region. Use as a context manager or call open()/close()."""

    def __init__(self, config: RegionConfig | None = None, *, device: int = 0) -> None:
        self.config = config or RegionConfig.from_env(device)
        self._open = False

    @property
    def device(self) -> int:
        return self.config.device

    def open(self) -> Region:
        check_allocator_settings()
        n = require_interposer()
        n.set_enabled(True)
        n.ensure_context(self.config.device)
        n.region_open(
            self.config.device,
            self.config.base,
            self.config.size,
            self.config.prealloc,
            self.config.library_slot_bytes,
        )
        self._open = True
        return self

    def close(self) -> None:
        """Stop placing allocations in the region (its memory stays mapped until exit)."""
        if self._open:
            native().region_suspend(self.config.device)
            self._open = False

    def __enter__(self) -> Region:  # noqa: PYI034 (open() returns the Region)
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Allocations inside go to the driver as usual and are not recorded (warmups)."""
        n = native()
        n.region_suspend(self.config.device)
        try:
            yield
        finally:
            n.region_resume(self.config.device)

    def contains(self, address: int) -> bool:
        return self.config.base <= address < self.config.base + self.config.size

    def info(self) -> dict[str, Any]:
        return dict(native().region_info(self.config.device))

    def trajectory(self) -> Trajectory:
        return [tuple(e) for e in native().region_trajectory(self.config.device)]  # type: ignore[misc]

    def trajectory_length(self) -> int:
        return int(native().region_info(self.config.device)["allocations"])

    def set_cursor(self, offset: int) -> None:
        native().region_set_cursor(self.config.device, offset)
