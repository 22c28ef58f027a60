"""Stand-ins for the SGLang 0.5.16 objects kiln-sglang hooks, wired the way SGLang's
HookRegistry wires kiln's hooks (AROUND: the original first; AFTER: the result first), and
a CPU runtime whose restored graphs carry outputs."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kiln_sglang import hooks
from kiln_sglang.graphs import CaptureApi
from kiln_test_adapter.fake_runtime import FakeRuntime


class Tensor:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def data_ptr(self) -> int:
        return self.ptr


@dataclass
class Out:  # LogitsProcessorOutput, as far as kiln reads it
    next_token_logits: Any
    hidden_states: Any = None
    customized_info: Any = None


@dataclass(frozen=True)
class ShapeKey:
    size: int
    stream_idx: int | None = None
    variant_label: str | None = None


@dataclass
class MemoryPoolConfig:
    max_total_num_tokens: int
    max_running_requests: int | None = None
    full_max_total_num_tokens: int | None = None
    swa_max_total_num_tokens: int | None = None
    c4_max_total_num_tokens: int = 0
    c128_max_total_num_tokens: int = 0
    c4_state_pool_size: int = 0
    c128_state_pool_size: int = 0
    mem_fraction_static: float | None = None


class FakeGraph:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def replay(self) -> None:
        self.log.append("replay")


@dataclass
class Restored:
    name: str
    outputs: list[Any]
    inputs: list[Any] = field(default_factory=list)

    def replay(self, stream: Any = None) -> None:
        pass


class OutputRuntime(FakeRuntime):
    """FakeRuntime whose restored graphs hold the outputs kiln-sglang rebuilds."""

    def restore(self, key: str) -> Any:  # type: ignore[override]
        super().restore(key)
        return Restored(key, [Tensor(0xA000)])


def capture_api(log: list[str]) -> CaptureApi:
    @contextlib.contextmanager
    def graph_context(backend: Any, graph: Any) -> Iterator[None]:
        log.append("graph-capture")
        yield

    return CaptureApi(
        new_graph=lambda: FakeGraph(log),
        graph_context=graph_context,
        is_tensor=lambda v: isinstance(v, Tensor),
    )


def around(hook: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return hook(original, *args, **kwargs)

    return wrapper


def after(hook: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        changed = hook(result, *args, **kwargs)
        return result if changed is None else changed

    return wrapper


class FullCudaGraphBackend:
    def __init__(self, log: list[str], output: Callable[[int], Any]) -> None:
        self.log = log
        self._graphs: dict[Any, Any] = {}
        self._outputs: dict[Any, Any] = {}
        self._pool = "pool"
        self._capture_stream = None
        self._memory_saver_adapter = None
        self._device_module = SimpleNamespace(synchronize=lambda: None)
        self._tp_group = SimpleNamespace(barrier=lambda: None)
        self.output = output

    def capture_one(
        self,
        shape_key: Any,
        forward_fn: Callable[[], Any],
        dummies: Any = None,
        post_warmup_hook: Callable[[], None] | None = None,
    ) -> None:
        self.log.append(f"native capture_one bs={shape_key.size}")
        for _ in range(2):
            forward_fn()
        self._graphs[shape_key] = FakeGraph(self.log)
        self._outputs[shape_key] = forward_fn()

    def cleanup(self) -> None:
        self._graphs.clear()
        self._outputs.clear()


class BaseRunner:
    def __init__(self, model_runner: Any) -> None:
        self.model_runner = model_runner

    def warmup(self) -> None:
        if getattr(self.model_runner, "_kernel_warmed_up", False):
            return
        self.model_runner._kernel_warmed_up = True
        self.model_runner.log.append("kernel warmup")


class DecodeCudaGraphRunner(BaseRunner):
    def __init__(self, model_runner: Any, sizes: list[int], output: Callable[[int], Any]) -> None:
        super().__init__(model_runner)
        self.log = model_runner.log
        self.capture_bs = sizes
        self.capture_hidden_mode = None
        self.backend = FullCudaGraphBackend(self.log, output)
        self.output = output

    def _make_graph_key(
        self, size: int, stream_idx: int | None = None, variant_label: str | None = None
    ) -> ShapeKey:
        return ShapeKey(size, stream_idx, variant_label)

    def capture(self) -> None:
        self.warmup()
        for bs in reversed(self.capture_bs):
            self.log.append(f"prepare bs={bs}")

            def forward(bs: int = bs) -> Any:
                self.log.append(f"forward bs={bs}")
                return self.output(bs)

            self.backend.capture_one(self._make_graph_key(bs), forward, None, None)


class KVCacheConfigurator:
    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.is_draft_worker = False
        self.server_args = runner.server_args
        self.mambaish_config = None

    def _resolve_memory_pool_config(self, pre_model_load_memory: int) -> MemoryPoolConfig:
        self.runner.log.append("sample free memory")
        return MemoryPoolConfig(
            max_total_num_tokens=123456, max_running_requests=2048, mem_fraction_static=0.8
        )


class ModelRunner:
    def __init__(self, server_args: Any, gpu_id: int, log: list[str]) -> None:
        self.server_args = server_args
        self.gpu_id = gpu_id
        self.is_draft_worker = False
        self.log = log
        self.model_config = SimpleNamespace(
            hf_config=SimpleNamespace(to_dict=lambda: {"hidden_size": 64}),
            dtype="bfloat16",
            context_len=4096,
        )
        self.init_torch_distributed()

    def init_torch_distributed(self) -> None:
        self.log.append("set device")

    def load_model(self) -> None:
        self.log.append("load weights")


@dataclass
class Engine:
    """One scheduler process: the classes with kiln's hooks on them, and what it saw."""

    sizes: list[int]
    log: list[str] = field(default_factory=list)
    output: Callable[[int], Any] = lambda bs: Out(Tensor(0xA000))
    scheduler: Any = None

    def classes(self) -> Any:
        engine = self

        class Runner(ModelRunner):
            init_torch_distributed = around(
                hooks.init_torch_distributed, ModelRunner.init_torch_distributed
            )
            load_model = around(hooks.load_model, ModelRunner.load_model)

        class Configurator(KVCacheConfigurator):
            _resolve_memory_pool_config = around(
                hooks.resolve_memory_pool_config, KVCacheConfigurator._resolve_memory_pool_config
            )

        class Decode(DecodeCudaGraphRunner):
            capture = around(hooks.decode_capture, DecodeCudaGraphRunner.capture)
            warmup = around(hooks.base_runner_warmup, BaseRunner.warmup)

        class Eager(BaseRunner):
            warmup = around(hooks.base_runner_warmup, BaseRunner.warmup)

        FullCudaGraphBackend.capture_one = around(  # type: ignore[method-assign]
            hooks.capture_one, _NATIVE_CAPTURE_ONE
        )

        class Scheduler:
            def __init__(
                self,
                server_args: Any,
                port_args: Any,
                gpu_id: int,
                tp_rank: int,
                moe_ep_rank: int,
                pp_rank: int,
                attn_cp_rank: int,
                moe_dp_rank: int,
                dp_rank: int | None,
            ) -> None:
                self.runner = Runner(server_args, gpu_id, engine.log)
                self.runner.load_model()
                self.config = Configurator(self.runner)._resolve_memory_pool_config(1 << 30)
                self.init_all_cuda_graphs()

            def init_all_cuda_graphs(self) -> None:
                Eager(self.runner).warmup()
                self.decode = Decode(self.runner, engine.sizes, engine.output)
                self.decode.capture()

        Scheduler.__init__ = around(hooks.scheduler_init, Scheduler.__init__)  # type: ignore[method-assign]
        Scheduler.init_all_cuda_graphs = after(  # type: ignore[method-assign]
            hooks.init_all_cuda_graphs, Scheduler.init_all_cuda_graphs
        )
        return Scheduler

    def start(self, server_args: Any) -> Any:
        self.scheduler = self.classes()(server_args, None, 0, 0, 0, 0, 0, 0, None)
        return self.scheduler


_NATIVE_CAPTURE_ONE = FullCudaGraphBackend.capture_one


def server_args(**fields: Any) -> Any:
    base = {
        "tp_size": 1,
        "pp_size": 1,
        "dp_size": 1,
        "mem_fraction_static": 0.8,
        "model_path": "dummy/qwen3",
        "cuda_graph_config": SimpleNamespace(
            decode=SimpleNamespace(backend="full", bs=[1, 2, 4]),
            prefill=SimpleNamespace(backend="disabled", bs=None),
        ),
    }
    return SimpleNamespace(**{**base, **fields})
