"""bench/hostile_campaign.py, in a small run: every reader and verb gets cases, the four
counts are zero, and the summary has what the committed results file records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_campaign_finds_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "hostile_campaign.py"),
            "--cases",
            "60",
            "--out-dir",
            str(tmp_path),
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (summary_file,) = tmp_path.glob("hostile-*.json")
    summary = json.loads(summary_file.read_text())
    assert summary["cases"] == 60
    assert [summary[k] for k in ("crashes", "hangs", "accepted", "executed")] == [0, 0, 0, 0]
    assert set(summary["per_reader"]) >= {
        "verify",
        "verify --gpu",
        "inspect",
        "diff",
        "report",
        "run --mode load --policy fallback",
        "run --mode load --policy strict",
    }
    assert summary["commit"] and summary["machine"]["cores"]
