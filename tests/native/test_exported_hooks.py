"""The interposer's wrappers are exported under the driver's own symbol names, so a library
linked against libcuda (Triton's launcher, CUDA extensions) reaches kiln before libcuda.
Regression: Triton's `cuda_utils.so` called cuModuleLoadData / cuModuleGetFunction straight
from libcuda, kiln never saw its modules, and SAVE refused every fused-MoE graph."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

from kiln._paths import preload_library

PRELOAD = preload_library()
pytestmark = pytest.mark.skipif(not PRELOAD.exists(), reason=f"{PRELOAD} is not built")


def test_every_wrapped_entry_point_is_exported_under_the_drivers_name():
    lib = ctypes.CDLL(str(PRELOAD))
    exported = {e[3] for e in native.hook_table()}
    assert {
        "cuModuleLoadData",
        "cuModuleGetFunction",
        "cuMemAlloc_v2",
        "cuLibraryGetGlobal",
    } <= exported
    missing = [name for name in sorted(exported) if not hasattr(lib, name)]
    assert missing == []


def test_a_direct_call_without_a_driver_returns_an_error_instead_of_crashing():
    # A process without libcuda (this CPU machine) calling an exported wrapper directly:
    # the wrapper finds no driver function and answers CUDA_ERROR_NOT_INITIALIZED (3).
    if native.driver_available():
        pytest.skip("libcuda is present: the wrapper would reach the real driver")
    code = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
        "f = lib.cuModuleGetFunction; f.restype = ctypes.c_int; "
        "print(f(ctypes.byref(ctypes.c_void_p()), None, b'k'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(PRELOAD)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
    assert "cuModuleGetFunction" in out.stderr  # kiln says which function it could not find


def test_a_legacy_ipc_handle_for_region_memory_is_refused_naming_the_engine_setting():
    # Regression: vLLM's and SGLang's custom all-reduce asks cudaIpcGetMemHandle for buffers
    # that land in kiln's (VMM) region; the driver refused with a bare invalid-value error.
    from tests.native._restore_fixture import close_fake, open_fake_region

    buffer = open_fake_region(strict_context=False)
    was_enabled = native.enabled()
    native.set_enabled(True)
    try:
        lib = ctypes.CDLL(str(PRELOAD))
        get = lib.cuIpcGetMemHandle
        get.restype = ctypes.c_int
        get.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        handle = ctypes.create_string_buffer(64)
        native.take_last_hook_error()
        assert get(handle, buffer) == 801  # CUDA_ERROR_NOT_SUPPORTED
        assert "--disable-custom-all-reduce" in native.take_last_hook_error()
    finally:
        native.set_enabled(was_enabled)
        close_fake()
