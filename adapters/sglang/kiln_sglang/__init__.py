"""kiln's adapter for SGLang 0.5.16.

`kiln run` contributes the launch fingerprint and pinned environment (adapter.py); SGLang's
general plugin entry point (sglang_plugin.py) installs kiln's hooks through SGLang's own
HookRegistry in the main process (settings pins and refusals) and in every scheduler
process (the lifecycle stages, KV sizing, and each decode graph at
`FullCudaGraphBackend.capture_one`, graphs.py). The seam contract (seams.py) checks every
SGLang symbol used. See docs/sglang/adapter.md.
"""

from __future__ import annotations

from kiln_sglang.adapter import SglangAdapter

plugin = SglangAdapter()

__all__ = ["SglangAdapter", "plugin"]
