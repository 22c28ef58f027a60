"""Failures during LOAD's overlapped binary loading surface where a graph needs the binary,
and at wait_all in any case: named, raised as RestoreError, never a crash or a silent
success."""

from __future__ import annotations

import gc

import pytest
from kiln.errors import RestoreError
from kiln_testing import testing

from ._restore_fixture import DEV, archive, image, native


def _every_wait_raises(graphs, kernels, pattern: str) -> None:
    for call in (
        lambda: graphs.wait(0, False),
        lambda: graphs.wait(1, True),
        lambda: graphs.wait_all(False),
        lambda: graphs.launch(2, 0),
        kernels.wait_loaded,
    ):
        with pytest.raises(RestoreError, match=pattern):
            call()


@pytest.mark.parametrize("binary_threads", [1, 3])
@pytest.mark.parametrize("delay_ms", [0, 20])
@pytest.mark.parametrize("resolve_threads", [0, 2])
def test_a_failed_binary_load_is_raised_at_wait(
    buffer, binary_threads: int, delay_ms: int, resolve_threads: int
) -> None:
    arc = archive(buffer, fail_slot=0, delay_ms=delay_ms)
    kernels = native.make_kernel_table(
        arc.images, [-1] * len(arc.images), device=DEV, threads=binary_threads
    )
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 4)  # decoding needs no binary
    if resolve_threads:
        kernels.resolve_in_background(resolve_threads)
    graphs.start(True)
    _every_wait_raises(graphs, kernels, r"archive binary 0 .*cuLibraryLoadData failed")
    assert testing.fake_graph_stats()["context_errors"] == 0
    del graphs, kernels
    gc.collect()
    assert testing.fake_graph_stats()["live_libraries"] == 0


def test_a_failed_binary_no_graph_needs_is_still_raised_by_wait_all(buffer) -> None:
    arc = archive(buffer)
    images = arc.images + [image(len(arc.images), fail=True)]
    kernels = native.make_kernel_table(images, [-1] * len(images), device=DEV, threads=2)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)
    graphs.start(False)
    for i in range(len(arc.blobs)):
        graphs.wait(i, False)  # every graph is replayable
    with pytest.raises(RestoreError, match=rf"archive binary {len(arc.images)} "):
        graphs.wait_all(False)
    del graphs, kernels


def test_without_loader_threads_a_failed_load_is_raised_at_once(buffer) -> None:
    arc = archive(buffer, fail_slot=3)
    with pytest.raises(RestoreError, match=r"archive binary 3 .*cuLibraryLoadData failed"):
        native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=0)
    gc.collect()
    assert testing.fake_graph_stats()["live_libraries"] == 0


@pytest.mark.parametrize("resolve_threads", [0, 2])
def test_a_kernel_missing_from_its_binary_is_raised_at_wait(buffer, resolve_threads: int) -> None:
    arc = archive(buffer)
    arc.images[2] = image(2, entries=("k0", "k1"))  # position 2 launches b2:k2
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)
    if resolve_threads:  # the resolvers meet the failure first and keep it for the builds
        kernels.resolve_in_background(resolve_threads)
        kernels.wait_background()
    graphs.start(True)
    with pytest.raises(RestoreError, match=r"kernel k2 not found in archive binary 2"):
        graphs.wait_all(False)
    del graphs, kernels


def test_a_corrupt_image_is_refused_before_any_thread_starts(buffer) -> None:
    arc = archive(buffer)
    arc.images[1] = b"\x7fELF"  # shorter than an ELF header
    from kiln.errors import ArchiveCorrupt

    with pytest.raises(ArchiveCorrupt):
        native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    assert testing.fake_graph_stats()["library_loads"] == 0


def test_a_slot_outside_the_archive_is_refused_when_decoding(buffer) -> None:
    arc = archive(buffer)
    kernels = native.make_kernel_table(arc.images[:3], [-1] * 3, device=DEV, threads=1)
    from kiln.errors import ArchiveCorrupt

    with pytest.raises(ArchiveCorrupt, match="binary slot 3 of 3"):
        native.GraphSet(arc.blobs, kernels, DEV, 2)
    del kernels


def test_an_operand_outside_the_backed_region_is_named_at_wait(buffer) -> None:
    from kiln.errors import UnmappedRangeError

    from ._restore_fixture import BASE, GRAN

    arc = archive(BASE + 40 * GRAN)  # inside the region, never allocated
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)
    graphs.start(False)
    with pytest.raises(
        UnmappedRangeError, match=r"kernel k0 \(graph node 0\) argument byte 0 refers"
    ):
        graphs.wait(0, False)
    del graphs, kernels
