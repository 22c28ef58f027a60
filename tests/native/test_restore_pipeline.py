"""LOAD's pipeline on the fake driver: binaries load on a pool while the graph blobs decode,
templates build as soon as their own kernels are resolved, and the outcome (what every
graph launches, directly or through its template) is the same as a sequential restore."""

from __future__ import annotations

import gc
import time

import pytest
from kiln.errors import DriverError, RestoreError
from kiln_testing import testing

from ._restore_fixture import DEV, archive, launch_records, native


def restore(
    arc,
    *,
    binary_threads: int,
    graph_threads: int,
    resolve_threads: int = 0,
    dedicated: bool = True,
):
    kernels = native.make_kernel_table(
        arc.images, [-1] * len(arc.images), device=DEV, threads=binary_threads
    )
    graphs = native.GraphSet(arc.blobs, kernels, DEV, graph_threads)
    if resolve_threads:
        kernels.resolve_in_background(resolve_threads)
    graphs.start(dedicated)
    return kernels, graphs


def test_overlapped_restore_launches_what_a_sequential_one_does(buffer) -> None:
    arc = archive(buffer, delay_ms=5)
    runs = []
    for binary_threads, graph_threads, resolve_threads in (
        (0, 1, 0),
        (3, 4, 0),
        (2, 2, 2),
        (4, 1, 3),
    ):
        kernels, graphs = restore(
            arc,
            binary_threads=binary_threads,
            graph_threads=graph_threads,
            resolve_threads=resolve_threads,
        )
        assert graphs.group_count == 2
        runs.append(launch_records(graphs))
        del graphs, kernels
        gc.collect()
    sequential = runs[0]
    for other in runs[1:]:
        assert other == sequential
    # Switching a template to a member launches exactly what its own executable does.
    assert sequential["template"] == sequential["own"]
    assert sequential["reversed"] == sequential["own"]
    # Sanity: every graph launches something of its own, with the kernels by name.
    assert len(set(sequential["own"])) == len(arc.blobs)
    assert all("kernel b0:k0 grid" in r for r in sequential["own"])


def test_no_driver_call_runs_without_the_primary_context_and_nothing_leaks(buffer) -> None:
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=3, graph_threads=4)
    launch_records(graphs)
    stats = testing.fake_graph_stats()
    assert stats["context_errors"] == 0
    assert stats["library_loads"] == len(arc.images)  # each binary once
    assert stats["live_libraries"] == len(arc.images)
    del graphs, kernels
    gc.collect()
    stats = testing.fake_graph_stats()
    assert stats["live_libraries"] == 0
    assert stats["live_execs"] == 0
    assert stats["live_graphs"] == 0
    assert stats["live_events"] == 0


def test_function_attributes_are_set_once_at_their_maximum_before_any_use(buffer) -> None:
    # Graph 0 (group 0) and graph 1 (group 1) both launch b0:k0 with the most shared
    # memory; the fake refuses a node needing more than the function allows.
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=4)
    launch_records(graphs)
    assert testing.fake_graph_stats()["attribute_sets"] == 1
    assert len(kernels) == len({(i % 6, i % 3) for i in range(7)})  # (slot, entry) by position
    del graphs, kernels


def test_a_shared_memory_limit_set_higher_by_the_application_is_not_lowered(buffer) -> None:
    """Engines reuse PyTorch's loaded modules: a kernel the application allowed more dynamic
    shared memory than the archive's graphs need must keep its limit (lowering it broke the
    application's own launches)."""
    arc = archive(buffer)
    app_limit = 4096 * 8 * 4  # above every graph's need
    images = list(arc.images)
    images[0] = images[0].replace(
        b"//fake entry k0", f"//fake attr k0 8={app_limit}\n//fake entry k0".encode()
    )
    kernels, graphs = restore(type(arc)(images, arc.blobs), binary_threads=2, graph_threads=4)
    launch_records(graphs)
    assert testing.fake_graph_stats()["attribute_sets"] == 0
    del graphs, kernels


def test_background_resolution_resolves_every_planned_kernel_once_in_the_primary_context(
    buffer,
) -> None:
    arc = archive(buffer, delay_ms=2)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)  # plans every graph's kernels
    assert len(kernels) == 0
    kernels.resolve_in_background(3)
    kernels.wait_background()  # no build started: the resolvers did it all
    planned = len({(i % 6, i % 3) for i in range(7)})
    assert len(kernels) == planned
    stats = testing.fake_graph_stats()
    assert stats["library_get_kernel_calls"] == planned
    assert stats["context_errors"] == 0
    assert kernels.timings()["kernels.background"]["count"] == 1
    graphs.start(True)
    launch_records(graphs)
    assert testing.fake_graph_stats()["library_get_kernel_calls"] == planned  # none resolved twice
    del graphs, kernels


def test_background_resolution_starts_once(buffer) -> None:
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=1, graph_threads=1, resolve_threads=1)
    with pytest.raises(RestoreError, match="background resolution already started"):
        kernels.resolve_in_background(1)
    graphs.wait_all(True)
    del graphs, kernels


def _wait_loaded_by_pool(kernels, count: int) -> None:
    deadline = time.monotonic() + 10
    while kernels.timings().get("binaries.load", {}).get("count", 0) < count:
        assert time.monotonic() < deadline, "the loader pool did not finish"
        time.sleep(0.005)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_binary_loader_thread_count(buffer, threads: int) -> None:
    arc = archive(buffer, slots=8, delay_ms=20)
    kernels = native.make_kernel_table(arc.images, [-1] * 8, device=DEV, threads=threads)
    assert kernels.loader_threads == threads
    _wait_loaded_by_pool(kernels, 8)
    stats = testing.fake_graph_stats()
    assert stats["loader_threads"] == threads
    assert stats["max_concurrent_loads"] <= threads
    if threads > 1:
        assert stats["max_concurrent_loads"] > 1
    kernels.wait_loaded()
    assert testing.fake_graph_stats()["library_loads"] == 8
    del kernels


def test_no_loader_threads_loads_every_binary_before_returning(buffer) -> None:
    arc = archive(buffer, delay_ms=1)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=0)
    stats = testing.fake_graph_stats()
    assert kernels.loader_threads == 0
    assert stats["library_loads"] == len(arc.images)
    assert stats["loader_threads"] == 1 and stats["max_concurrent_loads"] == 1
    del kernels


def test_timings_name_every_step(buffer) -> None:
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=2)
    graphs.wait_all(True)
    k = kernels.timings()
    g = graphs.timings()
    assert k["binaries.load"]["count"] == len(arc.images)
    assert k["binaries.all"]["count"] == 1
    assert k["kernels.resolve"]["count"] == len(kernels)
    assert g["decode"]["count"] == len(arc.blobs)
    assert g["updates"]["count"] == len(arc.blobs)
    for step in ("task", "kernels", "check", "build", "instantiate", "upload", "member_kernels"):
        assert g[f"templates.{step}"]["count"] == graphs.family_count, step
    for step in ("task", "check", "build", "instantiate"):
        assert g[f"dedicated.{step}"]["count"] == len(arc.blobs), step
    assert g["templates.all"]["count"] == 1
    for totals in (k, g):
        for category, t in totals.items():
            assert 0 <= t["wall"] <= t["sum"] + 1e-9, category
    del graphs, kernels


def test_own_executables_start_building_once_released_after_the_templates(buffer) -> None:
    # Their instantiations would contend with the upload inside the driver.
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=4)
    graphs.wait_all(False)
    time.sleep(0.05)
    assert testing.fake_graph_stats()["instantiations"] == graphs.family_count
    assert not any(graphs.has_dedicated(i) for i in range(len(arc.blobs)))
    graphs.start_dedicated()
    graphs.wait_all(True)
    assert all(graphs.has_dedicated(i) for i in range(len(arc.blobs)))
    del graphs, kernels
    gc.collect()


def test_each_template_is_uploaded_by_its_build_before_it_counts_as_replayable(buffer) -> None:
    # Beside the other builds, on a stream of the build's own (waited for, then destroyed),
    # instead of one after another on the caller's stream once all exist.
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=2, dedicated=False)
    graphs.wait_all(False)
    stats = testing.fake_graph_stats()
    assert stats["uploads"] == stats["own_stream_uploads"] == graphs.family_count
    assert stats["live_streams"] == 0
    assert graphs.timings()["templates.upload"]["count"] == graphs.family_count
    graphs.start_dedicated()  # uploads nothing more
    assert testing.fake_graph_stats()["uploads"] == graphs.family_count
    del graphs, kernels
    gc.collect()


def test_a_failed_template_upload_fails_its_family_at_wait(buffer) -> None:
    arc = archive(buffer)
    testing.fail_uploads(1)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 1, 1)  # two families: no merging
    graphs.start(False)
    assert graphs.family_count == 2
    failed = set()
    for i in range(len(arc.blobs)):
        try:
            graphs.wait(i, False)
        except DriverError as e:
            assert "cuGraphUpload" in str(e)
            failed.add(graphs.family_of_group(graphs.group_of(i)))
    assert len(failed) == 1  # the other family uploaded and replays
    assert testing.fake_graph_stats()["live_streams"] == 0
    with pytest.raises(DriverError):
        graphs.wait_all(False)
    del graphs, kernels
    gc.collect()


def test_waiting_for_an_own_executable_starts_them_without_an_upload(buffer) -> None:
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=2)
    graphs.wait(3, True)
    assert graphs.has_dedicated(3)
    del graphs, kernels
    gc.collect()


def test_a_set_destroyed_before_its_upload_stops_its_waiting_builders(buffer) -> None:
    arc = archive(buffer)
    kernels, graphs = restore(arc, binary_threads=2, graph_threads=4)
    graphs.wait_all(False)
    del graphs, kernels  # joins the builders waiting for the upload: must not hang
    gc.collect()
    assert testing.fake_graph_stats()["live_execs"] == 0


def test_build_graph_on_a_thread_without_a_context_raises_instead_of_crashing(buffer) -> None:
    """A scratch probe calling build_graph from a fresh Python thread crashed the process
    on the H100; a build must name the missing context instead."""
    import threading

    arc = archive(buffer)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=0)
    desc = native.decode_graph(arc.blobs[0])
    native.build_graph(desc, kernels, DEV)  # this thread holds the primary context
    raised: list[BaseException] = []

    def build() -> None:
        try:
            native.build_graph(desc, kernels, DEV)
        except RestoreError as e:
            raised.append(e)

    t = threading.Thread(target=build)
    t.start()
    t.join()
    assert len(raised) == 1 and "no CUDA context is current" in str(raised[0])
    assert testing.fake_graph_stats()["context_errors"] == 0
