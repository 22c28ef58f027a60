"""Young-only garbage collections while the engine process starts (issue 5: LOAD time).

vLLM's worker collects the whole Python heap six times on its way to ready (after NCCL
init, three times in the model-load memory profiler, before capture, and kiln's LOAD once
after its first model call), and the interpreter adds automatic full collections. The
engine process holds everything `import vllm` made (750k objects), so each full collection
took 0.41-0.60 s on an H100 host: 4.0 s of collections in an 8B LOAD whose `LLM()` took
10.5 s. Frozen, LOAD's collections took 0.77 s, 0.65 s of it vLLM's own final one, and
`LLM()` 6.5-6.9 s (`bench/results/vllm-*-qwen3-8b-0d7a004-startup-freeze.json`,
docs/vllm/adapter.md).

Under kiln the worker freezes the heap as it is made (`gc.freeze`: what exists is left out
of every later collection), before the GPU is bound, so no frozen object holds a CUDA
tensor and those collections free what they freed natively. Startup's own garbage is
still collected each time. The freeze ends right before vLLM's own `freeze_gc_heap`
(after `warmup_kernels`), whose full collection then sees the whole heap, as natively: the
ready process has the same collected and frozen heap either way.

`KILN_VLLM_STARTUP_GC_FREEZE=0` turns it off (to measure what it buys).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from typing import Any

from kiln.env_settings import switch_setting

ENV = "KILN_VLLM_STARTUP_GC_FREEZE"


def startup_freeze_requested(environ: Mapping[str, str] | None = None) -> bool:
    """On unless $KILN_VLLM_STARTUP_GC_FREEZE is 0; any value but 0 and 1 is refused."""
    return switch_setting(ENV, "freeze the heap while the engine starts", "do not", environ)


class StartupFreeze:
    """The heap frozen between `begin` and the end of startup.

    Normally the freeze ends in `ending_before`, right before vLLM's own `freeze_gc_heap`:
    everything is thawed and vLLM's full collection and freeze then see the whole heap, so
    the ready process's heap is collected and frozen as natively, including objects an
    earlier freeze held (a Python may have frozen objects at interpreter start, 375 on one
    H100 host; they are frozen again by vLLM's freeze if alive). `end` is the failure path (vLLM stopped
    before its freeze): it thaws only when nothing else had frozen before `begin`, since
    `gc.unfreeze` cannot tell the two freezes apart and nothing would freeze again."""

    def __init__(self) -> None:
        self.active = False
        self.frozen_before = 0

    def begin(self, environ: Mapping[str, str] | None = None) -> bool:
        """Freeze the heap if asked; returns whether it froze."""
        if self.active or not startup_freeze_requested(environ):
            return False
        self.frozen_before = gc.get_freeze_count()
        gc.freeze()
        self.active = True
        return True

    def end(self) -> None:
        """The failure path: thaw what `begin` froze unless an earlier freeze would be
        thawed with it (then everything stays frozen)."""
        if self.active:
            self.active = False
            if not self.frozen_before:
                gc.unfreeze()

    def ending_before(self, freeze_gc_heap: Callable[[], None]) -> Callable[[], None]:
        """vLLM's `freeze_gc_heap`, run after the whole heap is thawed: its full collection
        then sees everything, as natively (patch P4 puts it where vLLM calls it)."""

        def run() -> None:
            if self.active:
                self.active = False
                gc.unfreeze()
            freeze_gc_heap()

        return run


class CollectionLog:
    """Diagnostics: every garbage collection between `start` and `stop`, in order: when it
    began (seconds after `start`), its generation, how long it took, what it freed."""

    def __init__(self) -> None:
        self.records: list[dict[str, float | int]] = []
        self._t0 = 0.0
        self._began = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._began = now
            return
        self.records.append(
            {
                "at_s": round(self._began - self._t0, 6),
                "generation": int(info["generation"]),
                "s": round(now - self._began, 6),
                "collected": int(info["collected"]),
            }
        )
