from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from kiln import _paths

from tests.cli.helpers import Exec, clean_environment
from tests.lifecycle.helpers import INSTALL_ADAPTER, close_current_driver


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    close_current_driver()
    clean_environment(monkeypatch, tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield
    close_current_driver()


@pytest.fixture
def preload(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "lib" / "libkiln_preload.so"
    path.parent.mkdir()
    path.write_bytes(b"fake interposer")
    monkeypatch.setattr(_paths, "preload_library", lambda: path)
    return path


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> Exec:
    fake = Exec()
    monkeypatch.setattr("os.execvpe", fake)
    return fake


@pytest.fixture(scope="session")
def toy_adapter() -> metadata.Distribution:
    try:
        return metadata.distribution("kiln-test-adapter")
    except metadata.PackageNotFoundError:
        pytest.fail(f"the test adapter is not installed; run: {INSTALL_ADAPTER}")
