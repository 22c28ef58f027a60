"""store.load_kernels / start_graphs on the fake driver: binaries load in the background
while the graphs decode, and the restored set reports where the time went, flat, for
bench/restore.py's restore_stages."""

from __future__ import annotations

import gc
import time

import pytest
from kiln.errors import KilnError
from kiln.graphs import store
from kiln.graphs.restored import RestoredSet
from kiln_testing import testing

from tests.native._restore_fixture import (
    DEV,
    archive,
    close_fake,
    native,  # noqa: F401 (imported to skip without the extension)
    open_fake_region,
    sections_and_manifest,
)


class _Reader:
    def __init__(self, sections: dict[str, bytes]) -> None:
        self.sections = sections
        self.closed = False

    def section(self, name: str) -> memoryview:
        return memoryview(self.sections[name])

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def restored():
    buffer = open_fake_region(strict_context=True)
    arc = archive(buffer)
    sections, manifest = sections_and_manifest(arc)
    reader = _Reader(sections)
    r = RestoredSet(reader, DEV)
    try:
        yield r, reader, manifest
    finally:
        r.close()
        gc.collect()
        close_fake()


def test_restore_reports_native_stage_timings(restored) -> None:
    r, reader, manifest = restored
    store.load_kernels(reader, manifest, r, threads=2, resolve_threads=2)
    assert r.kernels.loader_threads == 2
    # Merged templates asked for (the default is one template per topology group).
    store.start_graphs(reader, manifest, r, dedicated=True, threads=2, template_groups=0)
    r.graph_set.wait_all(False)
    r.kernels.wait_background()
    t = r.native_timings()
    for category in (
        "binaries_load",
        "binaries_all",
        "kernels_resolve",
        "kernels_background",
        "decode",
        "updates",
        "families",
        "templates_task",
        "templates_kernels",
        "templates_check",
        "templates_build",
        "templates_instantiate",
        "templates_upload",
        "templates_member_kernels",
        "templates_all",
    ):
        for suffix in ("sum", "wall", "count"):
            assert isinstance(t[f"{category}_{suffix}"], float), (category, suffix)
    assert t["templates_instantiate_count"] == r.template_count == 1  # two groups, one template
    assert t["binaries_load_count"] == len(manifest.binaries)
    # The archive stays mapped until the libraries are unloaded: the driver need not copy.
    stats = testing.fake_graph_stats()
    assert stats["preserved_loads"] == stats["library_loads"] == len(manifest.binaries)
    r.finish()
    assert all(r[name].has_own_executable for name in r)


def test_restore_timings_place_each_category_after_the_start(restored) -> None:
    r, reader, manifest = restored
    r.started_at = time.monotonic()
    store.load_kernels(reader, manifest, r, threads=2, resolve_threads=2)
    store.start_graphs(reader, manifest, r, dedicated=False, threads=2)
    r.graph_set.wait_all(False)
    r.kernels.wait_background()
    done = time.monotonic() - r.started_at
    t = r.native_timings()
    for category in ("binaries_all", "decode", "templates_instantiate", "templates_all"):
        start, end = t[f"{category}_start"], t[f"{category}_end"]
        assert 0 <= start <= end <= done, (category, start, end, done)
        assert end - start >= t[f"{category}_wall"] - 1e-9
    # The templates build from decoded graphs: they start after the decode's first graph.
    assert t["templates_task_start"] >= t["decode_start"]
    r.started_at = None
    assert "decode_start" not in r.native_timings()


@pytest.mark.parametrize(
    ("count", "env", "default"),
    [
        (store.binary_thread_count, store.BINARY_THREADS_ENV, 3),
        (store.resolve_thread_count, store.RESOLVE_THREADS_ENV, 2),
        (store.build_thread_count, store.BUILD_THREADS_ENV, 2),
    ],
)
def test_thread_count_options(monkeypatch, count, env: str, default: int) -> None:
    monkeypatch.delenv(env, raising=False)
    assert count() == default
    assert count(0) == 0
    monkeypatch.setenv(env, "5")
    assert count() == 5
    assert count(4) == 4  # an explicit argument wins
    monkeypatch.setenv(env, "many")
    with pytest.raises(KilnError, match=env):
        count()
    monkeypatch.setenv(env, "-1")
    with pytest.raises(KilnError, match=">= 0"):
        count()
