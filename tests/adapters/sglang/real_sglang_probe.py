"""kiln-sglang against the installed SGLang, without a GPU: run in a fresh process (SGLang's
HookRegistry patches its classes for the process, and `load_plugins` runs once per process)
under a `kiln run` environment, it prints one JSON object for test_real_sglang.py.

    python real_sglang_probe.py attach MODEL_DIR     plugin discovery, hooks, ServerArgs, fingerprint
    python real_sglang_probe.py fallback MODEL_DIR   a refusal under the fallback policy
    python real_sglang_probe.py scheduler MODEL_DIR  a spawned scheduler process, as SGLang starts it

ServerArgs is given `device="cuda"`: SGLang's device probe finds no accelerator on a machine
without one. Nothing else is stood in for.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pkgutil
import signal
import sys
from typing import Any


def _args(model: str, **fields: Any) -> Any:
    from sglang.srt.server_args import ServerArgs

    return ServerArgs(
        model_path=model, load_format="dummy", skip_tokenizer_init=True, device="cuda", **fields
    )


def _outcome(model: str, **fields: Any) -> dict[str, Any]:
    try:
        args = _args(model, **fields)
    except Exception as err:  # noqa: BLE001 - the probe reports what SGLang under kiln raised
        return {"error": type(err).__name__, "message": str(err)}
    config = args.cuda_graph_config
    return {
        "decode": config.decode.backend,
        "prefill": config.prefill.backend,
        "disable_flashinfer_autotune": args.disable_flashinfer_autotune,
        "disable_custom_all_reduce": args.disable_custom_all_reduce,
        "refused": getattr(args, "_kiln_refused", None),
    }


def attach(model: str) -> dict[str, Any]:
    from kiln_sglang import hooks
    from kiln_sglang.sglang_plugin import TARGETS
    from sglang.srt.plugins import load_plugins
    from sglang.srt.plugins.hook_registry import HookRegistry

    load_plugins()
    wrapped = {}
    for target, _, name in TARGETS:
        owner, attr = target.rsplit(".", 1)
        fn = getattr(pkgutil.resolve_name(owner), attr)
        cells = [c.cell_contents for c in getattr(fn, "__closure__", None) or ()]
        kiln_fn = getattr(hooks, name)
        # The outer wrapper of a target holds its last hook; BEFORE sits one level in.
        while kiln_fn not in cells and hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
            cells = [c.cell_contents for c in getattr(fn, "__closure__", None) or ()]
        wrapped[f"{target} {name}"] = kiln_fn in cells
    result: dict[str, Any] = {
        "patched": sorted(HookRegistry._patched),
        "kiln_hook_in_wrapper": wrapped,
        "cases": {
            "plain": _outcome(model),
            "explicit_breakable_decode": _outcome(model, cuda_graph_backend_decode="breakable"),
            "again_after_a_conflict": _outcome(model),
            "tp2": _outcome(model, tp_size=2),
            "pdmux": _outcome(model, enable_pdmux=True),
            "prefill_json": _outcome(
                model, cuda_graph_config={"prefill": {"backend": "breakable"}}
            ),
        },
    }
    from kiln_sglang import kv
    from kiln_sglang.fingerprint import scheduler_fingerprint
    from kiln_sglang.graphs import graph_key, output_fields, torch_capture_api
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.layers.logits_processor import LogitsProcessorOutput
    from sglang.srt.model_executor.forward_batch_info import CaptureHiddenMode
    from sglang.srt.model_executor.pool_configurator import MemoryPoolConfig
    from sglang.srt.model_executor.runner.shape_key import ShapeKey

    args = _args(model)
    fields = scheduler_fingerprint(args, ModelConfig.from_server_args(args))
    result["fingerprint"] = json.loads(json.dumps(fields))
    result["layout"] = hooks.layout(args)
    kv.check_fields(MemoryPoolConfig)
    pool = MemoryPoolConfig(
        max_total_num_tokens=4096, max_running_requests=None, mem_fraction_static=0.8
    )
    result["kv_round_trip"] = kv.config_of(kv.capacity_of(pool), MemoryPoolConfig, 0.8) == pool
    result["kv_pool_fields"] = [f.name for f in dataclasses.fields(MemoryPoolConfig)]
    import torch

    out = LogitsProcessorOutput(next_token_logits=torch.zeros(2, 8))
    names = output_fields(out, torch_capture_api())
    result["key"] = graph_key(ShapeKey(size=8), CaptureHiddenMode.NULL, names)
    return result


def fallback(model: str) -> dict[str, Any]:
    """Under the fallback policy a refusal is carried on the resolved ServerArgs, which
    SGLang pickles to each scheduler."""
    import pickle

    from sglang.srt.plugins import load_plugins

    load_plugins()
    args = _args(model, enable_pdmux=True)
    return {"refused": getattr(pickle.loads(pickle.dumps(args)), "_kiln_refused", None)}


def _scheduler_target(*args: Any) -> None:
    from sglang.srt.managers.scheduler import run_scheduler_process

    run_scheduler_process(*args)


def scheduler(model: str) -> dict[str, Any]:
    """SGLang's own scheduler entry (`run_scheduler_process`) in a spawned process, as
    `Engine` starts it: kiln's plugin must be loaded there and drive the start. Without a
    GPU it stops where a device is first needed; SGLang then signals its parent (SIGQUIT)."""
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import PortArgs

    quit_signals: list[int] = []
    signal.signal(signal.SIGQUIT, lambda signum, frame: quit_signals.append(signum))
    load_plugins()
    args = _args(model)
    ports = PortArgs.init_new(args)
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(
        target=_scheduler_target, args=(args, ports, 0, 0, 0, 0, 0, 0, None, writer)
    )
    child.start()
    child.join(300)
    return {"exitcode": child.exitcode, "ready_sent": reader.poll(), "sigquit": len(quit_signals)}


if __name__ == "__main__":
    probe, model_dir = sys.argv[1], sys.argv[2]
    report = {"attach": attach, "fallback": fallback, "scheduler": scheduler}[probe](model_dir)
    print("PROBE " + json.dumps(report, sort_keys=True, default=str))
