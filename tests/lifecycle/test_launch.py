"""What `kiln run` plans: archive directory, mode (auto), the engine's environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kiln.archive import dump_json, write_archive
from kiln.config import load_config
from kiln.lifecycle import PinConflict
from kiln.lifecycle.archive_io import archive_file
from kiln.lifecycle.environment import inherited, with_preload
from kiln.lifecycle.errors import ArchiveMissing, PreloadMissing
from kiln.lifecycle.launch import LaunchPlan, plan_launch
from kiln.plugins import discover_adapters, make_plugin_manager, register_adapters

TOY = ("python3", "-m", "kiln_test_adapter.engine")


@pytest.fixture
def preload(tmp_path: Path) -> Path:
    path = tmp_path / "libkiln_preload.so"
    path.write_bytes(b"\x7fELF")
    return path


def plan(tmp_path: Path, preload: Path, command=TOY, environ=None, **overrides) -> LaunchPlan:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin", **(environ or {})}
    config = load_config(
        environ={**environ, "KILN_ARCHIVE_ROOT": str(tmp_path / "root")},
        overrides=overrides,
        cwd=tmp_path,
    )
    pm = make_plugin_manager()
    register_adapters(pm, discover_adapters(), engine=None)
    return plan_launch(tuple(command), config, environ, pm, preload, 1000.0)


def test_save_sets_the_interposer_and_the_kiln_environment(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    result = plan(tmp_path, preload, environ={"LD_PRELOAD": "/opt/other.so"}, mode="save")
    env = result.environment
    assert env["LD_PRELOAD"] == f"{preload}:/opt/other.so"
    assert (env["KILN_ENABLE"], env["KILN_MODE"], env["KILN_POLICY"]) == ("1", "save", "strict")
    assert env["KILN_ARCHIVE"] == str(result.archive_dir)
    assert env["KILN_LAUNCH_TIME"] == "1000.0"
    assert json.loads(env["KILN_LAUNCH_FINGERPRINT"])["toy.version"] == "1.4.0"
    assert env["TOY_DETERMINISTIC"] == "1"  # the adapter's environment pin
    assert "KILN_AUTO" not in env
    assert env["PATH"] == "/usr/bin"


def test_the_default_archive_dir_changes_with_the_command(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    first = plan(tmp_path, preload, command=[*TOY, "--model", "a"])
    second = plan(tmp_path, preload, command=[*TOY, "--model", "b"])
    assert first.archive_dir != second.archive_dir
    assert first.archive_dir.parent == tmp_path / "root"
    assert plan(tmp_path, preload, command=[*TOY, "--model", "a"]).archive_dir == first.archive_dir


def test_auto_saves_when_there_is_no_archive(tmp_path: Path, preload: Path, toy_adapter) -> None:
    result = plan(tmp_path, preload)
    assert (result.mode, result.environment["KILN_AUTO"]) == ("save", "1")
    assert "no archive" in result.reason


def write_fingerprinted(directory: Path, fields: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_archive(archive_file(directory), {"fingerprint": dump_json(fields)})


def test_auto_loads_a_matching_archive(tmp_path: Path, preload: Path, toy_adapter) -> None:
    first = plan(tmp_path, preload)
    write_fingerprinted(first.archive_dir, {**first.fingerprint, "gpu_name": "H100"})
    second = plan(tmp_path, preload)
    assert (second.mode, second.environment["KILN_MODE"]) == ("load", "load")
    assert "matches" in second.reason


def test_auto_replaces_a_stale_archive_naming_the_field(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    first = plan(tmp_path, preload)
    write_fingerprinted(first.archive_dir, {**first.fingerprint, "toy.version": "1.3.0"})
    second = plan(tmp_path, preload)
    assert second.mode == "save"
    assert "'toy.version'" in second.reason and "stale" in second.reason


def test_auto_replaces_an_unreadable_archive(tmp_path: Path, preload: Path, toy_adapter) -> None:
    first = plan(tmp_path, preload)
    first.archive_dir.mkdir(parents=True)
    archive_file(first.archive_dir).write_bytes(b"not an archive")
    second = plan(tmp_path, preload)
    assert second.mode == "save" and "unusable" in second.reason


def test_load_without_archive_is_an_error_under_strict(tmp_path: Path, preload: Path) -> None:
    with pytest.raises(ArchiveMissing, match="no archive at"):
        plan(tmp_path, preload, mode="load")


def test_load_without_archive_starts_natively_under_fallback(tmp_path: Path, preload: Path) -> None:
    result = plan(tmp_path, preload, environ={"KILN_MODE": "save"}, mode="load", policy="fallback")
    assert result.mode == "native"
    env = result.environment
    assert (env["KILN_ENABLE"], "KILN_MODE" in env, "LD_PRELOAD" in env) == ("0", False, False)
    assert "no archive at" in env["KILN_FALLBACK_REASON"]


def test_a_missing_interposer_is_an_error_under_strict(tmp_path: Path) -> None:
    with pytest.raises(PreloadMissing, match="libkiln_preload.so"):
        plan(tmp_path, tmp_path / "libkiln_preload.so")


def test_a_missing_interposer_starts_natively_under_fallback(tmp_path: Path) -> None:
    result = plan(tmp_path, tmp_path / "libkiln_preload.so", policy="fallback")
    assert result.mode == "native" and "not found" in result.reason


def test_an_environment_pin_conflicting_with_the_user_is_an_error(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    with pytest.raises(PinConflict, match="environment variable 'TOY_DETERMINISTIC'"):
        plan(tmp_path, preload, environ={"TOY_DETERMINISTIC": "0"})


def test_stale_kiln_variables_from_the_shell_do_not_leak(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    result = plan(
        tmp_path, preload, environ={"KILN_AUTO": "1", "KILN_FALLBACK_REASON": "x"}, mode="save"
    )
    assert "KILN_AUTO" not in result.environment
    assert "KILN_FALLBACK_REASON" not in result.environment
    assert result.changes()["KILN_AUTO"] is None  # shown as removed


def test_the_plan_has_no_command_without_one(tmp_path: Path, preload: Path) -> None:
    from kiln.lifecycle import UsageError

    with pytest.raises(UsageError, match="no engine command"):
        plan(tmp_path, preload, command=())


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "/k.so"),
        ("", "/k.so"),
        ("/a.so", "/k.so:/a.so"),
        ("/a.so /k.so:/b.so", "/k.so:/a.so:/b.so"),
        ("/k.so", "/k.so"),
    ],
)
def test_the_interposer_is_prepended_once(existing: str | None, expected: str) -> None:
    assert with_preload(existing, Path("/k.so")) == expected


def test_inherited_forwards_kiln_variables_and_pinned_ones_only() -> None:
    environ = {
        "KILN_MODE": "load",
        "LD_PRELOAD": "/k.so",
        "KILN_ENV_PINS": "TOY_DETERMINISTIC",
        "TOY_DETERMINISTIC": "1",
        "HOME": "/root",
    }
    assert set(inherited(environ)) == {
        "KILN_MODE",
        "LD_PRELOAD",
        "KILN_ENV_PINS",
        "TOY_DETERMINISTIC",
    }


def test_every_engine_sees_the_communication_pins(tmp_path: Path, preload: Path, toy_adapter):
    env = plan(tmp_path, preload, mode="save").environment
    assert (env["NCCL_RUNTIME_CONNECT"], env["NCCL_CUMEM_ENABLE"]) == ("0", "1")
    assert env["NCCL_GRAPH_REGISTER"] == env["NCCL_LOCAL_REGISTER"] == "0"
    assert env["NVSHMEM_MAX_MEMORY_PER_GPU"] == "32G"


def test_nccl_lazy_connection_set_by_the_user_is_refused_by_name(
    tmp_path: Path, preload: Path, toy_adapter
) -> None:
    # A channel first used in SAVE's capture would be unconnected at LOAD: a silent hang.
    with pytest.raises(PinConflict, match="environment variable 'NCCL_RUNTIME_CONNECT'"):
        plan(tmp_path, preload, environ={"NCCL_RUNTIME_CONNECT": "1"})


def test_each_launch_has_its_own_job_id(tmp_path: Path, preload: Path, toy_adapter) -> None:
    # Every process of one `kiln run` sees one id, which every rank's archive records.
    first = plan(tmp_path, preload, mode="save").environment["KILN_JOB"]
    second = plan(tmp_path, preload, mode="save").environment["KILN_JOB"]
    assert len(first) == 32 and first != second


def _toy_version(monkeypatch, version: str) -> None:
    import kiln.plugins

    monkeypatch.setattr(kiln.plugins, "_engine_version", lambda spec: version)


def test_an_engine_outside_its_adapters_versions_is_refused_under_strict(
    tmp_path: Path, preload: Path, toy_adapter, monkeypatch
) -> None:
    # Regression: the adapter's supported engine versions were shown by `kiln adapters` but
    # never enforced, so an engine release that moved a seam ran kiln's stale patches.
    from kiln.lifecycle.errors import UnsupportedEngine

    _toy_version(monkeypatch, "99.0")
    with pytest.raises(UnsupportedEngine, match="99.0 is installed"):
        plan(tmp_path, preload, mode="save")


def test_an_engine_outside_its_adapters_versions_starts_natively_under_fallback(
    tmp_path: Path, preload: Path, toy_adapter, monkeypatch
) -> None:
    _toy_version(monkeypatch, "99.0")
    result = plan(tmp_path, preload, mode="save", policy="fallback")
    assert result.mode == "native" and "99.0 is installed" in result.reason
