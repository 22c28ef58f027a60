"""The manifest's optional recipe: how to re-run the program that saved the archive."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from kiln.archive import ArchiveReader, load_json
from kiln.archive.manifest import Manifest
from kiln.errors import ArchiveCorrupt

from tests.inspection.archives import good_parts, manifest_json, write

RECIPE = {"kind": "workload", "workload": "decode_small", "options": {"layers": 2}}


def _manifest(recipe: Any = None) -> Manifest:
    return Manifest(0, [(0, 4096, 0)], (0, 1), [], [], recipe=recipe)


def test_round_trip_through_json() -> None:
    m = _manifest(RECIPE)
    d = m.to_json()
    assert d["recipe"] == RECIPE
    assert Manifest.from_json(d, set()).recipe == RECIPE
    assert Manifest.from_json(d, set()) == m


def test_no_recipe_adds_no_field() -> None:
    d = _manifest().to_json()
    assert "recipe" not in d
    assert Manifest.from_json(d, set()).recipe is None


def test_the_recipe_is_copied() -> None:
    recipe = dict(RECIPE)
    m = _manifest(recipe)
    recipe["kind"] = "changed"
    assert m.recipe is not None and m.recipe["kind"] == "workload"


@pytest.mark.parametrize(
    "recipe",
    [["workload"], "workload", {}, {"kind": ""}, {"kind": 3}, {"kind": "x", "n": float("nan")}],
)
def test_a_bad_recipe_is_refused_when_made(recipe: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        _manifest(recipe)


@pytest.mark.parametrize("recipe", [["workload"], "workload", {}, {"kind": ""}, {"kind": 3}])
def test_a_bad_recipe_in_an_archive_is_corrupt(recipe: Any) -> None:
    d = _manifest().to_json()
    d["recipe"] = recipe
    with pytest.raises(ArchiveCorrupt, match=r"manifest: (bad recipe|.*\$\.recipe)"):
        Manifest.from_json(d, set())


def test_a_written_archive_keeps_it(tmp_path: Path) -> None:
    parts = good_parts()
    parts.recipe = RECIPE
    assert manifest_json(parts)["recipe"] == RECIPE
    with ArchiveReader(write(tmp_path / "graphs.kiln", parts)) as reader:
        raw = load_json(reader.section("manifest"), "manifest")
        assert Manifest.from_json(raw, set(reader.names)).recipe == RECIPE


def test_save_takes_an_optional_recipe_keyword() -> None:
    from kiln.graphs.store import save

    parameter = inspect.signature(save).parameters["recipe"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


def test_a_lone_surrogate_in_the_manifest_is_corrupt_not_a_unicode_error() -> None:
    d = _manifest().to_json()
    d["device"] = "\udc80"  # msgspec's message for a string where an int belongs
    with pytest.raises(ArchiveCorrupt, match="lone surrogate"):
        Manifest.from_json(d, set())
