"""The warmup of the eager kernels that small requests launch (first requests after LOAD).

A native start runs the FULL graphs' warmups before it is ready: eager decode forwards at
every captured size, with attention. With CUDA's lazy loading they load, among others,
FlashAttention 3's split-KV kernel and its combine kernel, which vLLM asks for whenever a
batch fits the capture sizes (`FlashAttentionMetadataBuilder.build` passes
`max_num_splits` only then). LOAD restores those graphs with kiln's own copies of their
kernels and warms none of them up (its first PIECEWISE warmup runs without attention
metadata). Its only eager forwards with attention are vLLM's `warmup_kernels` batches: with
vLLM's defaults on an 80 GB GPU (1024 requests of 2 tokens, then 1024 decodes) larger than
the capture sizes, so without splits, and never with a query longer than 2 tokens. The
first small request after LOAD then loads the split-KV path (and the LM head and sampler
for a single request) itself.

The warmup here is vLLM's own mixed prefill+decode step
(`vllm.v1.worker.gpu.warmup.run_mixed_prefill_decode_warmup`), run through the worker's
`execute_model` and `sample_tokens` like a request: a 2-token prefill, then one decode with
a prefill of `FIRST_REQUEST_TOKENS - 1` tokens. Both fit the capture sizes, so their pieces
replay restored graphs and their attention takes the split-KV path; the two query lengths
give FlashAttention 3 both of its tile shapes (at head size 128 it picks one or two MMA
warpgroups from the longest query times the query heads per KV head, against 64).

SAVE runs the same warmup at the same point: whatever it compiles (Triton specialisations
for a single request's shapes, for instance) lands in SAVE's kiln-owned caches before the
archive is written, so LOAD finds it there instead of compiling it.

`KILN_VLLM_FIRST_REQUEST_WARMUP=0` turns it off (to measure what it buys).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kiln.env_settings import switch_setting

T = TypeVar("T")

ENV = "KILN_VLLM_FIRST_REQUEST_WARMUP"
# The mixed step's size: its prefill (this minus the decode's one token) is longer than 64
# query rows for any number of query heads per KV head, so it takes FlashAttention 3's
# two-warpgroup tile; the helper's first step (a 2-token prefill) takes the one-warpgroup
# tile. Capped by the largest capture size, above which vLLM asks for no splits.
FIRST_REQUEST_TOKENS = 72
REQ_ID_PREFIX = "_kiln_first_request_warmup"
_MIN_TOKENS = 3  # run_mixed_prefill_decode_warmup needs a decode and a 2-token prefill

MixedWarmup = Callable[..., bool]  # run_mixed_prefill_decode_warmup's signature
WorkerStep = Callable[[Any], Any]  # the worker's execute_model or sample_tokens


def first_request_warmup_requested(environ: Mapping[str, str] | None = None) -> bool:
    """On unless $KILN_VLLM_FIRST_REQUEST_WARMUP is 0; any value but 0 and 1 is refused."""
    return switch_setting(ENV, "warm up small requests at LOAD", "do not", environ)


def first_request_tokens(max_capture_size: int | None) -> int | None:
    """The mixed step's token count, or None when no batch both fits the capture sizes and
    is large enough for the helper (graphs off, or captured sizes below 3 tokens)."""
    if not max_capture_size or max_capture_size < _MIN_TOKENS:
        return None
    return min(FIRST_REQUEST_TOKENS, max_capture_size)


def _vllm_mixed_warmup() -> MixedWarmup:
    from vllm.v1.worker.gpu.warmup import run_mixed_prefill_decode_warmup

    return run_mixed_prefill_decode_warmup  # type: ignore[no-any-return]


def warm_first_request_kernels(
    model_runner: Any,
    execute_model: WorkerStep,
    sample_tokens: WorkerStep,
    *,
    mixed_warmup: MixedWarmup | None = None,
    environ: Mapping[str, str] | None = None,
) -> int | None:
    """Run one small prefill and one small mixed step through the worker, as requests do.

    Returns the mixed step's token count, or None when nothing ran (turned off, no batch
    fits the capture sizes, or vLLM's helper declined: a pooling model, too few KV blocks).
    """
    if not first_request_warmup_requested(environ):
        return None
    max_capture = model_runner.vllm_config.compilation_config.max_cudagraph_capture_size
    tokens = first_request_tokens(max_capture)
    if tokens is None:
        return None
    run = _vllm_mixed_warmup() if mixed_warmup is None else mixed_warmup
    ran = run(model_runner, execute_model, sample_tokens, tokens, req_id_prefix=REQ_ID_PREFIX)
    return tokens if ran else None


def then_warm_first_requests(
    warmup_kernels: Callable[[Any, WorkerStep, WorkerStep], T],
    under_kiln: Callable[[], bool],
    warm: Callable[[Any, WorkerStep, WorkerStep], object] = warm_first_request_kernels,
) -> Callable[[Any, WorkerStep, WorkerStep], T]:
    """vLLM's `warmup_kernels`, then, at SAVE and at LOAD, `warm` with the same runner and
    worker steps. vLLM calls it where it calls `warmup_kernels`: after every graph, before it
    resets the seed and starts watching for JIT compiles, so the warmup's kernels load (or
    compile) there and not in the first request. SAVE runs it too, so that every kernel LOAD's
    warmup compiles was compiled into SAVE's kiln-owned caches before the archive was
    written, and comes from the archive at LOAD (a fresh machine included)."""

    def run(model_runner: Any, execute_model: WorkerStep, sample_tokens: WorkerStep) -> T:
        result = warmup_kernels(model_runner, execute_model, sample_tokens)
        if under_kiln():
            warm(model_runner, execute_model, sample_tokens)
        return result

    return run
