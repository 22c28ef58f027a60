"""vLLM's MoE workspace (`vllm.v1.worker.workspace`): one scratch buffer per micro-batch slot
that fused-MoE kernels write into, grown on first use. Its first use is SAVE's profiling
forward, which runs with the region suspended, so a graph captured later would point outside
the region (SAVE refuses it: `fused_moe_kernel` ... outside the kiln region). kiln places the
buffer inside the region at one point of startup, at SAVE and LOAD alike: after
`determine_available_memory`, before the KV cache, sized as SAVE's profiling left it (the
size travels with the KV capacity)."""

from __future__ import annotations

from typing import Any

from kiln.errors import KilnError, RestoreError

WORKSPACE_BYTES = "workspace_bytes"  # the KV capacity field that carries the size


def _manager() -> Any | None:
    from vllm.v1.worker import workspace

    if not workspace.is_workspace_manager_initialized():
        return None
    return workspace.current_workspace_manager()


def slot_bytes(manager: Any) -> list[int]:
    """Each micro-batch slot's workspace size in bytes (0: not allocated)."""
    return [
        0 if w is None else int(w.numel() * w.element_size()) for w in manager._current_workspaces
    ]


def workspace_bytes(manager: Any | None = None) -> int:
    """The size of the workspace this process's forwards grew so far (0 when vLLM has none).
    Only the first micro-batch slot is placed: a second one in use (dual-batch overlap) is
    refused by name."""
    manager = _manager() if manager is None else manager
    if manager is None:
        return 0
    sizes = slot_bytes(manager)
    if any(sizes[1:]):
        raise KilnError(
            f"vLLM's workspace has {len(sizes)} micro-batch slots in use ({sizes} bytes); kiln "
            "places only the first (dual-batch overlap is not supported)"
        )
    return sizes[0] if sizes else 0


def place_workspace(nbytes: int, manager: Any | None = None) -> None:
    """Replace the first slot's buffer by one of `nbytes` allocated now (inside the region,
    where the caller runs this), or leave it when `nbytes` is 0. The old buffer (made while
    the region was suspended) is released and the allocator's cache emptied first, so that
    no later region allocation is served from its block."""
    if nbytes == 0:
        return
    manager = _manager() if manager is None else manager
    if manager is None:
        raise RestoreError(
            f"the archive records a {nbytes}-byte vLLM workspace, but this process has no "
            "workspace manager"
        )
    if manager.is_locked():
        raise KilnError("vLLM's workspace is already locked; kiln cannot place it")
    import torch

    manager._current_workspaces[0] = None
    torch.accelerator.empty_cache()
    manager._current_workspaces[0] = torch.empty(
        (nbytes,), dtype=torch.uint8, device=manager._device
    )
