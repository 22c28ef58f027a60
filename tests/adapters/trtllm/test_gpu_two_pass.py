"""TensorRT-LLM's two-pass start imitated with torch alone, under `kiln run` and
kiln-trtllm on a GPU: SAVE, then LOAD in a fresh process, outputs bit-exact.

No TensorRT-LLM can be installed anywhere in the project, so this test writes a torch-backed
stand-in for the executor modules kiln-trtllm patches (declared as tensorrt_llm 1.3.0rc24 so
the launcher and the import hook accept it) and runs a worker program through
`kiln run`. It imitates what kiln relies on: a model whose weights load first; a throw-away
estimation executor with a small KV tensor that warms up and captures every decode graph,
then measures free memory, is torn down and frees its graphs; the final KV tensor sized from
the measurement; the final executor's warm-ups, then one `torch.cuda.CUDAGraph` per batch
size, largest first, into a pool chained through `graph.pool()`, with TensorRT-LLM's
warm-up-only early return; the worker started last. It is not TensorRT-LLM's code.

Checks: SAVE records every final graph; LOAD builds no estimation executor, captures nothing,
restores every graph, and replaying them gives SAVE's outputs bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

pytest.importorskip("kiln_trtllm", reason="kiln-trtllm is not installed (.ci/run installs it)")

from kiln._gpu import gpu_unavailable_reason

_NO_GPU = gpu_unavailable_reason()
if _NO_GPU is not None:
    pytest.skip(f"needs a GPU: {_NO_GPU}", allow_module_level=True)

from tests.adapters.trtllm import stand_in_tree

SIZES = [1, 2, 3, 4, 8, 16]

# How the torch-backed runner captures a graph (the rest of the class is the stand-in
# tree's).
_TORCH_GRAPH = """        graph = torch.cuda.CUDAGraph()
        output = None
        with torch.cuda.graph(graph, pool=self.memory_pool):
            output = forward_fn(capture_inputs)
"""

TORCH_TREE = {
    "tensorrt_llm/__init__.py": "",
    "tensorrt_llm-1.3.0rc24.dist-info/METADATA": """
        Metadata-Version: 2.1
        Name: tensorrt_llm
        Version: 1.3.0rc24
    """,
    "tensorrt_llm/_torch/__init__.py": "",
    "tensorrt_llm/_torch/pyexecutor/__init__.py": "",
    "tensorrt_llm/_torch/pyexecutor/state.py": """
        EVENTS = []
    """,
    "tensorrt_llm/_torch/pyexecutor/cuda_graph_runner.py": "import contextlib\nfrom typing import NamedTuple\n\nimport torch\n\n\ndef make_weak_ref(x):\n    return x\n\n\nclass KeyType(NamedTuple):\n    batch_size: int\n    draft_len: int\n    is_first_draft: bool\n\n\n"
    + stand_in_tree.RUNNER_CLASS.format(make_graph=_TORCH_GRAPH),
    "tensorrt_llm/_torch/pyexecutor/model_engine.py": """
        import torch

        from .cuda_graph_runner import CUDAGraphRunner, KeyType
        from .state import EVENTS

        HIDDEN = 256


        class PyTorchModelEngine:
            def __init__(self, *, sizes, is_draft_model=False):
                self.is_draft_model = is_draft_model
                g = torch.Generator().manual_seed(0)
                self.w1 = (torch.randn(HIDDEN, HIDDEN, generator=g) / 16).cuda()
                self.w2 = (torch.randn(HIDDEN, 64, generator=g) / 16).cuda()
                self.embed = torch.randn(1024, HIDDEN, generator=g).cuda()
                self._cuda_graph_batch_sizes = list(sizes)
                self.cuda_graph_runner = CUDAGraphRunner(None)
                self.input_ids = torch.zeros(max(sizes), dtype=torch.long, device="cuda")
                self.attn_metadata = None
                self.kv = None

            def _model(self, input_ids):
                h = self.embed[input_ids]
                ws = self.attn_metadata["workspace"]
                h = torch.relu(h @ self.w1) + ws[: h.shape[0]]
                if self.kv is not None:
                    h = h + self.kv[: h.shape[0], :HIDDEN].float()
                return {"logits": (h @ self.w2).float(), "aux": None}

            def forward(self, bs, resource_manager):
                self.kv = resource_manager["kv"]
                if self.attn_metadata is None:  # the workspace, sized by the first forward
                    self.attn_metadata = {"workspace": torch.full(
                        (max(self._cuda_graph_batch_sizes), HIDDEN), 0.5, device="cuda")}
                inputs = {"attn_metadata": self.attn_metadata}

                def forward_fn(capture_inputs):
                    return self._model(self.input_ids[:bs])

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
                self.forward(1, resource_manager)

            def _general_warmup(self, resource_manager, warmup_requests_configs):
                for num_tokens, _ in warmup_requests_configs:
                    self.forward(num_tokens, resource_manager)

            def _run_autotuner_warmup(self, resource_manager):
                scratch = torch.empty(1 << 20, device="cuda")  # tuning scratch, freed
                del scratch

            def _run_cuda_graph_warmup(self, resource_manager):
                self._capture_generation_cuda_graphs(resource_manager)

            def _capture_generation_cuda_graphs(self, resource_manager):
                cuda_graph_batch_sizes = sorted(self._cuda_graph_batch_sizes, reverse=True)
                for bs in cuda_graph_batch_sizes:
                    self.forward(bs, resource_manager)
                    torch.cuda.synchronize()

            def _release_cuda_graphs(self):
                runner = self.cuda_graph_runner
                runner.graphs.clear()
                runner.graph_outputs.clear()
                runner.graph_metadata.clear()
                runner.memory_pool = None
    """,
    "tensorrt_llm/_torch/pyexecutor/_util.py": """
        import torch

        from .state import EVENTS


        class KvCacheCreator:
            def __init__(self, kv_cache_config, skip_est=False):
                self._kv_cache_config = kv_cache_config
                self._skip_est = skip_est

            def _get_token_num_for_estimation(self):
                return 64

            def try_prepare_estimation(self):
                if self._skip_est:
                    return False
                self._kv_cache_config.max_tokens = self._get_token_num_for_estimation()
                return True

            def build_managers(self, resources, estimating_kv_cache):
                tokens = self._kv_cache_config.max_tokens
                resources["kv"] = torch.zeros(tokens, 256, dtype=torch.float16, device="cuda")
                EVENTS.append(f"kv estimating={estimating_kv_cache} tokens={tokens}")

            def configure_kv_cache_capacity(self, py_executor):
                EVENTS.append("measure")
                torch.cuda.synchronize()
                free, _ = torch.cuda.mem_get_info()
                tokens = min(4096, max(64, free // (256 * 2 * 64)))
                self._kv_cache_config.max_tokens = int(tokens)
                self._kv_cache_config.max_gpu_total_bytes = int(tokens * 256 * 2)

            def teardown_managers(self, resources):
                del resources["kv"]
    """,
    "tensorrt_llm/_torch/pyexecutor/py_executor.py": """
        class PyExecutor:
            def __init__(self, model_engine, resource_manager):
                self.model_engine = model_engine
                self.resource_manager = resource_manager
                self.model_engine.warmup(self.resource_manager)

            def start_worker(self):
                pass
    """,
    "tensorrt_llm/_torch/pyexecutor/py_executor_creator.py": """
        import gc

        from ._util import KvCacheCreator
        from .model_engine import PyTorchModelEngine
        from .py_executor import PyExecutor


        def create_py_executor(llm_args, checkpoint_dir=None):
            model_engine = PyTorchModelEngine(sizes=llm_args.cuda_graph_config.batch_sizes)
            resources = {}
            kv_cache_creator = KvCacheCreator(llm_args.kv_cache_config)
            estimating_kv_cache = kv_cache_creator.try_prepare_estimation()
            kv_cache_creator.build_managers(resources, estimating_kv_cache)
            py_executor = PyExecutor(model_engine, resources)
            if estimating_kv_cache:
                kv_cache_creator.configure_kv_cache_capacity(py_executor)
                kv_cache_creator.teardown_managers(resources)
                del py_executor
                kv_cache_creator.build_managers(resources, False)
                model_engine._release_cuda_graphs()
                model_engine.attn_metadata = None
                gc.collect()
                py_executor = PyExecutor(model_engine, resources)
            py_executor.start_worker()
            return py_executor
    """,
    "imitation.py": '''
        """The worker: build the executor the way TensorRT-LLM does, then decode."""
        import argparse
        import hashlib
        import json
        import os
        from types import SimpleNamespace

        import torch

        from tensorrt_llm._torch.pyexecutor import state
        from tensorrt_llm._torch.pyexecutor.py_executor_creator import create_py_executor

        parser = argparse.ArgumentParser()
        parser.add_argument("--out", required=True)
        parser.add_argument("--sizes", required=True)
        args = parser.parse_args()
        sizes = [int(s) for s in args.sizes.split(",")]
        llm_args = SimpleNamespace(
            model="imitation", backend="pytorch", tensor_parallel_size=1,
            pipeline_parallel_size=1, max_batch_size=max(sizes),
            cuda_graph_config=SimpleNamespace(batch_sizes=sizes, enable_padding=False),
            kv_cache_config=SimpleNamespace(
                free_gpu_memory_fraction=0.9, max_tokens=None, max_gpu_total_bytes=None),
            speculative_config=None, torch_compile_config=None, enable_sleep=False,
        )
        executor = create_py_executor(llm_args)
        engine = executor.model_engine
        outputs = {}
        for bs in sizes:
            engine.input_ids[:bs].copy_(torch.arange(7, 7 + bs, device="cuda") * 13)
            out = engine.forward(bs, executor.resource_manager)
            torch.cuda.synchronize()
            data = out["logits"].cpu().numpy().tobytes()
            outputs[str(bs)] = hashlib.sha256(data).hexdigest()
        kinds = sorted({type(g).__name__ for g in engine.cuda_graph_runner.graphs.values()})
        result = {"mode": os.environ.get("KILN_MODE"), "outputs": outputs,
                  "events": state.EVENTS, "graph_kinds": kinds}
        with open(args.out, "w") as f:
            json.dump(result, f)
    ''',
}


def _kiln_run(mode: str, src: Path, archive: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("KILN_ENABLE", None)
    cmd = [
        sys.executable, "-m", "kiln.cli", "run", "--mode", mode, "--policy", "strict",
        "--archive", str(archive), "--",
        sys.executable, str(src / "imitation.py"), "--out", str(out),
        "--sizes", ",".join(map(str, SIZES)),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


def test_two_pass_start_saves_then_loads_without_the_estimation_pass_bit_exact(
    tmp_path: Path,
) -> None:
    src = stand_in_tree.write(tmp_path / "src", TORCH_TREE)
    archive = tmp_path / "archive"
    out = tmp_path / "result.json"  # one command for both runs: it is part of the fingerprint
    saved = _kiln_run("save", src, archive, out)
    report = json.loads((archive / "startup-report.json").read_text())
    assert report["outcome"] == "saved", report
    assert report["graphs_captured"] == len(SIZES)
    assert saved["events"][:2] == ["kv estimating=True tokens=64", "measure"]

    loaded = _kiln_run("load", src, archive, out)
    report = json.loads((archive / "startup-report.json").read_text())
    assert report["outcome"] == "restored", report
    assert report["graphs_restored"] == len(SIZES) and report["graphs_captured"] == 0
    # No estimation executor at LOAD: the final KV tensor straight from SAVE's measurement.
    assert loaded["events"] == [saved["events"][-1]]
    assert loaded["graph_kinds"] == ["RestoredGraph"]
    assert loaded["outputs"] == saved["outputs"]
