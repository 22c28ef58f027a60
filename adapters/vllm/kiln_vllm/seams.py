"""The seam contract: every vLLM symbol the adapter attaches to, with the parameters it
expects (vLLM 0.24.0, read from the release; docs/vllm/seams.md §7).

`check_installed()` imports vLLM and inspects the live objects; `check_source(root)` parses a
vLLM source tree without importing it (no torch needed). Both return one problem per symbol
that moved, naming it and what changed; an empty list means every seam is where the adapter
expects it. The adapter refuses to attach when the contract fails, rather than patching
something that changed under it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Seam:
    module: str  # vllm.v1.worker.gpu_worker
    qualname: str  # Worker.load_model
    params: tuple[str, ...] | None  # parameter names ("*args", "**kwargs"); None: existence only
    why: str

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


SEAMS: tuple[Seam, ...] = (
    Seam(
        "vllm.plugins", "load_general_plugins", (), "loads kiln's general plugin in every process"
    ),
    Seam(
        "vllm.engine.arg_utils",
        "EngineArgs.create_engine_config",
        ("self", "usage_context", "headless"),
        "settings pins and worker_cls (patch P1)",
    ),
    Seam(
        "vllm.v1.worker.worker_base",
        "WorkerWrapperBase.init_worker",
        ("self", "all_kwargs"),
        "resolves worker_cls by qualified name",
    ),
    Seam(
        "vllm.v1.worker.gpu_worker",
        "Worker.__init__",
        (
            "self",
            "vllm_config",
            "local_rank",
            "rank",
            "distributed_init_method",
            "is_driver_worker",
        ),
        "KilnWorker subclasses the GPU worker",
    ),
    Seam("vllm.v1.worker.gpu_worker", "Worker.init_device", ("self",), "device bound"),
    Seam(
        "vllm.v1.worker.gpu_worker",
        "Worker.load_model",
        ("self", "load_dummy_weights"),
        "weights loaded",
    ),
    Seam(
        "vllm.v1.worker.gpu_worker", "Worker.determine_available_memory", ("self",), "KV capacity"
    ),
    Seam(
        "vllm.v1.worker.gpu_worker",
        "Worker.initialize_from_config",
        ("self", "kv_cache_config"),
        "installs kiln's graph manager",
    ),
    Seam(
        "vllm.v1.worker.gpu_worker",
        "Worker.compile_or_warm_up_model",
        ("self",),
        "capture and ready",
    ),
    Seam("vllm.v1.worker.gpu_worker", "kernel_warmup", None, "warmup phase (patch P2)"),
    Seam("vllm.v1.worker.gpu_worker", "warmup_kernels", None, "warmup phase (patch P3)"),
    Seam(
        "vllm.v1.worker.gpu.warmup",
        "warmup_kernels",
        ("model_runner", "worker_execute_model", "worker_sample_tokens"),
        "the V2 runner's JIT warmup",
    ),
    Seam(
        "vllm.model_executor.warmup.kernel_warmup",
        "kernel_warmup",
        ("worker",),
        "FlashInfer autotune",
    ),
    Seam(
        "vllm.v1.worker.gpu.model_runner", "GPUModelRunner.capture_model", ("self",), "region close"
    ),
    Seam(
        "vllm.v1.worker.gpu.model_runner",
        "GPUModelRunner.profile_run",
        ("self",),
        "profiling phase",
    ),
    Seam(
        "vllm.v1.worker.gpu.cudagraph_utils",
        "CudaGraphManager.capture",
        ("self", "create_forward_fn", "progress_bar_desc"),
        "FULL graph capture",
    ),
    Seam(
        "vllm.v1.worker.gpu.cudagraph_utils",
        "CudaGraphManager.dispatch",
        ("self", "num_reqs", "num_tokens", "uniform_token_count", "num_active_loras"),
        "FULL graph dispatch",
    ),
    Seam(
        "vllm.v1.worker.gpu.cudagraph_utils",
        "CudaGraphManager.run_fullgraph",
        ("self", "desc"),
        "FULL replay",
    ),
    Seam(
        "vllm.v1.worker.gpu.cudagraph_utils",
        "ModelCudaGraphManager.capture",
        (
            "self",
            "model",
            "model_state",
            "input_buffers",
            "intermediate_tensors",
            "block_tables",
            "attn_groups",
            "kv_cache_config",
            "has_lora",
            "use_aux_hidden_state_outputs",
            "lora_capture_hook",
            "progress_bar_desc",
        ),
        "FULL capture with the model's buffers",
    ),
    Seam(
        "vllm.compilation.cuda_graph",
        "CUDAGraphWrapper.__init__",
        ("self", "runnable", "vllm_config", "runtime_mode", "cudagraph_options"),
        "PIECEWISE wrapper",
    ),
    Seam(
        "vllm.compilation.cuda_graph",
        "CUDAGraphWrapper.__call__",
        ("self", "*args", "**kwargs"),
        "PIECEWISE capture",
    ),
    Seam(
        "vllm.platforms.cuda",
        "CudaPlatformBase.get_static_graph_wrapper_cls",
        ("cls",),
        "kiln's PIECEWISE wrapper class (patch P4)",
    ),
    Seam(
        "vllm.compilation.monitor",
        "set_cudagraph_capturing_enabled",
        ("enabled",),
        "no capture after LOAD",
    ),
    Seam("vllm.config.vllm", "VllmConfig.compute_hash", ("self",), "fingerprint"),
)


# --- against the installed vLLM -------------------------------------------------------------


def _parameter_names(obj: object) -> tuple[str, ...]:
    names = []
    for p in inspect.signature(obj).parameters.values():  # type: ignore[arg-type]
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(
            p.kind, ""
        )
        names.append(prefix + p.name)
    return tuple(names)


def check_installed(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    problems = []
    for seam in seams:
        try:
            obj: object = importlib.import_module(seam.module)
        except ImportError as e:
            problems.append(f"{seam.name}: module {seam.module} cannot be imported ({e})")
            continue
        try:
            for part in seam.qualname.split("."):
                obj = inspect.getattr_static(obj, part)
        except AttributeError:
            problems.append(f"{seam.name}: not found ({seam.why})")
            continue
        if isinstance(obj, (classmethod, staticmethod)):
            obj = obj.__func__
        if seam.params is not None:
            # getattr_static keeps functions unbound: "self"/"cls" stay, as in the source.
            problems += _compare(seam, _parameter_names(obj))
    return problems


# --- against a source tree, without importing it --------------------------------------------


def _find(body: list[ast.stmt], name: str) -> ast.AST | None:
    for node in body:
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name == name
        ):
            return node
    for node in body:  # module globals imported from elsewhere (patched names)
        if isinstance(node, ast.ImportFrom) and any(
            (a.asname or a.name) == name for a in node.names
        ):
            return node
    return None


def _ast_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return tuple(names)


def check_source(root: str | Path, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """`root` holds the `vllm` package directory (a checkout, or an unpacked wheel)."""
    problems = []
    for seam in seams:
        base = Path(root, *seam.module.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError) as e:
            problems.append(f"{seam.name}: cannot read {path} ({e})")
            continue
        node: ast.AST | None = tree
        for part in seam.qualname.split("."):
            body = getattr(node, "body", [])
            node = _find(body, part)
            if node is None:
                break
        if node is None:
            problems.append(f"{seam.name}: not found ({seam.why})")
            continue
        if seam.params is not None:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                problems.append(f"{seam.name}: is no longer a function")
                continue
            problems += _compare(seam, _ast_names(node))
    return problems


def _compare(seam: Seam, found: tuple[str, ...]) -> list[str]:
    assert seam.params is not None
    if found == seam.params:
        return []
    return [
        f"{seam.name}: parameters are ({', '.join(found)}), kiln expects ({', '.join(seam.params)}) [{seam.why}]"
    ]
