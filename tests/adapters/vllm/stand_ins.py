"""Stand-ins for vLLM objects shared by the capture-loop and PIECEWISE tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Desc:  # vLLM's BatchExecutionDescriptor
    cg_mode: str
    num_tokens: int
    num_reqs: int | None = None
    uniform_token_count: int | None = None
    num_active_loras: int = 0


class FakeTensor:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def data_ptr(self) -> int:
        return self.ptr
