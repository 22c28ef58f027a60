"""kiln's adapter for TensorRT-LLM's PyTorch backend (1.3.0rc24).

`kiln run` contributes the launch fingerprint and pins (adapter.py). In every Python process
of the environment, kiln_trtllm.pth calls `kiln_trtllm.autoload.install()` when `kiln run`
enabled kiln: an import hook that patches TensorRT-LLM's executor modules as they are
imported (autoload.PATCHES), so that the worker reports its lifecycle to kiln's driver
(hooks.py), skips the KV-estimation executor at LOAD (kv.py) and captures or restores each
decode graph at `CUDAGraphRunner.capture` (graphs.py). The seam contract (seams.py) names
every TensorRT-LLM symbol used. See docs/trtllm/adapter.md.

The package imports nothing at import time: the .pth imports it in every process `kiln run`
starts, engine or not; `plugin` (the `kiln.adapters` entry point) is built on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln_trtllm.adapter import TrtllmAdapter

__all__ = ["TrtllmAdapter", "plugin"]

_plugin: TrtllmAdapter | None = None


def __getattr__(name: str) -> Any:
    global _plugin
    if name == "TrtllmAdapter":
        from kiln_trtllm.adapter import TrtllmAdapter

        return TrtllmAdapter
    if name == "plugin":
        if _plugin is None:
            from kiln_trtllm.adapter import TrtllmAdapter

            _plugin = TrtllmAdapter()
        return _plugin
    raise AttributeError(f"module 'kiln_trtllm' has no attribute {name!r}")
