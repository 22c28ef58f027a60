"""Environment fingerprints: first differing field, missing keys, the full diff."""

from __future__ import annotations

import pytest
from kiln.archive import FIELD_ORDER, compare_fingerprints, diff_fingerprints, values_equal
from kiln.errors import ArchiveError, FingerprintMismatch

BASE: dict[str, object] = {
    "format_version": 1,
    "kiln_version": "0.1.0",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": [9, 0],
    "driver_version": "580.159.04",
    "cuda_runtime": "13.0",
    "torch_version": "2.11.0+cu130",
    "region_base": 0x7F0000000000,
    "region_size": 1 << 36,
    "engine": "vllm",
    "adapter_version": "0.1.0",
}


def _changed(**changes: object) -> dict[str, object]:
    return {**BASE, **changes}


def test_field_order() -> None:
    assert FIELD_ORDER == (
        "format_version",
        "kiln_version",
        "gpu_name",
        "compute_capability",
        "driver_version",
        "cuda_runtime",
        "torch_version",
        "region_base",
        "region_size",
    )


def test_identical_fingerprints_pass() -> None:
    compare_fingerprints(BASE, dict(BASE))
    assert diff_fingerprints(BASE, dict(reversed(list(BASE.items())))) == []


def test_first_differing_field_in_order() -> None:
    actual = _changed(region_size=1, torch_version="2.12.0", gpu_name="NVIDIA H200", engine="x")
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, actual)
    err = info.value
    assert isinstance(err, ArchiveError)
    assert (err.field, err.expected, err.actual) == ("gpu_name", BASE["gpu_name"], "NVIDIA H200")
    assert "'gpu_name'" in str(err) and "NVIDIA H200" in str(err)


def test_ordered_fields_before_others_then_sorted() -> None:
    actual = _changed(engine="sglang", adapter_version="9", region_size=2)
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, actual)
    assert info.value.field == "region_size"
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, _changed(engine="sglang", adapter_version="9"))
    assert info.value.field == "adapter_version"  # sorted: adapter_version < engine


@pytest.mark.parametrize("side", ["expected", "actual"])
def test_key_missing_on_one_side(side: str) -> None:
    short = {k: v for k, v in BASE.items() if k != "driver_version"}
    expected, actual = (short, BASE) if side == "expected" else (BASE, short)
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(expected, actual)
    err = info.value
    assert err.field == "driver_version"
    if side == "expected":
        assert (err.expected, err.actual) == (None, "580.159.04")
    else:
        assert (err.expected, err.actual) == ("580.159.04", None)


def test_missing_extra_key_and_present_none_differ() -> None:
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, _changed(zzz=None))
    assert (info.value.field, info.value.expected, info.value.actual) == ("zzz", None, None)


def test_custom_order() -> None:
    actual = _changed(gpu_name="other", engine="other")
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, actual, order=("engine", "gpu_name"))
    assert info.value.field == "engine"
    assert [d[0] for d in diff_fingerprints(BASE, actual, order=())] == ["engine", "gpu_name"]


def test_diff_lists_everything_in_order() -> None:
    a = dict(BASE)
    b = _changed(region_base=0, kiln_version="0.2.0", engine="sglang", extra=[1])
    del b["cuda_runtime"]
    assert diff_fingerprints(a, b) == [
        ("kiln_version", "0.1.0", "0.2.0"),
        ("cuda_runtime", "13.0", None),
        ("region_base", 0x7F0000000000, 0),
        ("engine", "vllm", "sglang"),
        ("extra", None, [1]),
    ]
    assert diff_fingerprints(b, a)[0] == ("kiln_version", "0.2.0", "0.1.0")


def test_values_compare_like_json() -> None:
    # A fingerprint read back from JSON holds lists where the live one may hold tuples.
    compare_fingerprints(BASE, _changed(compute_capability=(9, 0)))
    assert values_equal({"a": (1, [2])}, {"a": [1, (2,)]})
    # No silent equality across JSON types.
    assert not values_equal(True, 1)
    assert not values_equal(1, 1.0)
    assert not values_equal(0, False)
    assert not values_equal(None, 0)
    assert not values_equal("1", 1)
    assert not values_equal([1], {"1": 1})
    assert not values_equal(float("nan"), float("nan"))
    assert not values_equal({"a": 1}, {"a": 1, "b": 2})
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(_changed(format_version=1), _changed(format_version=True))
    assert info.value.field == "format_version"
    with pytest.raises(FingerprintMismatch) as info:
        compare_fingerprints(BASE, _changed(compute_capability=[9, 0, 0]))
    assert info.value.field == "compute_capability"


def test_empty_fingerprints() -> None:
    compare_fingerprints({}, {})
    assert diff_fingerprints({}, {"gpu_name": "x"}) == [("gpu_name", None, "x")]
