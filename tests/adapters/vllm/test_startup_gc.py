"""The heap frozen while the engine process starts (kiln_vllm.startup_gc): what startup's
collections still free, what they leave to vLLM's own freeze, the switch, and that it never
thaws a freeze it did not make."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.startup_gc import (
    ENV,
    CollectionLog,
    StartupFreeze,
    startup_freeze_requested,
)


class Node:
    """A reference cycle only the cycle collector frees."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()  # nothing in the test process freezes; start and end without a freeze
    yield
    gc.unfreeze()


def cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


def test_startup_collections_free_what_startup_made(thawed: None) -> None:
    freeze = StartupFreeze()
    assert freeze.begin(environ={})
    made_during_startup = cycle()
    gc.collect()
    assert made_during_startup() is None


def test_what_existed_before_is_left_to_the_collection_after_the_freeze(thawed: None) -> None:
    before = Node()
    ref = weakref.ref(before)
    freeze = StartupFreeze()
    assert freeze.begin(environ={})
    del before
    gc.collect()
    assert ref() is not None  # frozen: startup's collections skip it
    freeze.end()
    gc.collect()
    assert ref() is None  # vLLM's own full collection frees it, as natively


def test_vllm_freeze_runs_after_the_startup_freeze_ends(thawed: None) -> None:
    freeze = StartupFreeze()
    freeze.begin(environ={})
    seen: list[int] = []

    def freeze_gc_heap() -> None:  # vLLM's: collect everything, then freeze
        seen.append(gc.get_freeze_count())
        gc.collect()
        gc.freeze()

    freeze.ending_before(freeze_gc_heap)()
    assert seen == [0]
    assert not freeze.active
    frozen_by_vllm = gc.get_freeze_count()
    freeze.end()  # the worker's `finally`: must not thaw vLLM's freeze
    assert gc.get_freeze_count() == frozen_by_vllm > 0


def test_off_switch_freezes_nothing(thawed: None) -> None:
    freeze = StartupFreeze()
    assert not freeze.begin(environ={ENV: "0"})
    assert gc.get_freeze_count() == 0
    assert not freeze.active


def test_other_values_of_the_switch_are_refused() -> None:
    with pytest.raises(KilnError, match=ENV):
        startup_freeze_requested({ENV: "yes"})


def test_an_earlier_freeze_does_not_stop_the_startup_freeze(thawed: None) -> None:
    # Regression: a Python that had frozen objects at interpreter start (375 on one H100
    # host) made kiln decline to freeze, so every startup collection scanned the whole heap.
    gc.freeze()
    made_after = Node()  # what begin has to freeze beyond the earlier freeze
    freeze = StartupFreeze()
    earlier = gc.get_freeze_count()
    assert freeze.begin(environ={})
    assert freeze.frozen_before == earlier > 0
    assert gc.get_freeze_count() > earlier
    assert made_after.me is made_after


def test_after_an_earlier_freeze_vllm_freeze_still_sees_the_whole_heap(thawed: None) -> None:
    earlier = Node()
    ref = weakref.ref(earlier)
    gc.freeze()  # someone else's freeze holds `earlier`
    freeze = StartupFreeze()
    freeze.begin(environ={})
    del earlier
    seen: list[int] = []

    def freeze_gc_heap() -> None:
        seen.append(gc.get_freeze_count())
        gc.collect()
        gc.freeze()

    freeze.ending_before(freeze_gc_heap)()
    assert seen == [0]
    assert ref() is None  # vLLM's full collection saw it, as it would have natively


def test_the_failure_path_never_thaws_an_earlier_freeze(thawed: None) -> None:
    gc.freeze()
    freeze = StartupFreeze()
    assert freeze.begin(environ={})
    frozen = gc.get_freeze_count()
    freeze.end()  # vLLM failed before its own freeze: nothing would freeze again
    assert gc.get_freeze_count() == frozen
    assert not freeze.active


def test_begin_twice_then_end_once_thaws(thawed: None) -> None:
    freeze = StartupFreeze()
    assert freeze.begin(environ={})
    assert not freeze.begin(environ={})
    freeze.end()
    assert gc.get_freeze_count() == 0


def test_collection_log_records_each_collection_until_stopped() -> None:
    log = CollectionLog()
    log.start()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        log.stop()
    gc.collect()
    assert [r["generation"] for r in log.records[-2:]] == [2, 0]
    assert all(r["s"] >= 0 and r["at_s"] >= 0 for r in log.records)
    count = len(log.records)
    gc.collect()
    assert len(log.records) == count
