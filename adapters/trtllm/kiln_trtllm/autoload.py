"""How kiln attaches to TensorRT-LLM, which has no plugin mechanism.

kiln_trtllm.pth (installed at the top of site-packages) runs one line in every Python
process of the environment: when `KILN_ENABLE=1` (set by `kiln run` only) it calls
`install()`, which puts an import finder at the front of `sys.meta_path`. The finder lets
Python import each module of PATCHES as usual and, right after the module's code has run,
replaces the named functions with kiln's wrappers (kiln_trtllm.hooks), before any other
module can import them by name. It applies to the MPI worker TensorRT-LLM spawns as much as
to the process `kiln run` started (both read the .pth; the worker inherits the environment).
A module already imported when `install()` runs is patched at once.

Failures follow kiln's policy: `strict` stops the process naming the cause (SystemExit),
`fallback` logs it and leaves TensorRT-LLM native. Outside `kiln run` nothing is imported
beyond `os`.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

log = logging.getLogger("kiln.trtllm")

_PKG = "tensorrt_llm._torch.pyexecutor"
PATCHED_ATTR = "__kiln_trtllm_original__"

# (module, qualified name, function in kiln_trtllm.hooks). docs/trtllm/adapter.md lists each
# with its reason; kiln_trtllm.seams checks each target.
PATCHES: tuple[tuple[str, str, str], ...] = (
    (f"{_PKG}.py_executor_creator", "create_py_executor", "create_py_executor"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine.__init__", "model_engine_init"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine._run_attention_warmup", "attention_warmup"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine._general_warmup", "general_warmup"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine._run_autotuner_warmup", "autotuner_warmup"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine._run_cuda_graph_warmup", "run_cuda_graph_warmup"),
    (f"{_PKG}._util", "KvCacheCreator.try_prepare_estimation", "try_prepare_estimation"),
    (f"{_PKG}._util", "KvCacheCreator.configure_kv_cache_capacity", "configure_kv_cache_capacity"),
    (f"{_PKG}._util", "KvCacheCreator.teardown_managers", "teardown_managers"),
    (f"{_PKG}.cuda_graph_runner", "CUDAGraphRunner.capture", "graph_runner_capture"),
    (f"{_PKG}.model_engine", "PyTorchModelEngine.warmup", "model_engine_warmup"),
)


def wrap(original: Callable[..., Any], hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook(original, *args, **kwargs)` in place of `original`."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return hook(original, *args, **kwargs)

    setattr(wrapper, PATCHED_ATTR, original)
    return wrapper


def patch_module(
    module: ModuleType, patches: Sequence[tuple[str, str, str]] = PATCHES
) -> list[str]:
    """Apply every patch for `module`; returns the qualified names patched. A missing target
    raises (the seam moved)."""
    from kiln.errors import KilnError

    from kiln_trtllm import hooks

    done = []
    for target, qualname, name in patches:
        if target != module.__name__:
            continue
        *owners, attr = qualname.split(".")
        owner: Any = module
        for part in owners:
            owner = getattr(owner, part, None)
        # A class's own attribute (an inherited __init__ is not the seam).
        original = vars(owner).get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None or not callable(original):
            raise KilnError(f"{target}.{qualname} is not there: TensorRT-LLM's seams moved")
        if getattr(original, PATCHED_ATTR, None) is None:
            setattr(owner, attr, wrap(original, getattr(hooks, name)))
        done.append(qualname)
    return done


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, on_loaded: Callable[[ModuleType], None]):
        self._inner = inner
        self._on_loaded = on_loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        self._on_loaded(module)


class PatchFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders return for a patched
    module, so that kiln patches it right after its code runs."""

    def __init__(self, modules: Mapping[str, Callable[[ModuleType], None]]) -> None:
        self._modules = dict(modules)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        on_loaded = self._modules.get(fullname)
        if on_loaded is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, on_loaded)
                return spec
        return None


def attach_failed(err: BaseException, environ: Mapping[str, str] | None = None) -> None:
    """strict: SystemExit naming the cause; fallback: log, TensorRT-LLM stays native."""
    env = dict(os.environ) if environ is None else dict(environ)
    message = f"kiln-trtllm cannot attach to TensorRT-LLM: {type(err).__name__}: {err}"
    policy = "strict"
    try:
        from kiln.config import load_config

        policy = str(load_config(environ=env).policy)
    except Exception as config_err:  # noqa: BLE001 - unreadable config: strict, never native
        message += f" (and kiln's config cannot be read: {config_err})"
    if policy != "fallback":
        raise SystemExit(message) from err
    log.warning("%s; TensorRT-LLM starts natively", message)


def _on_loaded(module: ModuleType) -> None:
    try:
        _check_version()
        patch_module(module)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - the policy decides
        attach_failed(err)


_version_checked = False


def _check_version() -> None:
    global _version_checked
    if _version_checked:
        return
    from kiln.errors import KilnError

    from kiln_trtllm.adapter import DISTRIBUTION, SUPPORTED, installed_version, version_supported

    version = installed_version(DISTRIBUTION)
    if not version_supported(version):
        raise KilnError(f"kiln-trtllm supports TensorRT-LLM {SUPPORTED}; this is {version}")
    _version_checked = True


_finder: PatchFinder | None = None


def install(patches: Sequence[tuple[str, str, str]] = PATCHES) -> PatchFinder:
    """Put kiln's finder first on sys.meta_path (once) and patch what is already imported."""
    global _finder
    if _finder is None:
        modules = {target: _on_loaded for target, _, _ in patches}
        _finder = PatchFinder(modules)
        sys.meta_path.insert(0, _finder)
        for name in modules:
            if name in sys.modules:
                _on_loaded(sys.modules[name])
    return _finder


def uninstall() -> None:
    """Remove the finder (tests)."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
