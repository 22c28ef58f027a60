"""LOAD's first-request warmup (kiln_vllm.warmups), against stand-ins for vLLM's model runner,
its mixed prefill+decode helper and the worker's steps: what runs, with which sizes, in which
mode, and when it is off."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln.errors import KilnError
from kiln_vllm.seams import SEAMS
from kiln_vllm.warmups import (
    ENV,
    FIRST_REQUEST_TOKENS,
    REQ_ID_PREFIX,
    first_request_tokens,
    first_request_warmup_requested,
    then_warm_first_requests,
    warm_first_request_kernels,
)


def runner(max_capture_size: int | None) -> SimpleNamespace:
    """vLLM's V2 GPUModelRunner as the warmup reads it."""
    compilation = SimpleNamespace(max_cudagraph_capture_size=max_capture_size)
    return SimpleNamespace(vllm_config=SimpleNamespace(compilation_config=compilation))


def execute_model(scheduler_output: Any) -> None:  # the worker's steps, never called here
    raise AssertionError("the stand-in helper does not run steps")


def sample_tokens(grammar_output: Any) -> None:
    raise AssertionError("the stand-in helper does not run steps")


@dataclass
class MixedWarmup:
    """vllm.v1.worker.gpu.warmup.run_mixed_prefill_decode_warmup: records its calls."""

    runs: bool = True
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def __call__(
        self,
        model_runner: Any,
        worker_execute_model: Any,
        worker_sample_tokens: Any,
        num_tokens: int,
        *,
        mixed_step_context: Any = None,
        req_id_prefix: str = "_v2_mixed_warmup",
    ) -> bool:
        self.calls.append(
            (model_runner, worker_execute_model, worker_sample_tokens, num_tokens, req_id_prefix)
        )
        return self.runs


def test_one_mixed_step_through_the_worker_s_own_steps() -> None:
    r, helper = runner(512), MixedWarmup()
    got = warm_first_request_kernels(
        r, execute_model, sample_tokens, mixed_warmup=helper, environ={}
    )
    assert got == FIRST_REQUEST_TOKENS
    assert helper.calls == [(r, execute_model, sample_tokens, FIRST_REQUEST_TOKENS, REQ_ID_PREFIX)]


def test_the_mixed_step_stays_within_the_capture_sizes() -> None:
    # Above the largest capture size vLLM asks FlashAttention for no splits: the kernels
    # the first small requests use would stay cold.
    assert first_request_tokens(512) == FIRST_REQUEST_TOKENS
    assert first_request_tokens(32) == 32
    assert first_request_tokens(3) == 3
    # The helper needs a decode and a 2-token prefill; no graphs, no warmup.
    for size in (None, 0, 1, 2):
        assert first_request_tokens(size) is None
    helper = MixedWarmup()
    assert (
        warm_first_request_kernels(
            runner(2), execute_model, sample_tokens, mixed_warmup=helper, environ={}
        )
        is None
    )
    assert helper.calls == []


def test_a_helper_that_declines_reports_nothing_warmed() -> None:
    # vLLM's helper returns False for pooling models and when the KV cache is too small.
    helper = MixedWarmup(runs=False)
    got = warm_first_request_kernels(
        runner(512), execute_model, sample_tokens, mixed_warmup=helper, environ={}
    )
    assert got is None
    assert len(helper.calls) == 1


def test_turned_off_by_name_and_other_values_refused() -> None:
    helper = MixedWarmup()
    off = {ENV: "0"}
    assert (
        warm_first_request_kernels(
            runner(512), execute_model, sample_tokens, mixed_warmup=helper, environ=off
        )
        is None
    )
    assert helper.calls == []
    assert first_request_warmup_requested({}) is True
    assert first_request_warmup_requested({ENV: "1"}) is True
    with pytest.raises(KilnError, match=ENV):
        first_request_warmup_requested({ENV: "yes"})


def test_at_load_it_runs_after_vllm_s_warmup_kernels_with_the_same_arguments() -> None:
    log: list[Any] = []

    def warmup_kernels(model_runner: Any, execute: Any, sample: Any) -> str:
        log.append(("warmup_kernels", model_runner, execute, sample))
        return "vllm's result"

    def warm(model_runner: Any, execute: Any, sample: Any) -> None:
        log.append(("first requests", model_runner, execute, sample))

    r = runner(512)
    run = then_warm_first_requests(warmup_kernels, under_kiln=lambda: True, warm=warm)
    assert run(r, execute_model, sample_tokens) == "vllm's result"
    assert log == [
        ("warmup_kernels", r, execute_model, sample_tokens),
        ("first requests", r, execute_model, sample_tokens),
    ]


def test_not_in_a_native_start() -> None:
    # A native start ran every graph's warmup: the kernels are loaded already.
    log: list[str] = []
    run = then_warm_first_requests(
        lambda *a: log.append("warmup_kernels"),
        under_kiln=lambda: False,
        warm=lambda *a: log.append("first requests"),
    )
    run(runner(512), execute_model, sample_tokens)
    assert log == ["warmup_kernels"]


def test_a_failing_warmup_kernels_skips_the_first_request_warmup() -> None:
    log: list[str] = []

    def warmup_kernels(*args: Any) -> None:
        raise RuntimeError("vLLM's warmup failed")

    run = then_warm_first_requests(
        warmup_kernels, under_kiln=lambda: True, warm=lambda *a: log.append("first requests")
    )
    with pytest.raises(RuntimeError, match="vLLM's warmup failed"):
        run(runner(512), execute_model, sample_tokens)
    assert log == []


def test_the_vllm_helper_and_the_capture_limit_are_in_the_seam_contract() -> None:
    names = {s.name for s in SEAMS}
    assert "vllm.v1.worker.gpu.warmup.run_mixed_prefill_decode_warmup" in names
    assert "vllm.config.compilation.CompilationConfig.max_cudagraph_capture_size" in names
    helper = next(s for s in SEAMS if s.qualname == "run_mixed_prefill_decode_warmup")
    assert helper.params is not None and "req_id_prefix" in helper.params
