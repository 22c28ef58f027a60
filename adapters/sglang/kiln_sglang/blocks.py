"""The live-block guard: torch's live allocations in its default pool, compared at region
close between SAVE and LOAD.

At LOAD, SGLang's per-shape preparation runs for every decode shape after kiln re-created
SAVE's capture window. If that preparation kept a new tensor alive (a buffer a graph reads),
torch would hand it out of a different cached block at LOAD than at SAVE, and the restored
graph would read memory nothing writes: a silent error. kiln's trajectory check sees new
device allocations, not torch's reuse of its own cache; this guard sees the reuse. SAVE
writes the live blocks of torch's default pool (address, size) next to the archive; LOAD
compares and names the first block that differs.

The snapshot sits beside the archive (`<rank dir>/sglang-live-blocks.json`), written at
SAVE's region close, before the archive is committed at ready; a SAVE that fails in between
leaves a newer snapshot than the archive, which LOAD reports as a difference (never the
other way round).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kiln.errors import KilnError
from kiln.lifecycle.archive_io import rank_dir

SNAPSHOT_FILE = "sglang-live-blocks.json"
VERSION = 1
DEFAULT_POOL = (0, 0)  # torch's id of the caching allocator's default pool


class Block(NamedTuple):
    address: int
    size: int


class LiveBlockMismatch(KilnError):
    """LOAD's live blocks at region close differ from SAVE's."""


def snapshot_file(archive_dir: Path, rank: int) -> Path:
    return rank_dir(archive_dir, rank) / SNAPSHOT_FILE


def live_blocks(segments: Iterable[dict[str, Any]]) -> list[Block]:
    """The allocated blocks of the default pool, from `torch.cuda.memory_snapshot()`'s
    segments (graph pools are left out: at LOAD kiln, not torch, owns the graphs' memory)."""
    found = []
    for segment in segments:
        pool = tuple(segment.get("segment_pool_id", DEFAULT_POOL))
        if pool != DEFAULT_POOL:
            continue
        for block in segment.get("blocks", ()):
            if block.get("state") == "active_allocated":
                found.append(Block(int(block["address"]), int(block["size"])))
    return sorted(found)


def torch_live_blocks(device: int) -> list[Block]:
    import torch

    torch.cuda.synchronize(device)
    segments = [s for s in torch.cuda.memory_snapshot() if s.get("device") == device]
    return live_blocks(segments)


def write(path: Path, found: Sequence[Block]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    data = {"version": VERSION, "blocks": [[b.address, b.size] for b in found]}
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> list[Block]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KilnError(
            f"{path} is missing: SAVE's live blocks at region close are needed to check "
            "this LOAD (save again with this kiln-sglang)"
        ) from None
    except (OSError, ValueError) as err:
        raise KilnError(f"{path} cannot be read: {err}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise KilnError(f"{path}: unsupported live-block snapshot (version {VERSION} expected)")
    try:
        return sorted(Block(int(a), int(s)) for a, s in data["blocks"])
    except (KeyError, TypeError, ValueError) as err:
        raise KilnError(f"{path}: malformed live-block snapshot ({err})") from None


def compare(saved: Sequence[Block], loaded: Sequence[Block]) -> None:
    """Raise LiveBlockMismatch naming the first block that differs."""
    saved_set, loaded_set = set(saved), set(loaded)
    only_saved = sorted(saved_set - loaded_set)
    only_loaded = sorted(loaded_set - saved_set)
    if not only_saved and not only_loaded:
        return
    first = min(only_saved[:1] + only_loaded[:1])
    where = "SAVE only" if first in saved_set else "LOAD only"
    raise LiveBlockMismatch(
        f"torch's live blocks at region close differ between SAVE and LOAD: first "
        f"0x{first.address:x} ({first.size} bytes, {where}); {len(only_saved)} block(s) "
        f"only at SAVE, {len(only_loaded)} only at LOAD. Something kept at LOAD a tensor "
        "that SAVE allocated elsewhere (per-shape preparation after the capture window?); "
        "a restored graph could read memory nothing writes"
    )
