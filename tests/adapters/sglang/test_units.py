"""kiln-sglang's pure parts: KV capacity encoding, the live-block guard, settings pins and
refusals, keys and outputs, command detection, and the plugin entry's policy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_sglang", reason="kiln-sglang is not installed (.ci/run installs it)")

from kiln import lifecycle
from kiln.errors import KilnError, NonPersistableGraph
from kiln.lifecycle import Driver, PinConflict
from kiln_sglang import blocks, hooks, kv, sglang_plugin
from kiln_sglang.adapter import ENV_PINS, SglangAdapter, plugin_allowed, runs_sglang
from kiln_sglang.graphs import CaptureApi, graph_key, output_fields, rebuilt_output
from kiln_sglang.settings import apply_pins, refusals, setting_pins, settings_of

from tests.adapters.sglang.stand_ins import MemoryPoolConfig, Out, ShapeKey, Tensor
from tests.lifecycle.helpers import kiln_environ

API = CaptureApi(new_graph=object, graph_context=None, is_tensor=lambda v: isinstance(v, Tensor))  # type: ignore[arg-type]


# --- KV capacity -----------------------------------------------------------------------


def test_kv_capacity_round_trips_none_fields() -> None:
    config = MemoryPoolConfig(max_total_num_tokens=1000, max_running_requests=None)
    capacity = kv.capacity_of(config)
    assert set(capacity) == set(kv.KEYS)
    assert capacity["max_running_requests"] == 0 and capacity["max_running_requests.set"] == 0
    assert kv.config_of(capacity, MemoryPoolConfig, 0.8) == MemoryPoolConfig(
        max_total_num_tokens=1000, mem_fraction_static=0.8
    )


def test_a_memory_pool_config_field_kiln_does_not_record_is_refused() -> None:
    @dataclass
    class Grown(MemoryPoolConfig):
        mamba_cache_size: int = 0

    with pytest.raises(KilnError, match="mamba_cache_size"):
        kv.capacity_of(Grown(max_total_num_tokens=1))


# --- the live-block guard -----------------------------------------------------------------


def test_live_blocks_keep_the_default_pool_s_allocated_blocks_only() -> None:
    segments = [
        {
            "segment_pool_id": (0, 0),
            "blocks": [
                {"address": 0x2000, "size": 64, "state": "active_allocated"},
                {"address": 0x2040, "size": 64, "state": "inactive"},
            ],
        },
        {
            "segment_pool_id": (1, 3),  # a graph pool: kiln owns it at LOAD
            "blocks": [{"address": 0x9000, "size": 64, "state": "active_allocated"}],
        },
    ]
    assert blocks.live_blocks(segments) == [blocks.Block(0x2000, 64)]


def test_compare_names_the_first_differing_block(tmp_path: Path) -> None:
    path = blocks.snapshot_file(tmp_path, 1)
    blocks.write(path, [blocks.Block(0x1000, 8), blocks.Block(0x3000, 8)])
    saved = blocks.read(path)
    blocks.compare(saved, [blocks.Block(0x3000, 8), blocks.Block(0x1000, 8)])
    with pytest.raises(blocks.LiveBlockMismatch, match=r"0x2000 \(16 bytes, LOAD only\)"):
        blocks.compare(saved, [*saved, blocks.Block(0x2000, 16)])


def test_a_missing_snapshot_at_load_is_an_error_not_a_pass(tmp_path: Path) -> None:
    with pytest.raises(KilnError, match="missing"):
        blocks.read(blocks.snapshot_file(tmp_path, 0))


# --- settings -------------------------------------------------------------------------------


@dataclass
class Args:  # a few ServerArgs fields, with SGLang's defaults
    model_path: str
    tp_size: int = 1
    cuda_graph_backend_decode: str | None = None
    cuda_graph_backend_prefill: str | None = None
    disable_flashinfer_autotune: bool = False
    disable_custom_all_reduce: bool = False


def _driver(tmp_path: Path) -> Driver:
    from kiln_sglang import plugin
    from kiln_test_adapter.fake_runtime import FakeRuntime

    return Driver("sglang", adapter=plugin, environ=kiln_environ(tmp_path), runtime=FakeRuntime())


def test_pins_are_applied_to_the_raw_server_args(tmp_path: Path) -> None:
    args = Args("m", tp_size=2)
    driver = _driver(tmp_path)
    driver.process_init()
    apply_pins(args, driver.resolve_pins(*settings_of(args)))
    assert args.cuda_graph_backend_decode == "full"
    assert args.cuda_graph_backend_prefill == "disabled"
    assert args.disable_flashinfer_autotune is True
    assert args.disable_custom_all_reduce is True  # TP > 1 only


def test_an_explicit_breakable_prefill_is_a_pin_conflict(tmp_path: Path) -> None:
    args = Args("m", cuda_graph_backend_prefill="breakable")
    driver = _driver(tmp_path)
    driver.process_init()
    with pytest.raises(PinConflict, match="cuda_graph_backend_prefill"):
        driver.resolve_pins(*settings_of(args))


@pytest.fixture
def main_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """SGLang's main process under `kiln run` (SAVE, strict): kiln's ServerArgs hooks."""
    for key, value in kiln_environ(tmp_path).items():
        monkeypatch.setenv(key, value)
    lifecycle.reset()
    hooks.reset()
    yield
    lifecycle.reset()
    hooks.reset()


def _resolve(args: Args) -> None:
    """What SGLang's HookRegistry runs around `ServerArgs.__post_init__`."""
    hooks.server_args_before_post_init(args)
    hooks.server_args_after_post_init(None, args)


def test_every_server_args_resolution_in_one_process_is_pinned(main_process: None) -> None:
    for _ in range(2):  # one sglang.Engine after another in a script
        args = Args("m")
        _resolve(args)
        assert args.cuda_graph_backend_decode == "full"
        assert args.cuda_graph_backend_prefill == "disabled"


def test_a_pin_conflict_does_not_stop_the_next_resolution(main_process: None) -> None:
    with pytest.raises(PinConflict, match="cuda_graph_backend_decode"):
        _resolve(Args("m", cuda_graph_backend_decode="breakable"))
    args = Args("m")
    _resolve(args)
    assert args.cuda_graph_backend_decode == "full"


def test_custom_all_reduce_is_not_pinned_on_one_gpu() -> None:
    keys = {p.key for p in setting_pins({"tp_size": 1, "disable_custom_all_reduce": False})}
    assert "disable_custom_all_reduce" not in keys


def test_refusals_name_each_feature() -> None:
    config = SimpleNamespace(
        decode=SimpleNamespace(backend="full"), prefill=SimpleNamespace(backend="breakable")
    )
    found = refusals(
        SimpleNamespace(
            speculative_algorithm="EAGLE", enable_lora=True, dp_size=2, cuda_graph_config=config
        )
    )
    assert any("speculative" in r for r in found)
    assert any("LoRA" in r for r in found)
    assert any("dp_size=2" in r for r in found)
    assert any("prefill='breakable'" in r for r in found)
    ok = SimpleNamespace(
        cuda_graph_config=SimpleNamespace(
            decode=SimpleNamespace(backend="full"), prefill=SimpleNamespace(backend="disabled")
        )
    )
    assert refusals(ok) == []


# --- keys and outputs ---------------------------------------------------------------------


def test_keys_name_size_stream_variant_hidden_mode_and_fields() -> None:
    mode = SimpleNamespace(name="NULL")
    assert (
        graph_key(ShapeKey(8), mode, ("next_token_logits", "hidden_states"))
        == "sglang/decode/full/bs=8/s=-/v=-/h=NULL/o=next_token_logits+hidden_states"
    )


def test_outputs_are_rebuilt_in_the_warm_up_s_structure() -> None:
    template = Out(Tensor(1), hidden_states=Tensor(2))
    fields = output_fields(template, API)
    assert fields == ("next_token_logits", "hidden_states")
    rebuilt = rebuilt_output(template, fields, [Tensor(10), Tensor(20)])
    assert (rebuilt.next_token_logits.ptr, rebuilt.hidden_states.ptr) == (10, 20)
    with pytest.raises(KilnError, match="1 output"):
        rebuilt_output(template, fields, [Tensor(10)])


def test_a_non_dataclass_output_is_not_persistable() -> None:
    with pytest.raises(NonPersistableGraph, match="dict"):
        output_fields({"logits": Tensor(1)}, API)


# --- launcher side ------------------------------------------------------------------------


def test_commands_that_start_sglang(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text("import sglang\nsglang.Engine(model_path='m')\n")
    assert runs_sglang(["python", "-m", "sglang.launch_server", "--model-path", "m"])
    assert runs_sglang(["/usr/bin/sglang", "serve"])
    assert runs_sglang(["python", str(script)])
    assert not runs_sglang(["python", "-m", "vllm.entrypoints.openai.api_server"])


def test_a_plugin_whitelist_without_kiln_is_refused_at_launch() -> None:
    assert plugin_allowed({}) and plugin_allowed({"SGLANG_PLUGINS": "other, kiln"})
    assert not plugin_allowed({"SGLANG_PLUGINS": "other"})
    launch = SimpleNamespace(
        command=("python", "-m", "sglang.launch_server"), environ={"SGLANG_PLUGINS": "other"}
    )
    with pytest.raises(KilnError, match="SGLANG_PLUGINS"):
        SglangAdapter().kiln_child_env(launch)  # type: ignore[arg-type]
    launch.environ = {}
    assert SglangAdapter().kiln_child_env(launch) == ENV_PINS  # type: ignore[arg-type]


# --- the plugin entry -----------------------------------------------------------------------


def test_register_is_inert_outside_kiln_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KILN_ENABLE", raising=False)
    monkeypatch.delenv("KILN_SGLANG_STAGE_TIMES", raising=False)
    called: list[Any] = []
    monkeypatch.setattr(sglang_plugin, "attach", lambda: called.append(1))
    sglang_plugin.register()
    assert called == []


def test_attach_failure_under_strict_exits_instead_of_being_swallowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # SGLang catches Exception around a plugin; SystemExit passes through it.
    for key, value in kiln_environ(tmp_path, policy="strict").items():
        monkeypatch.setenv(key, value)

    def broken() -> None:
        raise KilnError("seams moved")

    monkeypatch.setattr(sglang_plugin, "attach", broken)
    with pytest.raises(SystemExit, match="seams moved"):
        sglang_plugin.register()


def test_attach_failure_under_fallback_leaves_sglang_native(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for key, value in kiln_environ(tmp_path, policy="fallback").items():
        monkeypatch.setenv(key, value)

    def broken() -> None:
        raise ImportError("no module named sglang")

    monkeypatch.setattr(sglang_plugin, "attach", broken)
    with caplog.at_level(logging.WARNING, logger="kiln.sglang"):
        sglang_plugin.register()
    assert "starts natively" in caplog.text


def test_version_support() -> None:
    assert sglang_plugin.version_supported("0.5.16", "==0.5.16")
    assert not sglang_plugin.version_supported("0.5.17", "==0.5.16")
    assert not sglang_plugin.version_supported(None, "==0.5.16")


def test_sglang_jit_caches_are_pinned_below_kiln_s_cache_directory(tmp_path) -> None:
    launch = SimpleNamespace(
        command=("python", "-m", "sglang.launch_server"), environ={}, cache_dir=tmp_path
    )
    pins = {pin.key: pin.value for pin in SglangAdapter().kiln_child_env(launch)}  # type: ignore[arg-type]
    for name in ("SGLANG_CACHE_DIR", "SGLANG_DG_CACHE_DIR", "TVM_FFI_CACHE_DIR"):
        assert pins[name].startswith(str(tmp_path) + "/")
    assert pins["FLASHINFER_WORKSPACE_BASE"] == str(tmp_path / "flashinfer")
