"""bench/vllm_two_slots.py on CPU: its arguments, each process's command and environment
(region slot, caches), the record it assembles, and its phases end to end with stand-in
engines that place their region and refuse a foreign archive as kiln does (the region base
from kiln's own slot arithmetic, the refusal from kiln's own fingerprint comparison). The
engines themselves need a GPU and vLLM (tests/gpu and the bench's own run)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kiln.lifecycle import archive_io
from kiln.region import DEFAULT_BASE, DEFAULT_SIZE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import vllm_two_slots as bench

FACTS = {"device_name": "NVIDIA H100 80GB HBM3", "driver": "580", "commit": "abc", "date": "d"}
SETTINGS = {"model": "qwen3-0.6b", "max_model_len": 2048}


def args(*extra: str) -> argparse.Namespace:
    return bench.build_parser().parse_args(["--model", "/m/qwen3-0.6b", *extra])


# --- arguments ------------------------------------------------------------------------------


def test_phases_default_to_all_four_in_order() -> None:
    assert args().phases == ["native", "save", "load", "faults"]
    assert args("--phases", "load,faults").phases == ["load", "faults"]


@pytest.mark.parametrize("text", ["load,restore", "", ",", "LOAD"])
def test_unknown_or_empty_phases_are_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        args("--phases", text)
    assert "phases are a comma-separated subset" in capsys.readouterr().err


@pytest.mark.parametrize("util", ["0", "0.5", "0.9", "-0.1"])
def test_a_utilization_two_engines_cannot_both_get_is_refused(util: str) -> None:
    with pytest.raises(SystemExit, match="gpu-memory-utilization"):
        bench.check_settings(args("--gpu-memory-utilization", util))


def test_a_kv_cache_size_is_required_so_vllm_does_not_profile() -> None:
    with pytest.raises(SystemExit, match="kv-cache-bytes"):
        bench.check_settings(args("--kv-cache-bytes", "0"))
    bench.check_settings(args())  # the defaults pass


# --- commands and environments ----------------------------------------------------------------


def test_both_engines_run_the_same_command_in_each_mode(tmp_path: Path) -> None:
    a = args()
    for phase in bench.PHASES:
        commands = {tuple(bench.command_for(s, a, tmp_path)[-11:]) for s in bench.starts(phase)}
        assert len(commands) == 1, phase  # the engine command kiln fingerprints is one


def test_kiln_phases_run_under_kiln_with_the_engines_own_archive(tmp_path: Path) -> None:
    a = args()
    native = bench.command_for(bench.starts("native")[0], a, tmp_path)
    assert "kiln.cli" not in native and "--child" in native
    for phase, mode in (("save", "save"), ("load", "load"), ("faults", "load")):
        for start in bench.starts(phase):
            cmd = bench.command_for(start, a, tmp_path)
            assert cmd[cmd.index("--mode") + 1] == mode
            assert cmd[cmd.index("--policy") + 1] == "strict"
            assert cmd[cmd.index("--archive") + 1] == str(tmp_path / start.archive_of / "archive")


def test_each_engine_gets_its_own_slot_and_a_fault_without_slot_gets_none(
    tmp_path: Path,
) -> None:
    base = {"KILN_REGION_SLOT": "7", "PATH": "/bin"}
    slots = {
        (s.phase, s.label): bench.environment_for(s, base, tmp_path).get("KILN_REGION_SLOT")
        for p in bench.PHASES
        for s in bench.starts(p)
    }
    for phase in ("native", "save", "load"):
        assert slots[(phase, "a")] == "0" and slots[(phase, "b")] == "1"
    assert slots[("faults", "a-archive-in-slot-1")] == "1"
    assert slots[("faults", "b-archive-without-slot")] is None


def test_kiln_starts_leave_the_caches_to_kiln_and_native_starts_compile_apart(
    tmp_path: Path,
) -> None:
    base = {name: "/shared" for name in (*bench.KILN_PINNED_CACHES, *bench.NATIVE_CACHES)}
    for start in bench.starts("save"):
        env = bench.environment_for(start, base, tmp_path)
        assert not set(bench.KILN_PINNED_CACHES) & set(env)
    a, b = (bench.environment_for(s, base, tmp_path) for s in bench.starts("native"))
    for name in bench.NATIVE_CACHES:
        assert a[name] != b[name] and "/shared" not in (a[name], b[name])


def test_every_start_writes_its_own_result_file(tmp_path: Path) -> None:
    outs = [
        bench.environment_for(s, {}, tmp_path)["KILN_BENCH_OUT"]
        for p in bench.PHASES
        for s in bench.starts(p)
    ]
    assert len(set(outs)) == len(outs)


def test_the_report_read_is_the_one_kiln_writes_for_rank_0(tmp_path: Path) -> None:
    assert archive_io.report_file(tmp_path, 0) == tmp_path / bench.REPORT


def test_the_fault_slots_are_the_other_engines_slots() -> None:
    for fault in bench.FAULTS:
        assert fault.slot_used != bench.ENGINES[fault.archive_of]
        assert fault.slot_used == (0 if fault.slot is None else fault.slot)


# --- the record -------------------------------------------------------------------------------


def engine_result(tokens: list[list[int]], began: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "returncode": 0,
        "tokens": tokens,
        "llm_started_at": began,
        "llm_ended_at": began + 10.0,
        **extra,
    }


def write_engine_archive(work: Path, engine: str, base: int, payload: bytes = b"") -> None:
    path = archive_io.archive_file(bench.archive_dir(work, engine), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = {"region_base": base, "region_size": DEFAULT_SIZE}
    archive_io.write(
        path, {"fingerprint": archive_io.encode_json(fingerprint), "graphs": payload or b"g"}
    )


def mismatch(saved: int, this: int) -> str:
    return (
        f"fingerprint mismatch in field 'region_base': archive has {saved}, this process has {this}"
    )


def fault_result(saved: int, this: int, *, rc: int = 1, kind: str = "FingerprintMismatch") -> dict:
    report = {
        "outcome": "failed",
        "error": {"stage": "device_bound", "type": kind, "message": mismatch(saved, this)},
    }
    return {"ok": False, "returncode": rc, "kiln_report": report}


BASE_A, BASE_B = DEFAULT_BASE, DEFAULT_BASE + DEFAULT_SIZE


def full_phases(
    tokens_b_load: list[list[int]] | None = None, faults: dict[str, dict] | None = None
) -> dict[str, dict[str, Any]]:
    t = [[1, 2, 3]]
    restored = {"kiln_report": {"outcome": "restored"}}
    return {
        "native": {"starts": {"a": engine_result(t), "b": engine_result(t, 4.0)}},
        "save": {"starts": {"a": engine_result(t), "b": engine_result(t, 2.0)}},
        "load": {
            "starts": {
                "a": engine_result(t, **restored),
                "b": engine_result(tokens_b_load or t, 1.0, **restored),
            }
        },
        "faults": {
            "starts": faults
            or {
                "a-archive-in-slot-1": fault_result(BASE_A, BASE_B),
                "b-archive-without-slot": fault_result(BASE_B, BASE_A),
            }
        },
    }


def archives(tmp_path: Path, base_b: int = BASE_B) -> dict[str, dict[str, Any]]:
    write_engine_archive(tmp_path, "a", BASE_A, b"a")
    write_engine_archive(tmp_path, "b", base_b, b"b")
    return {e: bench.archive_facts(bench.archive_dir(tmp_path, e)) for e in bench.ENGINES}


def test_a_complete_run_with_every_check_holding_is_ok(tmp_path: Path) -> None:
    record = bench.summarize(full_phases(), archives(tmp_path), FACTS, SETTINGS)
    assert record["ok"] and record["phases_missing"] == []
    assert record["tokens_identical"] == {"a": True, "b": True}
    assert record["archives_distinct"] and record["faults_named"]
    assert record["archives"]["b"]["region_base"] - record["archives"]["a"]["region_base"] == (
        DEFAULT_SIZE
    )
    assert record["llm_init_overlap_s"] == {"native": 6.0, "save": 8.0, "load": 9.0}
    assert "tokens" not in record["phases"]["load"]["starts"]["a"]
    assert record["tokens"]["load"]["b"] == [[1, 2, 3]]


def test_tokens_that_differ_from_native_fail_the_run(tmp_path: Path) -> None:
    record = bench.summarize(
        full_phases(tokens_b_load=[[1, 2, 4]]), archives(tmp_path), FACTS, SETTINGS
    )
    assert record["tokens_identical"] == {"a": True, "b": False} and not record["ok"]


def test_archives_with_one_region_base_are_not_distinct(tmp_path: Path) -> None:
    record = bench.summarize(full_phases(), archives(tmp_path, base_b=BASE_A), FACTS, SETTINGS)
    assert not record["archives_distinct"] and not record["ok"]


def test_one_archive_in_two_places_is_not_two_archives(tmp_path: Path) -> None:
    facts = archives(tmp_path)
    same = {"a": facts["a"], "b": dict(facts["a"], region_base=BASE_B)}
    assert not bench.archives_distinct(same)
    assert not bench.archives_distinct({"a": facts["a"]})


@pytest.mark.parametrize(
    "fault",
    [
        fault_result(BASE_A, BASE_B, rc=0),  # the engine started: nothing was refused
        fault_result(BASE_A, BASE_B, kind="LayoutMismatch"),  # refused, but not for the slot
        fault_result(BASE_A, BASE_A),  # the message does not name the slot's base
        {"ok": False, "returncode": 1},  # no report: kiln said nothing
    ],
)
def test_a_fault_not_refused_by_name_fails_the_run(tmp_path: Path, fault: dict) -> None:
    faults = {"a-archive-in-slot-1": fault, "b-archive-without-slot": fault_result(BASE_B, BASE_A)}
    record = bench.summarize(full_phases(faults=faults), archives(tmp_path), FACTS, SETTINGS)
    assert not record["faults"]["a-archive-in-slot-1"]["named"]
    assert record["faults"]["b-archive-without-slot"]["named"]
    assert not record["faults_named"] and not record["ok"]


def test_phases_not_yet_run_are_listed_and_the_run_is_not_ok(tmp_path: Path) -> None:
    phases = full_phases()
    del phases["faults"], phases["load"]
    record = bench.summarize(phases, archives(tmp_path), FACTS, SETTINGS)
    assert record["phases_missing"] == ["load", "faults"]
    assert record["faults"] == {} and not record["ok"]


def test_the_record_is_named_after_device_date_and_model(tmp_path: Path) -> None:
    record = bench.summarize(full_phases(), archives(tmp_path), FACTS, SETTINGS)
    path = bench.write_record(record, tmp_path / "out")
    assert path.name == "vllm-two-slots-NVIDIA-H100-80GB-HBM3-d-qwen3-0.6b.json"
    assert json.loads(path.read_text())["commit"] == "abc"


def test_overlap_is_unknown_when_an_engine_did_not_start() -> None:
    assert bench.overlap_s({"a": engine_result([[1]]), "b": {"ok": False}}) is None
    assert bench.overlap_s({"a": engine_result([[1]]), "b": engine_result([[1]], 20.0)}) == 0.0


# --- the phases end to end, with stand-in engines -----------------------------------------------

# A stand-in for `kiln run -- <engine>`: it places its region as kiln does (kiln.region's
# slot arithmetic on KILN_REGION_SLOT), SAVE writes the region base into its archive's
# fingerprint, LOAD compares with kiln's fingerprint comparison and, on a mismatch, writes a
# failed startup report and exits 1 as `--policy strict` does.
STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from kiln.archive.fingerprint import compare_fingerprints
    from kiln.errors import FingerprintMismatch
    from kiln.lifecycle import archive_io
    from kiln.region import RegionConfig, rank_slot

    mode, archive = sys.argv[1], Path(sys.argv[2])
    base = RegionConfig.from_env(0, slot=rank_slot(0)).base
    this = {"region_base": base, "region_size": RegionConfig.from_env(0).size}
    report = archive / "startup-report.json"
    started = time.time()
    time.sleep(0.5)
    if mode == "save":
        archive.mkdir(parents=True, exist_ok=True)
        sections = {"fingerprint": archive_io.encode_json(this), "graphs": str(base).encode()}
        archive_io.write(archive_io.archive_file(archive, 0), sections)
        outcome = "saved"
    elif mode == "load":
        saved = archive_io.read_fingerprint(archive_io.archive_file(archive, 0))
        try:
            compare_fingerprints(saved, this)
        except FingerprintMismatch as err:
            error = {"stage": "device_bound", "type": type(err).__name__, "message": str(err)}
            report.write_text(json.dumps({"outcome": "failed", "error": error}))
            print(f"kiln: failed at device_bound: {err}")
            sys.exit(1)
        outcome = "restored"
    if mode != "native":
        report.write_text(json.dumps({"outcome": outcome, "error": None}))
    out = {"tokens": [[7, 8, 9]], "llm_started_at": started, "llm_ended_at": time.time()}
    Path(os.environ["KILN_BENCH_OUT"]).write_text(json.dumps(out))
    """
)


@pytest.fixture
def stand_in_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)

    def command(start: bench.Start, a: argparse.Namespace, work: Path) -> list[str]:
        mode = bench.KILN_PHASES.get(start.phase, "native")
        return [sys.executable, str(script), mode, str(bench.archive_dir(work, start.archive_of))]

    monkeypatch.setattr(bench, "command_for", command)
    monkeypatch.delenv("KILN_REGION_SLOT", raising=False)
    monkeypatch.delenv("KILN_REGION_BASE", raising=False)
    monkeypatch.delenv("KILN_REGION_SIZE", raising=False)
    return tmp_path


def run_parent(work: Path, out: Path, phases: str, *extra: str) -> int:
    a = args("--work-dir", str(work), "--out-dir", str(out), "--phases", phases, *extra)
    return bench.parent(a)


def test_two_runs_in_one_work_dir_make_one_complete_record(stand_in_engines: Path) -> None:
    work, out = stand_in_engines / "work", stand_in_engines / "out"
    assert run_parent(work, out, "native,save") == 1  # load and faults still missing
    assert run_parent(work, out, "load,faults") == 0
    (path,) = out.glob("vllm-two-slots-*.json")
    record = json.loads(path.read_text())
    assert record["ok"] and record["phases_missing"] == []
    assert record["archives"]["a"]["region_base"] == DEFAULT_BASE
    assert record["archives"]["b"]["region_base"] == DEFAULT_BASE + DEFAULT_SIZE
    for name, fault in record["faults"].items():
        assert fault["named"], name
        assert "'region_base'" in fault["message"]
    for phase in ("native", "save", "load"):
        assert record["llm_init_overlap_s"][phase] > 0  # the two engines started together


def test_a_sequential_run_does_not_overlap(stand_in_engines: Path) -> None:
    work, out = stand_in_engines / "work", stand_in_engines / "out"
    run_parent(work, out, "native", "--sequential")
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["llm_init_overlap_s"]["native"] == 0.0 and not record["concurrent"]


def test_a_stale_report_never_counts_for_a_fault_that_said_nothing(
    stand_in_engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, out = stand_in_engines / "work", stand_in_engines / "out"
    assert run_parent(work, out, "native,save,load") == 1
    # A fault start that dies before kiln says anything leaves no report of its own.
    monkeypatch.setattr(
        bench, "command_for", lambda *_: [sys.executable, "-c", "raise SystemExit(3)"]
    )
    assert run_parent(work, out, "faults") == 1
    record = json.loads(next(out.glob("*.json")).read_text())
    assert not any(f["refused"] for f in record["faults"].values())
    assert record["load_restored"] == {"a": True, "b": True}


def test_a_start_that_outlives_its_timeout_is_stopped(
    stand_in_engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        bench, "command_for", lambda *_: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    a = args("--work-dir", str(stand_in_engines), "--timeout", "1")
    doc = bench.run_phase("native", a, stand_in_engines)
    assert all(r["timed_out"] and not r["ok"] for r in doc["starts"].values())
    assert doc["wall_s"] < 30


def test_the_nccl_version_is_recorded_as_pytorch_reports_it() -> None:
    class Nccl:
        def __init__(self, version: object) -> None:
            self.version = lambda: version

    class Torch:
        def __init__(self, version: object) -> None:
            self.cuda = type("cuda", (), {"nccl": Nccl(version)})()

    assert bench.nccl_version(Torch((2, 28, 9))) == "2.28.9"
    assert bench.nccl_version(Torch(2708)) == "2708"

    def no_nccl() -> None:
        raise RuntimeError("PyTorch was built without NCCL")

    broken = Torch(None)
    broken.cuda.nccl.version = no_nccl
    assert bench.nccl_version(broken) is None


def test_an_unreadable_archive_is_recorded_and_not_distinct(tmp_path: Path) -> None:
    facts = archives(tmp_path)
    path = archive_io.archive_file(bench.archive_dir(tmp_path, "b"), 0)
    path.write_bytes(b"not an archive")
    facts["b"] = bench.archive_facts(bench.archive_dir(tmp_path, "b"))
    assert facts["b"]["error"] and not bench.archives_distinct(facts)
