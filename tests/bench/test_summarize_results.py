"""bench/summarize_results.py: summaries and grouped repeats rebuild their originals byte for
byte, a second run changes nothing, and the committed bench/results all rebuild."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import summarize_results as sr

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def vllm_record() -> dict[str, Any]:
    stages = [{"name": "device_bound", "at_s": 0.1, "duration_s": 0.6}]
    stages += [
        {"name": "capture_graph", "at_s": 1.0 + i, "duration_s": 0.35 if i == 0 else 5e-06}
        for i in range(100)
    ]
    stages += [{"name": "ready", "at_s": 200.0, "duration_s": 0.0}]
    collections = [
        {
            "at_s": i * 0.1,
            "generation": 2 if i % 10 == 0 else 0,
            "s": 0.4 if i % 10 == 0 else 1e-4,
            "collected": i,
        }
        for i in range(80)
    ]
    load = {
        "llm_init_s": 6.9,
        "worker_stages": {
            "stages": {"capture_model": 0.46},
            "collections": collections,
            "gc": {"froze": True},
        },
        "kiln_report": {"outcome": "restored", "stages": stages, "notes": []},
        "ok": True,
    }
    return {
        "benchmark": "vllm_cold_start",
        "modes": {"load": load, "load.2": json.loads(json.dumps(load))},
        "ratios": {},
    }


def stages_record(restore_s: float) -> dict[str, Any]:
    return {
        "benchmark": "restore-stages",
        "commit": "abc",
        "restore_seconds": restore_s,
        "restore_stages": {"total": restore_s},
    }


def write_inputs(d: Path) -> dict[str, str]:
    texts = {
        "vllm-X-qwen3-8b-abc.json": json.dumps(vllm_record(), indent=1),
        "restore-stages-X-decode67-abc-s15.json": json.dumps(stages_record(0.17), indent=2) + "\n",
        "restore-stages-X-decode67-abc-s15-2.json": json.dumps(stages_record(0.19), indent=2)
        + "\n",
        "restore-stages-X-decode67-abc-auto.json": json.dumps(stages_record(0.2), indent=2) + "\n",
        "restore-stages-X-decode67-abc-groups1.json": json.dumps(stages_record(0.3), indent=2)
        + "\n",
        "restore-stages-X-decode67-abc-groups64.json": json.dumps(stages_record(0.4), indent=2)
        + "\n",
    }
    for name, text in texts.items():
        (d / name).write_text(text)
    return texts


def test_summaries_and_groups_rebuild_their_originals(tmp_path: Path) -> None:
    originals = write_inputs(tmp_path)
    done = sr.run(tmp_path)
    assert done == [
        "summarized vllm-X-qwen3-8b-abc.json",
        "grouped 2 runs into restore-stages-X-decode67-abc-s15-runs.json",
    ]
    # Settings that end in a number (groups1, groups64) and lone runs are left alone.
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "restore-stages-X-decode67-abc-auto.json",
        "restore-stages-X-decode67-abc-groups1.json",
        "restore-stages-X-decode67-abc-groups64.json",
        "restore-stages-X-decode67-abc-s15-runs.json",
        "vllm-X-qwen3-8b-abc.json",
    ]
    summary = json.loads((tmp_path / "vllm-X-qwen3-8b-abc.json").read_text())
    load = summary["modes"]["load"]
    assert [s["name"] for s in load["kiln_report"]["stages"]] == [
        "device_bound",
        "capture_graph",
        "ready",
    ]
    assert load["kiln_report"]["stages"][1]["duration_s"] == 0.35
    assert {c["generation"] for c in load["worker_stages"]["collections"]} == {2}
    reduced = summary[sr.MARKER]["reduced"]["modes/load/worker_stages/collections"]
    assert reduced["entries"] == 80 and reduced["kept"] == 8
    runs = json.loads((tmp_path / "restore-stages-X-decode67-abc-s15-runs.json").read_text())
    assert runs["restore_seconds"] == [0.17, 0.19]

    for name, text in originals.items():
        assert sr.expand(tmp_path, name) == text
    assert len(sr.check(tmp_path)) == 3
    assert sr.run(tmp_path) == []  # idempotent


def test_a_broken_raw_file_is_refused(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    sr.run(tmp_path)
    summary_path = tmp_path / "vllm-X-qwen3-8b-abc.json"
    summary = json.loads(summary_path.read_text())
    summary["modes"]["load"]["llm_init_s"] = 7.0
    summary_path.write_text(json.dumps(summary, indent=1))
    try:
        sr.check(tmp_path)
    except sr.RoundTripError:
        return
    raise AssertionError("a changed summary passed the check")


def test_committed_results_rebuild() -> None:
    checked = sr.check(RESULTS)
    assert checked and all(line.startswith("ok ") for line in checked)
