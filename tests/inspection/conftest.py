from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("kiln._native", reason="kiln's native extension is not built")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    from tests.inspection.archives import write

    return write(tmp_path / "a" / "graphs.kiln")
