"""kiln's adapter for vLLM 0.24 (V2 model runner).

So far: what `kiln run` contributes before vLLM starts (fingerprint fields, pinned
environment) and the seam contract (every vLLM symbol the adapter attaches to, checked
against the installed vLLM or a source tree). The worker-side seams (docs/vllm/seams.md §6)
come next.
"""

from __future__ import annotations

from kiln_vllm.adapter import VllmAdapter

plugin = VllmAdapter()

__all__ = ["VllmAdapter", "plugin"]
