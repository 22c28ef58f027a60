"""Driver calls made from a stand-in communication library (kiln_testing.standin_library) or
from the test itself (the engine), through the interposer's exported wrappers, with the
stand-in driver behind them. The wrappers identify the caller by its return address, so a
call through ``Caller("nccl")`` comes from a library named like NCCL's."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator

from kiln._paths import preload_library
from kiln_testing import standin_library, testing

# The fake process's region: 256 granules, the top two 32-granule slots the libraries'.
GRAN = 2 << 20
BASE = 0x7F0000000000
SIZE = 256 * GRAN
SLOT = 32 * GRAN


def open_region(slot: int = SLOT) -> None:
    """A new process's region: stand-in driver, empty registries, mapping hooks routed to it."""
    from kiln import _native as native

    native.region_close(0)
    testing.install_fake_driver(granularity=GRAN)
    native.region_open(0, BASE, SIZE, 0, slot)
    testing.route_mapping_hooks()


@contextlib.contextmanager
def library_region() -> Iterator[Callable[..., None]]:
    """kiln enabled over a fresh region (see :func:`open_region`, yielded to start another
    process); everything undone on exit."""
    from kiln import _native as native

    was = native.enabled()
    native.set_enabled(True)
    try:
        open_region()
        yield open_region
    finally:
        native.set_verified_library_ranges([])
        testing.unroute_mapping_hooks()
        native.region_close(0)
        testing.uninstall_fake_driver()
        native.set_enabled(was)


_u64 = ctypes.c_uint64
_size = ctypes.c_size_t


class Caller:
    """The driver calls a stand-in library makes, each through kiln's wrapper."""

    def __init__(self, library: str) -> None:
        self.library = library
        self._lib = ctypes.CDLL(str(standin_library(library)))
        self._kiln = ctypes.CDLL(str(preload_library()))

    def _wrapper(self, symbol: str) -> ctypes.c_void_p:
        return ctypes.cast(getattr(self._kiln, symbol), ctypes.c_void_p)

    def _ok(self, result: int, call: str) -> None:
        if result != 0:
            raise OSError(f"{call} from {self.library} failed with CUresult {result}")

    def reserve(self, size: int, alignment: int = 0) -> int:
        out = _u64()
        w = self._wrapper("cuMemAddressReserve")
        self._ok(
            self._lib.standin_reserve(w, ctypes.byref(out), _size(size), _size(alignment)),
            "reserve",
        )
        return out.value

    def alloc(self, size: int) -> int:
        out = _u64()
        self._ok(
            self._lib.standin_alloc(self._wrapper("cuMemAlloc_v2"), ctypes.byref(out), _size(size)),
            "alloc",
        )
        return out.value

    def create(self, size: int, *, host: bool = False) -> int:
        out = _u64()
        w = self._wrapper("cuMemCreate")
        self._ok(self._lib.standin_create(w, ctypes.byref(out), _size(size), int(host)), "create")
        return out.value

    def map(self, address: int, size: int, handle: int) -> None:
        w = self._wrapper("cuMemMap")
        self._ok(self._lib.standin_map(w, _u64(address), _size(size), _u64(handle)), "map")

    def unmap(self, address: int, size: int) -> None:
        self._ok(
            self._lib.standin_unmap(self._wrapper("cuMemUnmap"), _u64(address), _size(size)),
            "unmap",
        )

    def export(self, handle: int) -> int:
        fd = ctypes.c_int()
        w = self._wrapper("cuMemExportToShareableHandle")
        self._ok(self._lib.standin_export(w, _u64(handle), ctypes.byref(fd)), "export")
        return fd.value

    def import_(self, fd: int) -> int:
        out = _u64()
        w = self._wrapper("cuMemImportFromShareableHandle")
        self._ok(self._lib.standin_import(w, ctypes.byref(out), ctypes.c_int(fd)), "import")
        return out.value

    def multicast(self, size: int) -> int:
        out = _u64()
        w = self._wrapper("cuMulticastCreate")
        self._ok(self._lib.standin_multicast(w, ctypes.byref(out), _size(size)), "multicast")
        return out.value

    def bind_mem(self, multicast: int, memory: int, size: int) -> None:
        w = self._wrapper("cuMulticastBindMem")
        self._ok(
            self._lib.standin_multicast_bind_mem(w, _u64(multicast), _u64(memory), _size(size)),
            "multicast bind",
        )

    def bind_addr(self, multicast: int, address: int, size: int) -> None:
        w = self._wrapper("cuMulticastBindAddr")
        self._ok(
            self._lib.standin_multicast_bind_addr(w, _u64(multicast), _u64(address), _size(size)),
            "multicast bind",
        )

    def ipc_open(self) -> int:
        out = _u64()
        self._ok(
            self._lib.standin_ipc_open(self._wrapper("cuIpcOpenMemHandle_v2"), ctypes.byref(out)),
            "ipc",
        )
        return out.value

    def ipc_close(self, address: int) -> None:
        self._ok(
            self._lib.standin_ipc_close(self._wrapper("cuIpcCloseMemHandle"), _u64(address)),
            "ipc close",
        )


def engine_reserve(size: int) -> int:
    """cuMemAddressReserve(addr 0) called by the test process itself: the engine's call."""
    fn = ctypes.CDLL(str(preload_library())).cuMemAddressReserve
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(_u64), _size, _size, _u64, ctypes.c_ulonglong]
    out = _u64()
    if fn(ctypes.byref(out), size, 0, 0, 0) != 0:
        raise OSError("engine reservation failed")
    return out.value


def engine_alloc(size: int) -> int:
    fn = ctypes.CDLL(str(preload_library())).cuMemAlloc_v2
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(_u64), _size]
    out = _u64()
    if fn(ctypes.byref(out), size) != 0:
        raise OSError("engine allocation failed")
    return out.value
