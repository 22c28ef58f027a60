"""Environment every engine process started under `kiln run` sees, whatever the engine: the
communication libraries' settings a restored graph depends on. Each is pinned with its
reason; a user who set another value is refused by name (kiln.lifecycle.pins)."""

from __future__ import annotations

from kiln.lifecycle.types import Pin

COMMUNICATION_PINS = (
    Pin(
        "NCCL_RUNTIME_CONNECT",
        "0",
        "NCCL connects every channel at initialisation: with lazy connection a channel first "
        "used inside SAVE's capture would be unconnected when a restored graph uses it (a hang)",
    ),
    Pin(
        "NCCL_GRAPH_REGISTER",
        "0",
        "NCCL would register captured buffers with its peers at capture time; a restored graph "
        "would rely on registrations the LOAD process never made",
    ),
    Pin(
        "NCCL_LOCAL_REGISTER",
        "0",
        "user-buffer registration happens outside kiln's view; a restored graph could use a "
        "registration the LOAD process does not have",
    ),
    Pin(
        "NCCL_CUMEM_ENABLE",
        "1",
        "NCCL's buffers then come from cuMem, as kiln's region does; with it off NCCL's "
        "peer-to-peer check fails on kiln's memory and falls back from NVLink to host memory",
    ),
    Pin(
        "NVSHMEM_MAX_MEMORY_PER_GPU",
        "32G",
        "NVSHMEM otherwise reserves far more address space per GPU than kiln's region leaves "
        "free beside it",
    ),
)
