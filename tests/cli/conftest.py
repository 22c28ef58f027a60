from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata

import pytest

from tests.lifecycle.helpers import INSTALL_ADAPTER, close_current_driver


@pytest.fixture(autouse=True)
def _fresh_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    # Each test starts its own lifecycle; the process-wide driver must not leak between tests.
    close_current_driver()
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # no stray ./kiln.toml
    yield
    close_current_driver()


@pytest.fixture(scope="session")
def toy_adapter() -> metadata.Distribution:
    """The fixture adapter, installed through pip with a real entry point."""
    try:
        return metadata.distribution("kiln-test-adapter")
    except metadata.PackageNotFoundError:
        pytest.fail(f"the test adapter is not installed; run: {INSTALL_ADAPTER}")
