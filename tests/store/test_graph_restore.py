"""kiln.graphs.restore_pipeline on the fake driver: the one restore `kiln.load` and the
engine runtime share, started when the archive is open and finished where SAVE's capture
window began."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.errors import AllocationDriftError
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


class _Reader:
    def __init__(self, sections: dict[str, bytes]) -> None:
        self.sections = sections

    def section(self, name: str) -> memoryview:
        return memoryview(self.sections[name])

    def close(self) -> None:
        pass


REGION: Any = SimpleNamespace(device=DEV, config=SimpleNamespace(base=BASE))


@pytest.fixture
def opened():
    buffer = open_fake_region(strict_context=True)
    sections, manifest = sections_and_manifest(archive(buffer))
    # SAVE allocated the graphs' buffer before an empty capture window.
    manifest.trajectory = [tuple(t) for t in native.region_trajectory(DEV)]
    manifest.window = (len(manifest.trajectory), len(manifest.trajectory))
    manifest.window_unbacked = None
    restores: list[GraphRestore] = []

    def start(options: RestoreOptions) -> GraphRestore:
        restores.append(GraphRestore(_Reader(sections), manifest, DEV, options))
        return restores[-1]

    try:
        yield start
    finally:
        for r in restores:
            r.restored.close()
        gc.collect()
        close_fake()


def test_a_restore_finishes_with_every_graph_replayable_once(opened) -> None:
    restore = opened(RestoreOptions(verify=False, build_threads=2))
    restored = restore.materialize(REGION)
    assert restored.started and len(restored) == len(restore.manifest.graphs)
    assert restore.materialize(REGION) is restored  # the first restored graph finished it
    restored.finish()
    assert all(restored[name].has_own_executable for name in restored)


def test_kiln_load_and_engines_share_one_template_per_group_by_default(opened) -> None:
    restored = opened(RestoreOptions(verify=False)).materialize(REGION)
    assert restored.template_count == restored.group_count == 2


def test_merged_templates_are_asked_for_explicitly(opened) -> None:
    restored = opened(RestoreOptions(verify=False, template_groups=0)).materialize(REGION)
    assert (restored.group_count, restored.template_count) == (2, 1)


def test_drift_before_the_window_stops_the_restore_before_any_build(opened) -> None:
    restore = opened(RestoreOptions(verify=False))
    native.region_allocate(DEV, 1 << 20)  # one allocation SAVE never made
    with pytest.raises(AllocationDriftError, match="allocation #1"):
        restore.materialize(REGION)
    assert not restore.restored.started
