"""A kiln-authored stand-in for the TensorRT-LLM modules kiln-trtllm patches, written as a
source tree: the import hook patches it as it is imported (tests/adapters/trtllm), and the
seam contract's checker reads it (test_seam_contract). It imitates the shape of TensorRT-LLM
1.3.0rc2x's PyTorch backend as kiln relies on it (docs/trtllm/adapter.md): the estimation
executor built, measured and torn down before the final one; warm-ups, then decode graphs
largest batch first, each through `CUDAGraphRunner.capture`; the worker started last. It is
not TensorRT-LLM's code.

Events go to `tensorrt_llm._log.EVENTS`, through `PROBE` when a test sets one."""

from __future__ import annotations

import textwrap
from pathlib import Path

# `CUDAGraphRunner` as kiln relies on it (the statements the seam contract pins), shared by
# every stand-in tree; `{make_graph}` captures one graph into `graph` and `output`.
RUNNER_CLASS = """
class CUDAGraphRunner:
    WARMUP_STEPS = 1

    def __init__(self, config):
        self.config = config
        self.graphs = {{}}
        self.graph_outputs = {{}}
        self.graph_metadata = {{}}
        self.memory_pool = None
        self._capture_allowed = False
        self.is_warmup_only = False

    @contextlib.contextmanager
    def allow_capture(self):
        self._capture_allowed = True
        try:
            yield
        finally:
            self._capture_allowed = False

    def capture(self, key, forward_fn, initial_inputs, enable_spec_decode=False,
                postprocess_fn=None):
        key = KeyType(*key)
        capture_inputs = initial_inputs.copy()
        attn_metadata = capture_inputs['attn_metadata']
        self.graph_metadata[key] = {{
            'attn_metadata': attn_metadata,
            'spec_metadata': initial_inputs.get('spec_metadata', None),
        }}
        output = None
        for _ in range(self.WARMUP_STEPS):
            output = forward_fn(capture_inputs)
        if self.is_warmup_only:
            return output
{make_graph}        self.graphs[key] = graph
        graph_output = make_weak_ref(output)
        self.graph_outputs[key] = graph_output
        self.memory_pool = graph.pool()
        return graph_output

    def replay(self, key, current_inputs):
        key = KeyType(*key)
        stored_meta = self.graph_metadata[key]
        assert current_inputs['attn_metadata'] is stored_meta['attn_metadata']
        self.graphs[key].replay()
        output_ref = self.graph_outputs[key]
        return output_ref
"""

_RUNNER_HEADER = """
import contextlib
from typing import NamedTuple

from tensorrt_llm._log import log


def make_weak_ref(x):
    return x


class KeyType(NamedTuple):
    batch_size: int
    draft_len: int
    is_first_draft: bool
    short_seq_len_mode: bool = False


class NativeGraph:
    def __init__(self, bs):
        self.bs = bs

    def replay(self):
        log(f"replay native bs={self.bs}")

    def pool(self):
        return f"pool-{self.bs}"


"""

_NATIVE_GRAPH = """        graph = NativeGraph(key.batch_size)
        log(f"graph-capture bs={key.batch_size} pool={self.memory_pool}")
        output = forward_fn(capture_inputs)
"""

FILES = {
    "tensorrt_llm/__init__.py": "",
    "tensorrt_llm/_log.py": """
        EVENTS = []
        PROBE = None


        def log(event):
            EVENTS.append(event if PROBE is None else PROBE(event))


        class Tensor:
            def __init__(self, ptr):
                self.ptr = ptr

            def data_ptr(self):
                return self.ptr
    """,
    "tensorrt_llm/_torch/__init__.py": "",
    "tensorrt_llm/_torch/pyexecutor/__init__.py": "",
    "tensorrt_llm/_torch/pyexecutor/cuda_graph_runner.py": _RUNNER_HEADER
    + RUNNER_CLASS.format(make_graph=_NATIVE_GRAPH),
    "tensorrt_llm/_torch/pyexecutor/model_engine.py": """
        from tensorrt_llm._log import Tensor, log

        from .cuda_graph_runner import CUDAGraphRunner, KeyType


        class PyTorchModelEngine:
            def __init__(self, *, sizes, is_draft_model=False):
                log("load weights")
                self.is_draft_model = is_draft_model
                self._cuda_graph_batch_sizes = list(sizes)
                self.cuda_graph_runner = CUDAGraphRunner(None)
                self.attn_metadata = object()

            def forward(self, bs, resource_manager):
                inputs = {'attn_metadata': self.attn_metadata, 'input_ids': bs}

                def forward_fn(capture_inputs):
                    log(f"forward bs={bs}")
                    return {'logits': Tensor(0x1000 + bs), 'aux': None}

                runner = self.cuda_graph_runner
                key = KeyType(bs, 0, False)
                if runner._capture_allowed and key not in runner.graph_outputs:
                    out = runner.capture(key, forward_fn, inputs)
                    if runner.is_warmup_only:
                        return out
                if key in runner.graphs:
                    return runner.replay(key, inputs)
                return forward_fn(inputs)

            def warmup(self, resource_manager):
                can_run_general_warmup = True
                self._run_attention_warmup(resource_manager, can_run_general_warmup)
                self._general_warmup(resource_manager, [(1, 0)])
                self._run_autotuner_warmup(resource_manager)
                with self.cuda_graph_runner.allow_capture():
                    self._run_cuda_graph_warmup(resource_manager)
                self._general_warmup(resource_manager, [(8, 0)])

            def _run_attention_warmup(self, resource_manager, can_run_general_warmup):
                log("attention warmup")

            def _general_warmup(self, resource_manager, warmup_requests_configs):
                log(f"general warmup {warmup_requests_configs}")

            def _run_autotuner_warmup(self, resource_manager):
                log("autotuner warmup")

            def _run_cuda_graph_warmup(self, resource_manager):
                self._capture_generation_cuda_graphs(resource_manager)

            def _capture_generation_cuda_graphs(self, resource_manager):
                cuda_graph_batch_sizes = sorted(self._cuda_graph_batch_sizes, reverse=True)
                for bs in cuda_graph_batch_sizes:
                    log(f"prepare bs={bs}")
                    self.forward(bs, resource_manager)

            def _release_cuda_graphs(self):
                log("release graphs")
                runner = self.cuda_graph_runner
                runner.graphs.clear()
                runner.graph_outputs.clear()
                runner.graph_metadata.clear()
                runner.memory_pool = None
    """,
    "tensorrt_llm/_torch/pyexecutor/_util.py": """
        from tensorrt_llm._log import log


        class KvCacheCreator:
            def __init__(self, kv_cache_config, skip_est=False):
                self._kv_cache_config = kv_cache_config
                self._skip_est = skip_est

            def _get_token_num_for_estimation(self):
                return 4096

            def try_prepare_estimation(self):
                log("try_prepare_estimation")
                if self._skip_est:
                    return False
                estimating_kv_cache = True
                self._kv_cache_config.max_tokens = self._get_token_num_for_estimation()
                return estimating_kv_cache

            def build_managers(self, resources, estimating_kv_cache):
                config = self._kv_cache_config
                log(f"build kv estimating={estimating_kv_cache} max_tokens={config.max_tokens}"
                    f" bytes={config.max_gpu_total_bytes}")
                resources["kv"] = config.max_tokens

            def configure_kv_cache_capacity(self, py_executor):
                log("measure peak memory")
                py_executor.start_worker()
                kv_cache_max_memory = 7 << 30
                self._kv_cache_config.max_tokens = 123456
                self._kv_cache_config.max_gpu_total_bytes = kv_cache_max_memory

            def teardown_managers(self, resources):
                log("teardown kv")
                resources.pop("kv")
    """,
    "tensorrt_llm/_torch/pyexecutor/py_executor.py": """
        from tensorrt_llm._log import log


        class PyExecutor:
            def __init__(self, model_engine, resource_manager):
                self.model_engine = model_engine
                self.resource_manager = resource_manager
                self.model_engine.warmup(self.resource_manager)

            def start_worker(self):
                log("start worker")
    """,
    "tensorrt_llm/_torch/pyexecutor/py_executor_creator.py": """
        from ._util import KvCacheCreator
        from .model_engine import PyTorchModelEngine
        from .py_executor import PyExecutor


        def create_py_executor(llm_args, checkpoint_dir=None):
            model_engine = PyTorchModelEngine(sizes=llm_args.cuda_graph_config.batch_sizes)
            resources = {}
            kv_cache_creator = KvCacheCreator(llm_args.kv_cache_config, llm_args.skip_est)
            estimating_kv_cache = kv_cache_creator.try_prepare_estimation()
            kv_cache_creator.build_managers(resources, estimating_kv_cache)
            py_executor = PyExecutor(model_engine, resources)
            if estimating_kv_cache:
                kv_cache_creator.configure_kv_cache_capacity(py_executor)
                kv_cache_creator.teardown_managers(resources)
                del py_executor
                kv_cache_creator.build_managers(resources, False)
                model_engine._release_cuda_graphs()
                py_executor = PyExecutor(model_engine, resources)
            py_executor.start_worker()
            return py_executor
    """,
}


def write(root: Path, files: dict[str, str] | None = None) -> Path:
    """Write the tree under `root` (which then holds `tensorrt_llm/`); returns `root`."""
    for rel, text in (FILES if files is None else files).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def edit(root: Path, rel: str, old: str, new: str) -> None:
    """Replace `old` (present once) in one file of a written tree: a drifted copy."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {rel}"
    path.write_text(text.replace(old, new), encoding="utf-8")
