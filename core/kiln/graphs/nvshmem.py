"""Kernel binaries that carry NVSHMEM device state, and their initialisation at LOAD.

A module device-linked with NVSHMEM holds its own copy of NVSHMEM's device state
(`__constant__ nvshmemi_device_state_d`), which NVSHMEM's host library fills when told about
the module (`nvshmemx_culibrary_init` / `nvshmemx_cumodule_init`), after it bootstrapped.
SAVE flags such binaries; at LOAD kiln's own copies of them are initialised through the
process's loaded NVSHMEM host library once the engine reports NVSHMEM bootstrapped, the
process's PE count and PE id are checked against SAVE's, and a restore attempted before that
is refused: a kernel running from an uninitialised copy would fault or hang.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import RestoreError

STATE_SYMBOL = b"nvshmemi_device_state_d\0"
# The globals NVSHMEM's own initialisation obtains from a module: not application state.
_PREFIXES = ("nvshmemi_", "nvshmem_i_")
HOST_LIBRARY = "libnvshmem_host.so"


def carries_state(image: bytes | memoryview) -> bool:
    """Whether a kernel image (cubin, or a fatbin whose cubins are not compressed) holds
    NVSHMEM's device state symbol."""
    return STATE_SYMBOL in bytes(image)


def is_nvshmem_symbol(name: str) -> bool:
    return name.startswith(_PREFIXES)


@dataclass(frozen=True)
class Pes:
    count: int
    mine: int


class NvshmemHost:
    """The NVSHMEM host library this process loaded (never loaded by kiln)."""

    def __init__(self, library: Any) -> None:
        self._lib = library
        self._init = library.nvshmemx_culibrary_init
        self._init.restype = ctypes.c_int
        self._init.argtypes = [ctypes.c_void_p]

    @classmethod
    def find(cls, maps: Path = Path("/proc/self/maps")) -> NvshmemHost | None:
        """The loaded host library: in the global scope, or mapped under its file name."""
        try:
            return cls(ctypes.CDLL(None))
        except AttributeError:
            pass
        try:
            lines = maps.read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            path = line.split()[-1] if line.split() else ""
            if Path(path).name.startswith(HOST_LIBRARY):
                try:
                    return cls(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
                except (OSError, AttributeError):
                    return None
        return None

    def pes(self) -> Pes:
        count, mine = self._lib.nvshmem_n_pes, self._lib.nvshmem_my_pe
        count.restype = mine.restype = ctypes.c_int
        return Pes(int(count()), int(mine()))

    def init_library(self, library: int) -> int:
        return int(self._init(ctypes.c_void_p(library)))


def initialize(
    kernels: Any, binaries: list[Any], recorded: Pes | None, host: NvshmemHost | None
) -> int:
    """Initialise kiln's own copies of the archive's NVSHMEM binaries (`kernels`: the
    restore's kernel table); returns how many. Raises RestoreError naming the cause."""
    flagged = [slot for slot, b in enumerate(binaries) if b.nvshmem]
    if not flagged:
        return 0
    if host is None:
        raise RestoreError(
            "the archive holds kernels with NVSHMEM device state, and this process has no "
            f"NVSHMEM host library ({HOST_LIBRARY}) loaded to initialise them"
        )
    pes = host.pes()
    if recorded is not None and pes != recorded:
        raise RestoreError(
            f"NVSHMEM runs {pes.count} PEs with this process as PE {pes.mine}; SAVE ran "
            f"{recorded.count} with PE {recorded.mine}"
        )
    done = 0
    for slot in flagged:
        library = kernels.library(slot)
        if library is None:
            continue  # the application's own module: NVSHMEM initialised it
        rc = host.init_library(library)
        if rc != 0:
            raise RestoreError(
                f"nvshmemx_culibrary_init failed ({rc}) for kernel binary {binaries[slot].section}"
            )
        done += 1
    return done
