"""The memory of a restored capture window lives as long as anything uses it: the restored
set, or a tensor it handed out (also past close()), and is unmapped only after the device
finished its work. Driven on the fake driver, with stand-ins for torch tensors that hold
their owner as a DLPack tensor does (CPU tests have no torch)."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kiln.graphs import store, tensors
from kiln.graphs.restored import RestoredGraph, RestoredSet
from kiln.graphs.tensors import TensorSpec
from kiln_testing import testing

from tests.native._restore_fixture import (
    DEV,
    GRAN,
    archive,
    close_fake,
    native,
    open_fake_region,
    sections_and_manifest,
)

ROOT = Path(__file__).resolve().parents[2]


class Reader:
    def __init__(self, sections: dict[str, bytes]) -> None:
        self.sections = sections

    def section(self, name: str) -> memoryview:
        return memoryview(self.sections[name])

    def close(self) -> None:
        pass


class DLPackLikeTensor:
    """Holds its owner through a reference the garbage collector cannot see, as a torch
    tensor made from DLPack does (the reference sits in the capsule's deleter)."""

    def __init__(self, owner: object) -> None:
        self._owner = ctypes.py_object(owner)
        ctypes.pythonapi.Py_IncRef(self._owner)

    def __del__(self) -> None:
        ctypes.pythonapi.Py_DecRef(self._owner)


class _Native:
    """kiln._native with cuda_tensor made a DLPackLikeTensor."""

    def __getattr__(self, name: str) -> Any:
        if name == "cuda_tensor":
            return lambda ptr, shape, strides, code, bits, device, owner: DLPackLikeTensor(owner)
        return getattr(native, name)


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch):
    """A restored set on the fake driver, every graph replayable, one window allocation
    (its address is returned too)."""
    monkeypatch.setattr(tensors, "native", _Native)
    buffer = open_fake_region(strict_context=True)
    sections, manifest = sections_and_manifest(archive(buffer))
    reader = Reader(sections)
    r = RestoredSet(reader, DEV)
    try:
        store.load_kernels(reader, manifest, r, threads=1)
        store.start_graphs(reader, manifest, r, dedicated=False, threads=1)
        r.wait_replayable()
        window = native.region_allocate(DEV, GRAN)
        r.own_allocation(window)
        yield r, window
    finally:
        r.close()
        gc.collect()
        close_fake()


def with_output(r: RestoredSet, address: int) -> RestoredGraph:
    spec = TensorSpec(address, (16,), (1,), "float32", 64)
    graph = RestoredGraph("g", 0, r, [], [spec])
    r.add(graph)
    return graph


def mapped(address: int) -> bool:
    return bool(native.region_is_backed(DEV, address, 1))


def test_close_keeps_the_memory_a_live_tensor_uses_until_the_tensor_goes(restored) -> None:
    # The regression: close() unmapped memory that handed-out tensors still aliased; the
    # next access faulted and killed the CUDA context.
    r, window = restored
    out = with_output(r, window).outputs[0]
    r.close()
    assert mapped(window)
    del out
    gc.collect()
    assert not mapped(window)


def test_close_without_live_tensors_releases_the_memory_at_once(restored) -> None:
    r, window = restored
    graph = with_output(r, window)
    del graph
    r.close()
    assert not mapped(window)


def test_memory_is_unmapped_only_after_the_device_finished_launched_work(restored) -> None:
    r, window = restored
    r.graph_set.launch(0, 0)  # a replay possibly still running when close() comes
    syncs = testing.fake_graph_stats()["ctx_syncs"]
    r.close()
    assert not mapped(window)
    assert testing.fake_graph_stats()["ctx_syncs"] > syncs
    assert testing.fake_driver_stats()["busy_unmaps"] == 0


def test_the_set_itself_is_freed_while_a_tensor_it_handed_out_lives(restored) -> None:
    # A tensor's reference to its owner is invisible to the garbage collector: were the
    # owner the set (which holds the tensors), the two would keep each other alive.
    r, window = restored
    out = with_output(r, window).outputs[0]
    graph_set = r.graph_set
    r.close()
    del graph_set
    gc.collect()
    assert testing.fake_graph_stats()["live_execs"] == 0
    assert mapped(window)
    del out


SCRIPT = """
import ctypes, sys
from kiln.graphs import store
from kiln.graphs import tensors
from kiln.graphs.restored import RestoredGraph, RestoredSet
from kiln.graphs.tensors import TensorSpec
from tests.native._restore_fixture import DEV, archive, native, open_fake_region, sections_and_manifest
from tests.store.test_restored_memory import Reader, _Native

tensors.native = _Native
buffer = open_fake_region(strict_context=True)
sections, manifest = sections_and_manifest(archive(buffer))
reader = Reader(sections)
restored = RestoredSet(reader, DEV)
store.load_kernels(reader, manifest, restored, threads=2, resolve_threads=2)
store.start_graphs(reader, manifest, restored, dedicated=True, threads=2)
restored.wait_replayable()
spec = TensorSpec(buffer, (16,), (1,), "float32", 64)
restored.add(RestoredGraph("g0", 0, restored, [spec], [spec]))
out = restored["g0"].outputs[0]
print("restored")
"""


def test_no_nanobind_leak_is_reported_at_exit_after_a_restore_that_handed_out_tensors() -> None:
    # The regression: every process exit after kiln.load printed nanobind's leak report
    # (the graph set, the kernel table, their types and functions), because each tensor
    # held the set that held it.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "restored"
    assert "leaked" not in proc.stderr, proc.stderr[-3000:]
