"""bench/vllm_merge_calls.py: starts from consecutive runs on one machine become one record
whose tokens are compared with native's across runs, and runs that do not belong together
are refused."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from vllm_merge_calls import merge

FACTS = {"device_name": "H", "driver": "1", "commit": "abc", "date": "2026-11-22"}


def start(llm_s: float) -> dict[str, Any]:
    return {
        "ok": True,
        "llm_init_s": llm_s,
        "decode_tokens_per_s_steady": 100.0,
        "first_request_1_token_s": 0.04,
        "first_use_sum_s": 0.1,
    }


def call(
    tmp_path: Path, name: str, starts: dict[str, tuple[float, list[int]]], **facts: Any
) -> tuple[str, str]:
    """One call's record (tokens left out, as the benchmark writes it) and its logs."""
    record = {
        **FACTS,
        **facts,
        "model": "m",
        "max_model_len": 2048,
        "modes": {mode: start(llm) for mode, (llm, _) in starts.items()},
    }
    result = tmp_path / f"{name}.json"
    result.write_text(json.dumps(record))
    logs = tmp_path / f"{name}.tgz"
    with tarfile.open(logs, "w:gz") as tar:
        for mode, (_, tokens) in starts.items():
            data = json.dumps({"tokens": [tokens], "long_tokens": [[1]]}).encode()
            info = tarfile.TarInfo(f"./{mode}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(result), str(logs)


def test_tokens_and_ratios_compare_with_native_from_another_call(tmp_path: Path) -> None:
    first = call(tmp_path, "a", {"save": (30.0, [5, 6]), "load": (6.0, [5, 6]), "bad": (6, [7])})
    second = call(tmp_path, "b", {"native": (24.0, [5, 6])})
    merged = merge([first, second])
    assert merged["tokens_identical_to_native"] == {
        "save": True,
        "load": True,
        "bad": False,
        "native": True,
    }
    assert merged["ratios"]["load_llm_init_over_native"] == pytest.approx(0.25)
    assert merged["device_calls"] == [["save", "load", "bad"], ["native"]]
    assert merged["commit"] == "abc"
    assert all("tokens" not in r for r in merged["modes"].values())


def test_calls_from_different_commits_are_refused(tmp_path: Path) -> None:
    first = call(tmp_path, "a", {"load": (6.0, [1])})
    second = call(tmp_path, "b", {"native": (24.0, [1])}, commit="def")
    with pytest.raises(SystemExit, match="commit"):
        merge([first, second])


def test_a_mode_started_in_two_calls_is_refused(tmp_path: Path) -> None:
    first = call(tmp_path, "a", {"load": (6.0, [1])})
    second = call(tmp_path, "b", {"load": (7.0, [1])})
    with pytest.raises(SystemExit, match="load"):
        merge([first, second])


def test_a_start_whose_tokens_are_missing_from_the_logs_is_named(tmp_path: Path) -> None:
    # Regression: tarfile.extractfile raises KeyError for a missing member, so the merge
    # crashed with a KeyError instead of naming the start.
    result, logs = call(tmp_path, "a", {"load": (6.0, [1])})
    record = json.loads(Path(result).read_text())
    record["modes"]["native"] = start(24.0)
    Path(result).write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="holds no native.json"):
        merge([(result, logs)])
