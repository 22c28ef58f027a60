"""Binaries with NVSHMEM device state (kiln.graphs.nvshmem): flagged at SAVE, initialised at
LOAD through the process's NVSHMEM host library once NVSHMEM bootstrapped, with the PE count
and PE checked against SAVE's; never run uninitialised."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.archive.manifest import BinaryEntry, Manifest
from kiln.errors import ArchiveCorrupt, RestoreError
from kiln.graphs import nvshmem, store
from kiln.graphs.restore_pipeline import GraphRestore, RestoreOptions

from tests.native._restore_fixture import (
    BASE,
    DEV,
    archive,
    close_fake,
    native,
    open_fake_region,
    sections_and_manifest,
)


def test_a_module_linked_with_nvshmem_is_recognised_by_its_state_symbol() -> None:
    assert nvshmem.carries_state(b"\x7fELF...\0nvshmemi_device_state_d\0other\0")
    assert not nvshmem.carries_state(b"\x7fELF...\0nvshmemi_device_state_dx\0")
    assert nvshmem.is_nvshmem_symbol("nvshmemi_device_state_d")
    assert not nvshmem.is_nvshmem_symbol("kiln_scale")


def test_nvshmems_own_globals_do_not_tie_a_binary_to_the_applications_module() -> None:
    # NVSHMEM initialises kiln's copy at LOAD; only application globals need the app's copy.
    image = b"//fake entry k0 8\n\0"
    entry = BinaryEntry("b0", "0" * 64, len(image), "ptx", nvshmem=True)
    assert store._app_copies([entry]) == [-1]


def test_the_flag_and_the_pes_round_trip_through_the_manifest() -> None:
    e = BinaryEntry("b0", "0" * 64, 10, "cubin", nvshmem=True)
    m = Manifest(0, [], (0, 0), [e], [], nvshmem_pes=(2, 1))
    back = Manifest.from_json(m.to_json(), {"b0"})
    assert back.binaries == [e] and back.nvshmem_pes == (2, 1)


@pytest.mark.parametrize("pes", [[2, 2], [0, 0], [2], "2"])
def test_impossible_pes_in_the_manifest_are_refused(pes) -> None:
    m = Manifest(0, [], (0, 0), [], []).to_json()
    m["nvshmem_pes"] = pes
    with pytest.raises(ArchiveCorrupt, match="nvshmem_pes"):
        Manifest.from_json(m, set())


class _Host:
    """NVSHMEM's host library as kiln calls it: the process's PEs, and module init."""

    def __init__(self, pes=(2, 0), rc: int = 0) -> None:
        self._pes = nvshmem.Pes(*pes)
        self.rc = rc
        self.initialised: list[int] = []

    def pes(self) -> nvshmem.Pes:
        return self._pes

    def init_library(self, library: int) -> int:
        self.initialised.append(library)
        return self.rc


class _Kernels:
    def __init__(self, libraries: dict[int, int | None]) -> None:
        self.libraries = libraries

    def library(self, slot: int) -> int | None:
        return self.libraries[slot]


def _binaries(*flags: bool) -> list[Any]:
    return [SimpleNamespace(nvshmem=f, section=f"b{i}") for i, f in enumerate(flags)]


def test_kilns_own_copies_of_flagged_binaries_are_initialised() -> None:
    host = _Host()
    kernels = _Kernels({0: 0x100, 1: 0x200, 2: None})
    done = nvshmem.initialize(kernels, _binaries(True, False, True), nvshmem.Pes(2, 0), host)
    # Slot 2 runs from the application's module, which NVSHMEM initialised itself.
    assert (done, host.initialised) == (1, [0x100])


def test_another_pe_layout_than_saves_is_refused_by_name() -> None:
    with pytest.raises(RestoreError, match="NVSHMEM runs 4 PEs .* SAVE ran 2"):
        nvshmem.initialize(_Kernels({0: 1}), _binaries(True), nvshmem.Pes(2, 0), _Host((4, 0)))


def test_a_failed_module_init_is_refused_naming_the_binary() -> None:
    with pytest.raises(RestoreError, match=r"nvshmemx_culibrary_init failed \(7\) .* b0"):
        nvshmem.initialize(_Kernels({0: 1}), _binaries(True), None, _Host(rc=7))


def test_no_host_library_is_refused() -> None:
    with pytest.raises(RestoreError, match="no\\s+NVSHMEM host library"):
        nvshmem.initialize(_Kernels({0: 1}), _binaries(True), None, None)


# --- the shared restore pipeline ------------------------------------------------------------


class _Reader:
    def __init__(self, sections: dict[str, bytes]) -> None:
        self.sections = sections

    def section(self, name: str) -> memoryview:
        return memoryview(self.sections[name])

    def close(self) -> None:
        pass


@pytest.fixture
def flagged_restore():
    buffer = open_fake_region(strict_context=True)
    sections, manifest = sections_and_manifest(archive(buffer))
    manifest.trajectory = [tuple(t) for t in native.region_trajectory(DEV)]
    manifest.window = (len(manifest.trajectory), len(manifest.trajectory))
    manifest.window_unbacked = None
    manifest.nvshmem_pes = (1, 0)
    manifest.binaries[0] = BinaryEntry(**{**vars(manifest.binaries[0]), "nvshmem": True})
    restore = GraphRestore(_Reader(sections), manifest, DEV, RestoreOptions(verify=False))
    try:
        yield restore
    finally:
        restore.restored.close()
        gc.collect()
        close_fake()


def test_the_restore_initialises_its_nvshmem_binaries_through_the_host(flagged_restore) -> None:
    host = _Host(pes=(1, 0))
    assert flagged_restore.initialize_nvshmem(host) == 1
    assert len(host.initialised) == 1 and host.initialised[0]
    region: Any = SimpleNamespace(device=DEV, config=SimpleNamespace(base=BASE))
    assert flagged_restore.materialize(region).started


def test_a_restore_never_builds_graphs_of_uninitialised_nvshmem_binaries(flagged_restore) -> None:
    # Regression: kiln's own copies of NVSHMEM modules were never initialised; their first
    # replay would fault or hang. Without a host library to initialise them, nothing builds.
    region: Any = SimpleNamespace(device=DEV, config=SimpleNamespace(base=BASE))
    with pytest.raises(RestoreError, match="NVSHMEM host library"):
        flagged_restore.materialize(region)
    assert not flagged_restore.restored.started


# --- the host library, found in the process ------------------------------------------------

_STUB = textwrap.dedent(
    """
    static int calls;
    int nvshmem_n_pes(void) { return 3; }
    int nvshmem_my_pe(void) { return 2; }
    int nvshmemx_culibrary_init(void *library) { calls++; return library ? 0 : 5; }
    """
)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build a stand-in")
def test_the_host_library_is_found_among_the_processs_libraries(tmp_path: Path) -> None:
    source = tmp_path / "nvshmem_stub.c"
    source.write_text(_STUB)
    library = tmp_path / "libnvshmem_host.so.3"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    # Loaded without RTLD_GLOBAL (as an extension would): found through the process's maps.
    code = textwrap.dedent(
        f"""
        import ctypes
        from kiln.graphs.nvshmem import NvshmemHost
        assert NvshmemHost.find() is None
        ctypes.CDLL({str(library)!r}, mode=ctypes.RTLD_LOCAL)
        host = NvshmemHost.find()
        print(host.pes(), host.init_library(0x1234), host.init_library(0))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Pes(count=3, mine=2) 0 5"
