"""How kiln is distributed: the distribution's name, what it ships, what adapters require."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "kiln-cuda"


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def test_the_distribution_is_not_named_like_the_unrelated_kiln_on_pypi() -> None:
    # Bug: the distribution was "kiln", a 2007 project on PyPI: `pip install kiln` installed
    # someone else's code and adapters could not declare their dependency on the core.
    assert _project(ROOT / "pyproject.toml")["name"] == DISTRIBUTION
    dist = metadata.distribution(DISTRIBUTION)
    assert dist.version == metadata.version(DISTRIBUTION)
    # The import package and the console script keep the name kiln.
    assert any(str(f) == "kiln/__init__.py" for f in dist.files or ())
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"kiln": "kiln.cli:main"}


def test_kiln_version_is_the_distributions() -> None:
    import kiln

    assert kiln.__version__ == metadata.version(DISTRIBUTION)


ADAPTERS = sorted(
    [
        *ROOT.glob("adapters/*/pyproject.toml"),
        ROOT / "tests/fixtures/kiln_test_adapter/pyproject.toml",
    ]
)


@pytest.mark.parametrize("pyproject", ADAPTERS, ids=lambda p: p.parent.name)
def test_every_adapter_depends_on_the_core_within_its_minor_series(pyproject: Path) -> None:
    requires = [Requirement(text) for text in _project(pyproject).get("dependencies", [])]
    core = [r for r in requires if r.name == DISTRIBUTION]
    assert len(core) == 1, f"{pyproject} does not depend on {DISTRIBUTION}"
    assert not any(r.name == "kiln" for r in requires)
    assert core[0].specifier.contains(metadata.version(DISTRIBUTION))
    assert not core[0].specifier.contains("0.2.0")  # the next minor may change the hooks


@pytest.mark.parametrize("adapter", ["kiln-vllm", "kiln-test-adapter"])
def test_installed_adapters_are_satisfied_by_the_installed_core(adapter: str) -> None:
    try:
        requires = metadata.requires(adapter) or []
    except metadata.PackageNotFoundError:
        pytest.skip(f"{adapter} is not installed")
    (core,) = [Requirement(r) for r in requires if Requirement(r).name == DISTRIBUTION]
    assert core.specifier.contains(metadata.version(DISTRIBUTION))


def test_the_package_ships_its_type_information() -> None:
    files = {str(f) for f in metadata.distribution(DISTRIBUTION).files or ()}
    assert "kiln/py.typed" in files
    assert "kiln/_native.pyi" in files


def test_zstd_and_lz4_come_from_declared_dependencies() -> None:
    names = {Requirement(r).name for r in _project(ROOT / "pyproject.toml")["dependencies"]}
    assert {"zstandard", "lz4", "msgspec"} <= names
