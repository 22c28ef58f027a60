"""kiln as a vLLM general plugin (entry point group `vllm.general_plugins`).

vLLM calls `register()` in every process that builds an engine configuration (and, before
forking, in the process that creates the engine). Under `kiln run` it makes vLLM use
`KilnWorker` when the user left `worker_cls` at its default, so stock `vllm serve` and
`LLM(...)` start through kiln without arguments. Outside `kiln run` it does nothing.

The one patch: `vllm.engine.arg_utils.EngineArgs.create_engine_config` (vLLM 0.24.0),
wrapped to set `worker_cls` before vLLM builds the config (docs/vllm/seams.md, P1).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from kiln.errors import KilnError

WORKER_CLS = "kiln_vllm.worker.KilnWorker"


def choose_worker_cls(current: str) -> str:
    """The worker class for an engine started under kiln."""
    if current in ("auto", WORKER_CLS):
        return WORKER_CLS
    raise KilnError(
        f"kiln starts vLLM through its own worker class ({WORKER_CLS}); worker_cls={current!r} "
        "was given. Subclass KilnWorker, or run without kiln"
    )


def register() -> None:
    if os.environ.get("KILN_ENABLE") != "1":
        return
    from vllm.engine.arg_utils import EngineArgs

    original = EngineArgs.create_engine_config
    if getattr(original, "_kiln_wrapped", False):
        return

    @functools.wraps(original)
    def create_engine_config(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.worker_cls = choose_worker_cls(self.worker_cls)
        return original(self, *args, **kwargs)

    create_engine_config._kiln_wrapped = True  # type: ignore[attr-defined]
    EngineArgs.create_engine_config = create_engine_config  # type: ignore[method-assign]
