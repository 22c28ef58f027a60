"""Sections verified beside the restore (kiln.archive.section_verification, native SectionVerifier):
each consumer waits for its own section's hash, nothing unverified reaches a parser or the
(fake) driver, a mismatch names its section, and kernels are planned from the blobs' shape
tables before the graphs decode. Grouped by behaviour, errors and lifetime."""

from __future__ import annotations

import gc
import hashlib

import pytest
from kiln.errors import ArchiveCorrupt
from kiln_testing import testing

from ._restore_fixture import DEV, archive, launch_records, native


def _verifier(sections: list[bytes], *, bad: frozenset[int] = frozenset(), threads: int = 3):
    """A verifier over `sections`, expecting a wrong digest for the indices in `bad`."""
    digests = [
        hashlib.sha256(s + (b"x" if i in bad else b"")).digest() for i, s in enumerate(sections)
    ]
    names = [f"s{i}" for i in range(len(sections))]
    return native.SectionVerifier(sections, digests, names, "/tmp/a.kiln", threads)


def _gated_restore(arc, verifier, *, resolve_threads: int = 2):
    """The archive's images are the verifier's first items, its blobs the next."""
    n = len(arc.images)
    binary_items = list(range(n))
    blob_items = list(range(n, n + len(arc.blobs)))
    kernels = native.make_kernel_table(
        arc.images, [-1] * n, device=DEV, threads=2, verifier=verifier, items=binary_items
    )
    if resolve_threads:
        kernels.resolve_in_background(
            resolve_threads, arc.blobs, verifier=verifier, items=blob_items
        )
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2, verifier=verifier, items=blob_items)
    graphs.start(True)
    return kernels, graphs


# --- behaviour ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, (1 << 20) + 7])
def test_native_sha256_is_hashlib_sha256(size: int) -> None:
    data = bytes((i * 131) & 0xFF for i in range(size))
    assert native.sha256_available()
    assert native.sha256(data) == hashlib.sha256(data).digest()


def test_verified_sections_restore_what_unverified_ones_do(buffer) -> None:
    arc = archive(buffer, delay_ms=2)
    plain = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    reference = native.GraphSet(arc.blobs, plain, DEV, 2)
    reference.start(True)
    expected = launch_records(reference)
    verifier = _verifier(arc.images + arc.blobs)
    _kernels, graphs = _gated_restore(arc, verifier)
    assert launch_records(graphs) == expected
    verifier.wait_all()


def test_kernels_are_planned_from_shape_tables_before_any_graph_decodes(buffer) -> None:
    arc = archive(buffer)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    kernels.resolve_in_background(2, arc.blobs)
    kernels.wait_background()
    named = {k for blob in arc.blobs for k in native.blob_kernels(blob)}
    assert len(named) == 6  # the fixture's chains use six (slot, entry) pairs
    assert len(kernels) == len(named)  # resolved with no GraphSet yet


def test_early_resolved_kernels_still_get_the_shared_memory_their_nodes_need(buffer) -> None:
    # Shape tables carry no per-node shared memory: the graph set's plan raises it later, and
    # the fake driver refuses a node whose shared memory exceeds the function's maximum.
    arc = archive(buffer)
    kernels = native.make_kernel_table(arc.images, [-1] * len(arc.images), device=DEV, threads=2)
    kernels.resolve_in_background(2, arc.blobs)
    kernels.wait_background()
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)
    graphs.start(True)
    graphs.wait_all(True)
    for i in range(len(arc.blobs)):
        graphs.launch(i, 0)


def test_blob_kernels_name_what_the_decoded_graph_launches(buffer) -> None:
    arc = archive(buffer)
    for blob in arc.blobs:
        nodes = native.decode_graph(blob).to_dict()["nodes"]
        launched = {
            (n["kernel"]["binary"], n["kernel"]["entry"]) for n in nodes if n["type"] == "kernel"
        }
        assert set(native.blob_kernels(blob)) == launched


# --- errors -------------------------------------------------------------------------------


def test_a_corrupt_binary_section_never_reaches_the_driver(buffer) -> None:
    # Slow loads keep the other slots in flight when slot 2 fails: wait_loaded must let them
    # settle before raising (it once raised at once, and this count raced the workers).
    arc = archive(buffer, delay_ms=20)
    verifier = _verifier(arc.images + arc.blobs, bad=frozenset({2}))
    kernels = native.make_kernel_table(
        arc.images,
        [-1] * len(arc.images),
        device=DEV,
        threads=2,
        verifier=verifier,
        items=list(range(len(arc.images))),
    )
    with pytest.raises(ArchiveCorrupt, match="section 's2' checksum mismatch"):
        kernels.wait_loaded()
    assert testing.fake_graph_stats()["library_loads"] == len(arc.images) - 1


def test_a_corrupt_graph_section_is_not_decoded(buffer) -> None:
    arc = archive(buffer)
    n = len(arc.images)
    verifier = _verifier(arc.images + arc.blobs, bad=frozenset({n + 3}))
    kernels = native.make_kernel_table(arc.images, [-1] * n, device=DEV, threads=2)
    with pytest.raises(ArchiveCorrupt, match=f"section 's{n + 3}' checksum mismatch"):
        native.GraphSet(
            arc.blobs, kernels, DEV, 2, verifier=verifier, items=list(range(n, n + len(arc.blobs)))
        )


def test_a_failed_shape_table_plan_is_raised_by_the_builds(buffer) -> None:
    # The early plan runs on a resolver thread; its failure must not vanish with it.
    arc = archive(buffer)
    n = len(arc.images)
    verifier = _verifier(arc.images + arc.blobs, bad=frozenset({n + 5}))
    kernels = native.make_kernel_table(arc.images, [-1] * n, device=DEV, threads=2)
    kernels.resolve_in_background(
        2, arc.blobs, verifier=verifier, items=list(range(n, n + len(arc.blobs)))
    )
    kernels.wait_background()
    graphs = native.GraphSet(arc.blobs, kernels, DEV, 2)  # these blobs are not gated
    graphs.start(False)
    with pytest.raises(ArchiveCorrupt, match=f"section 's{n + 5}' checksum mismatch"):
        graphs.wait_all(False)


def test_wait_all_raises_the_first_bad_section_in_order() -> None:
    sections = [bytes([i]) * 1000 for i in range(12)]
    verifier = _verifier(sections, bad=frozenset({9, 4}))
    with pytest.raises(ArchiveCorrupt, match="section 's4' checksum mismatch"):
        verifier.wait_all()


def test_every_truncation_of_a_blob_head_is_refused_by_blob_kernels(buffer) -> None:
    blob = archive(buffer).blobs[0]
    head = 4 + 16 + 200  # magic, counts and (more than) the first shape
    for cut in range(min(head, len(blob))):
        with pytest.raises(ArchiveCorrupt):
            native.blob_kernels(blob[:cut])


def test_gate_arguments_are_checked(buffer) -> None:
    arc = archive(buffer)
    n = len(arc.images)
    verifier = _verifier(arc.images)
    with pytest.raises(ValueError, match="without a verifier"):
        native.make_kernel_table(arc.images, [-1] * n, device=DEV, items=[0])
    with pytest.raises(ValueError, match="not one of the verifier's sections"):
        native.make_kernel_table(arc.images, [-1] * n, device=DEV, verifier=verifier, items=[n] * n)
    with pytest.raises(Exception, match="verify gate items for"):
        native.make_kernel_table(arc.images, [-1] * n, device=DEV, verifier=verifier, items=[0])
    with pytest.raises(ValueError, match="32 bytes"):
        native.SectionVerifier([b"a"], [b"short"], ["a"], "/tmp/a.kiln", 1)


# --- lifetime -----------------------------------------------------------------------------


def test_a_verifier_closed_before_hashing_a_section_fails_its_waiting_loads(buffer) -> None:
    arc = archive(buffer)
    n = len(arc.images)
    # One thread, and a first section that takes it tens of milliseconds: the images, after
    # it, are still pending when the verifier goes.
    big = bytes(96 << 20)
    verifier = _verifier([big] + arc.images, threads=1)
    kernels = native.make_kernel_table(
        arc.images, [-1] * n, device=DEV, threads=2, verifier=verifier, items=list(range(1, n + 1))
    )
    del verifier
    gc.collect()
    with pytest.raises(ArchiveCorrupt, match="closed before this section was verified"):
        kernels.wait_loaded()
    assert testing.fake_graph_stats()["library_loads"] == 0


def test_consumers_need_only_the_gate_once_sections_are_hashed(buffer) -> None:
    arc = archive(buffer)
    verifier = _verifier(arc.images + arc.blobs)
    _kernels, graphs = _gated_restore(arc, verifier)
    verifier.wait_all()
    del verifier
    gc.collect()
    graphs.wait_all(True)
    for i in range(len(arc.blobs)):
        graphs.launch(i, 0)
