"""bench/vllm_cold_start.py's `load-fresh` mode: its environment, the archive sizes with and
without caches, `load_fresh_over_load` and the record's name (CPU: no engine runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kiln.archive import write_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from vllm_cold_start import archive_sizes, fresh_environment, summarize, write_record

FACTS = {"device_name": "NVIDIA H100", "driver": "1", "commit": "abc", "date": "2026-12-08"}


def start(llm_s: float, **extra: object) -> dict:
    return {
        "ok": True,
        "llm_init_s": llm_s,
        "decode_tokens_per_s_steady": 100.0,
        "first_request_1_token_s": 0.04,
        "first_use_sum_s": 0.1,
        "tokens": [[1, 2]],
        "long_tokens": [[3]],
        **extra,
    }


def test_fresh_environment_empties_every_cache_location(tmp_path: Path) -> None:
    env = fresh_environment({"TRITON_CACHE_DIR": "/x", "HOME": "/root", "PATH": "/bin"}, tmp_path)
    assert "TRITON_CACHE_DIR" not in env and env["PATH"] == "/bin"
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "CUDA_CACHE_PATH"):
        assert Path(env[name]).is_dir() and not any(Path(env[name]).iterdir())
    (tmp_path / "home" / "left").write_text("")
    with pytest.raises(SystemExit, match="not empty"):
        fresh_environment({}, tmp_path)


def test_archive_sizes_with_and_without_cache_sections(tmp_path: Path) -> None:
    write_archive(
        tmp_path / "graphs.kiln", {"graphs": b"g" * 100, "caches": b"{}", "cache/ab": b"c" * 1000}
    )
    sizes = archive_sizes(tmp_path)
    assert sizes["archive_bytes_with_caches"] == (tmp_path / "graphs.kiln").stat().st_size
    assert sizes["archive_bytes_with_caches"] - sizes["archive_bytes_without_caches"] >= 1002


def test_the_record_has_load_fresh_over_load_and_ends_in_fresh(tmp_path: Path) -> None:
    report = {"caches": {"compiled": {"files": 0}}}
    modes = {
        "native": start(30.0),
        "save": start(40.0, archive_bytes_with_caches=10, archive_bytes_without_caches=6),
        "load": start(10.0, kiln_report=report),
        "load-fresh": start(10.5, kiln_report=report),
    }
    record = summarize(modes, FACTS, "qwen3-8b", 2048)
    assert record["ratios"]["load_fresh_over_load"] == pytest.approx(1.05)
    assert record["tokens_identical_to_native"]["load-fresh"] is True
    assert (record["archive_bytes_with_caches"], record["archive_bytes_without_caches"]) == (10, 6)
    assert record["caches"]["load-fresh"] == report["caches"]
    path = write_record(record, tmp_path)
    assert path.name == "vllm-NVIDIA-H100-2026-12-08-qwen3-8b-fresh.json"
