"""Binaries whose module globals the application obtained (cudaMemcpyToSymbol and the like):
SAVE records the symbols, LOAD launches their kernels only from the application's own
loaded module, never from a copy holding the image's initial values."""

from __future__ import annotations

import hashlib
import itertools
import uuid

import pytest
from kiln.archive.manifest import BinaryEntry, Manifest
from kiln.errors import ArchiveCorrupt, RestoreError
from kiln.graphs import store
from kiln_testing import testing

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")
t = testing

_modules = itertools.count(0x6106_0000_0000, 0x10)  # made-up module handles, unique


def _image() -> bytes:
    return f"//fake name g{uuid.uuid4().hex}\n//fake entry k0 8\n".encode() + b"\0"


def _entry(image: bytes, globals_: tuple[str, ...] = ()) -> BinaryEntry:
    return BinaryEntry("b0", hashlib.sha256(image).hexdigest(), len(image), "ptx", globals=globals_)


def test_a_global_obtained_through_a_module_is_recorded_for_its_binary() -> None:
    binary = native.record_image(_image())
    module = next(_modules)
    t.record_module(module, binary)
    t.record_module_global(module, "scale")
    t.record_module_global(module, "bias")
    t.record_module_global(module, "scale")
    assert native.binary_globals(binary) == ["bias", "scale"]


def test_a_global_of_a_module_kiln_did_not_record_is_ignored() -> None:
    binary = native.record_image(_image())
    t.record_module_global(next(_modules), "scale")
    assert native.binary_globals(binary) == []


def test_load_refuses_a_stateful_binary_the_application_has_not_loaded() -> None:
    # Regression: a kernel reading a __device__ global the application set after loading its
    # module ran at LOAD from kiln's own copy of the binary, whose global held the image's
    # initial value.
    with pytest.raises(RestoreError, match=r"b0 has module globals .*\(scale\).*initial values"):
        store._app_copies([_entry(_image(), ("scale",))])


def test_load_uses_the_applications_own_copy_of_a_stateful_binary() -> None:
    image = _image()
    binary = native.record_image(image)
    t.record_module(next(_modules), binary)  # loaded by the application
    assert store._app_copies([_entry(image, ("scale",))]) == [binary]


def test_a_stateless_binary_may_come_from_the_archive() -> None:
    assert store._app_copies([_entry(_image())]) == [-1]


def _manifest_json(binary: dict) -> dict:
    return {"device": 0, "trajectory": [], "window": [0, 0], "binaries": [binary], "graphs": []}


def test_globals_round_trip_through_the_manifest() -> None:
    e = _entry(_image(), ("bias", "scale"))
    assert Manifest.from_json(Manifest(0, [], (0, 0), [e], []).to_json(), {"b0"}).binaries == [e]
    plain = _entry(_image())
    assert "globals" not in plain.to_json()


@pytest.mark.parametrize("value", ["scale", [1], [""], ["x" * 5000], [None], {"a": 1}])
def test_malformed_globals_in_the_manifest_are_refused(value) -> None:
    binary = {**_entry(_image()).to_json(), "globals": value}
    with pytest.raises(ArchiveCorrupt, match="globals"):
        Manifest.from_json(_manifest_json(binary), {"b0"})
