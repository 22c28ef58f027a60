"""kiln as an SGLang general plugin (entry point group `sglang.srt.plugins`, name `kiln`).

SGLang calls `register()` from `load_plugins()` in its main process and in every scheduler
process (spawned, so each loads it afresh). Under `kiln run` (or when only stage times are
asked for, KILN_SGLANG_STAGE_TIMES) it registers kiln's hooks (kiln_sglang.hooks) in
SGLang's HookRegistry, applies them, and checks that every one took. Outside `kiln run` it
does nothing.

SGLang logs and swallows any exception a plugin raises (`except Exception`), which would
leave a `kiln run` start running natively without a word. kiln therefore follows its own
policy when it cannot attach: `strict` raises SystemExit (which SGLang does not swallow),
naming the cause; `fallback` logs it and leaves SGLang native. This module imports only
the standard library at import time: an import failure here is one SGLang would swallow.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("kiln.sglang")

_HOOKS = "kiln_sglang.hooks"
_SCHED = "sglang.srt.managers.scheduler.Scheduler"
_RUNNER = "sglang.srt.model_executor.model_runner.ModelRunner"
# (SGLang 0.5.16 target, hook type, kiln function in kiln_sglang.hooks). docs/sglang/adapter.md
# lists each with its reason; kiln_sglang.seams checks each target's signature.
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("sglang.srt.server_args.ServerArgs.__post_init__", "BEFORE", "server_args_before_post_init"),
    ("sglang.srt.server_args.ServerArgs.__post_init__", "AFTER", "server_args_after_post_init"),
    (f"{_SCHED}.__init__", "AROUND", "scheduler_init"),
    (f"{_RUNNER}.init_torch_distributed", "AROUND", "init_torch_distributed"),
    (f"{_RUNNER}.load_model", "AROUND", "load_model"),
    (
        (
            "sglang.srt.mem_cache.kv_cache_configurator.KVCacheConfigurator."
            "_resolve_memory_pool_config"
        ),
        "AROUND",
        "resolve_memory_pool_config",
    ),
    (
        "sglang.srt.model_executor.runner.base_runner.BaseRunner.warmup",
        "AROUND",
        "base_runner_warmup",
    ),
    (
        "sglang.srt.model_executor.runner.decode_cuda_graph_runner.DecodeCudaGraphRunner.capture",
        "AROUND",
        "decode_capture",
    ),
    (
        (
            "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend.FullCudaGraphBackend."
            "capture_one"
        ),
        "AROUND",
        "capture_one",
    ),
    (f"{_SCHED}.init_all_cuda_graphs", "AFTER", "init_all_cuda_graphs"),
)


def enabled(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("KILN_ENABLE") == "1" or bool(env.get("KILN_SGLANG_STAGE_TIMES"))


def register() -> None:
    if not enabled(dict(os.environ)):
        return
    try:
        attach()
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - SGLang would swallow it: the policy decides
        attach_failed(err)


def attach_failed(err: BaseException, environ: dict[str, str] | None = None) -> None:
    """strict: SystemExit naming the cause; fallback (or kiln off): log, stay native."""
    env = dict(os.environ) if environ is None else environ
    message = f"kiln-sglang cannot attach to SGLang: {type(err).__name__}: {err}"
    policy = "strict"
    try:
        from kiln.config import load_config

        policy = str(load_config(environ=env).policy)
    except Exception as config_err:  # noqa: BLE001 - unreadable config: strict, never native
        message += f" (and kiln's config cannot be read: {config_err})"
    if env.get("KILN_ENABLE") == "1" and policy != "fallback":
        raise SystemExit(message) from err
    log.warning("%s; SGLang starts natively", message)


def attach() -> None:
    from kiln.errors import KilnError
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from kiln_sglang import hooks
    from kiln_sglang.adapter import SUPPORTED, installed_version
    from kiln_sglang.seams import check_installed

    version = installed_version("sglang")
    if not version_supported(version, SUPPORTED):
        raise KilnError(f"kiln-sglang supports SGLang {SUPPORTED}; this is {version}")
    problems = check_installed()
    if problems:
        raise KilnError("SGLang's seams moved: " + "; ".join(problems))
    for target, kind, name in TARGETS:
        HookRegistry.register(target, getattr(hooks, name), HookType[kind])
    # SGLang applies hooks after every plugin ran and only logs a target that fails: apply
    # now and check each target, so that a failure here follows kiln's policy.
    HookRegistry.apply_hooks()
    missing = sorted({t for t, _, _ in TARGETS} - set(HookRegistry._patched))
    if missing:
        raise KilnError(f"SGLang's HookRegistry did not patch {missing} (see SGLang's log)")


def version_supported(version: str | None, specifier: str) -> bool:
    if version is None:
        return False
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) in SpecifierSet(specifier)
    except InvalidVersion:
        return False
