"""kiln: persist captured CUDA graphs with their execution context, restore them bit-exact.

    with kiln.Region() as region:           # before any CUDA allocation
        ...build the model and static inputs (same code in SAVE and LOAD)...
        with kiln.CaptureSession(region) as session:
            session.capture("decode_bs8", step, (x,))
        kiln.save("graphs.kiln", session)    # SAVE process
        graphs = kiln.load("graphs.kiln", region)   # LOAD process
        graphs["decode_bs8"].replay()

Importing kiln needs neither a GPU nor the CUDA driver; torch and the native core are
imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CaptureSession", "Region", "RegionConfig", "__version__", "load", "save"]

if TYPE_CHECKING:
    from kiln.capture import CaptureSession
    from kiln.region import Region, RegionConfig
    from kiln.store import load, save

_LAZY = {
    "CaptureSession": "kiln.capture",
    "Region": "kiln.region",
    "RegionConfig": "kiln.region",
    "load": "kiln.store",
    "save": "kiln.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
