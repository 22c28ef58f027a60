"""kiln: persist captured CUDA graphs with their execution context, restore them bit-exact.

SAVE and LOAD are two separate processes running the same model-building code; each opens
the region before its first CUDA allocation, so both make the same allocations at the same
addresses. Start each under kiln's interposer (`kiln run -- python save_graphs.py`, or with
`LD_PRELOAD` naming kiln's `libkiln_preload.so`; `kiln.Region().open()` says how when it is
missing).

    # save_graphs.py: the SAVE process
    import kiln

    region = kiln.Region().open()           # before any CUDA allocation
    model, x = build()                      # the model and its static inputs
    with kiln.CaptureSession(region) as session:
        session.capture("decode_bs8", model, (x,))
    kiln.save("graphs.kiln", session)

    # load_graphs.py: the LOAD process, later, in a fresh interpreter
    import kiln

    region = kiln.Region().open()
    model, x = build()                      # the same code, so the same allocations
    graphs = kiln.load("graphs.kiln", region)
    graphs["decode_bs8"].replay()           # reads x, writes the outputs SAVE's graph wrote

`kiln demo` runs such a pair; engines go through `kiln run` and an adapter instead
(`docs/lifecycle.md`). Importing kiln needs neither a GPU nor the CUDA driver; torch and the
native core are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CaptureSession", "Region", "RegionConfig", "__version__", "load", "save"]

if TYPE_CHECKING:
    from kiln.graphs.capture import CaptureSession
    from kiln.graphs.store import load, save
    from kiln.region import Region, RegionConfig

_LAZY = {
    "CaptureSession": "kiln.graphs.capture",
    "Region": "kiln.region",
    "RegionConfig": "kiln.region",
    "load": "kiln.graphs.store",
    "save": "kiln.graphs.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
