"""kiln's adapter for vLLM 0.24 (V2 model runner).

`kiln run` contributes the launch fingerprint and pinned environment (adapter.py); the
general plugin (vllm_plugin.py) selects `KilnWorker` (worker.py), which drives kiln's
lifecycle through vLLM's startup; FULL graphs go through kiln's copy of vLLM's capture loop
(graphs.py). The seam contract (seams.py) checks every vLLM symbol used. See
docs/vllm/adapter.md.
"""

from __future__ import annotations

from kiln_vllm.adapter import VllmAdapter

plugin = VllmAdapter()

__all__ = ["VllmAdapter", "plugin"]
