"""Property-based tests of the native decoders (graph blobs, kernel images): hostile bytes
give a result or a KilnError, never a crash. A crash would kill the test process: the
campaign (bench/hostile_campaign.py) runs the same decoders in child processes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiln.errors import KilnError

from tests.hostile.strategies import CI_EXAMPLES, mutated

pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

from kiln.native import native

from tests.inspection.archives import PTX_ADD, blob, good_parts

GRAPH = blob(good_parts().graphs[0].desc)


@settings(max_examples=CI_EXAMPLES * 3, deadline=None)
@given(data=mutated(GRAPH) | st.binary(max_size=300))
def test_decode_graph_decodes_or_raises_a_kiln_error(data: bytes) -> None:
    try:
        desc = native().decode_graph(data)
    except KilnError as err:
        assert str(err)
        return
    desc.to_dict()  # an accepted blob is fully readable


@settings(max_examples=CI_EXAMPLES * 3, deadline=None)
@given(data=mutated(PTX_ADD) | mutated(b"\x7fELF" + bytes(60)) | st.binary(max_size=300))
def test_validate_image_validates_or_raises_a_kiln_error(data: bytes) -> None:
    try:
        _kind, size = native().validate_image(data)
    except KilnError as err:
        assert str(err)
        return
    assert 0 < size <= len(data)
