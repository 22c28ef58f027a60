"""kiln's adapter for TensorRT-LLM's PyTorch backend (1.3.0rc24).

`kiln run` contributes the launch fingerprint (adapter.py). In every Python process of the
environment, kiln_trtllm.pth calls `kiln_trtllm.autoload.install()` when `kiln run` enabled
kiln: an import hook that patches TensorRT-LLM's executor modules as they are imported
(autoload.PATCHES), so that the worker process reports its lifecycle to kiln's driver
(hooks.py), skips the KV-estimation executor at LOAD (kv.py) and captures or restores each
decode graph at `CUDAGraphRunner.capture` (graphs.py). The seam contract (seams.py) names
every TensorRT-LLM symbol used. See docs/trtllm/adapter.md.
"""

from __future__ import annotations

from kiln_trtllm.adapter import TrtllmAdapter

plugin = TrtllmAdapter()

__all__ = ["TrtllmAdapter", "plugin"]
