"""The vLLM general plugin's choice of worker class, and the fingerprint fields a vLLM
config contributes (both without vLLM installed)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.fingerprint import config_fingerprint
from kiln_vllm.vllm_plugin import WORKER_CLS, choose_worker_cls, register


@pytest.mark.parametrize("current", ["auto", WORKER_CLS])
def test_kiln_selects_its_worker(current: str) -> None:
    assert choose_worker_cls(current) == WORKER_CLS


def test_a_users_own_worker_class_is_refused_by_name() -> None:
    with pytest.raises(KilnError, match="my.Worker"):
        choose_worker_cls("my.Worker")


def test_the_plugin_does_nothing_outside_kiln_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without KILN_ENABLE it must not even import vLLM (not installed here).
    monkeypatch.delenv("KILN_ENABLE", raising=False)
    register()


def vllm_config(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "model": "m",
        "dtype": "torch.bfloat16",
        "max_model_len": 2048,
        "seed": 0,
        "enforce_eager": False,
    }
    fields.update(changes)
    return SimpleNamespace(
        model_config=SimpleNamespace(**fields),
        cache_config=SimpleNamespace(
            gpu_memory_utilization=0.9,
            kv_cache_memory_bytes=None,
            cache_dtype="auto",
            block_size=None,
        ),
        scheduler_config=SimpleNamespace(max_num_seqs=1024, max_num_batched_tokens=16384),
        parallel_config=SimpleNamespace(
            tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_size=1, world_size=1
        ),
        compilation_config=SimpleNamespace(
            cudagraph_mode=SimpleNamespace(name="FULL_AND_PIECEWISE"),
            cudagraph_capture_sizes=[1, 2, 4],
            mode=SimpleNamespace(name="VLLM_COMPILE"),
        ),
        compute_hash=lambda: "abc123",
        use_v2_model_runner=True,
    )


def test_fingerprint_fields_are_json_scalars_and_name_the_graph_set() -> None:
    fields = config_fingerprint(vllm_config(), vllm_version="0.24.0")
    assert all(isinstance(v, (str, int, float, bool)) for v in fields.values())
    assert fields["vllm.cudagraph_mode"] == "FULL_AND_PIECEWISE"
    assert json.loads(str(fields["vllm.capture_sizes"])) == [1, 2, 4]
    assert fields["vllm.block_size"] == 0  # not chosen yet when the GPU is bound


def test_fingerprint_changes_with_max_model_len() -> None:
    a = config_fingerprint(vllm_config(), vllm_version="0.24.0")
    b = config_fingerprint(vllm_config(max_model_len=4096), vllm_version="0.24.0")
    assert {k for k in a if a[k] != b[k]} == {"vllm.max_model_len"}


@pytest.mark.parametrize("mode", ["save", "load"])
def test_warmup_kernels_runs_suspended_in_both_modes(mode: str) -> None:
    # Regression: skipped at LOAD, vLLM's Triton warmup moved to the first request (1.7x
    # native's first-request latency on qwen3-0.6b).
    from kiln.lifecycle import WarmupAction, WarmupPhase
    from kiln_vllm.adapter import WARMUP_KERNELS_PHASE, VllmAdapter

    ctx: Any = SimpleNamespace(mode=SimpleNamespace(value=mode))
    adapter = VllmAdapter()
    phase = WarmupPhase(WARMUP_KERNELS_PHASE, skippable_on_load=True)
    assert adapter.kiln_warmup_policy(ctx, phase) is WarmupAction.RUN_SUSPENDED
    assert adapter.kiln_warmup_policy(ctx, WarmupPhase("other")) is None
