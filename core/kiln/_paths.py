"""Where kiln's native artefacts live once installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PRELOAD_LIBRARY_NAME = "libkiln_preload.so"


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def preload_library() -> Path:
    """Path of the LD_PRELOAD interposer, installed next to the native extension."""
    here = package_dir() / PRELOAD_LIBRARY_NAME
    if here.exists():
        return here
    # Editable installs keep compiled files apart from the sources.
    spec = importlib.util.find_spec("kiln._native")
    if spec and spec.origin:
        beside = Path(spec.origin).resolve().parent / PRELOAD_LIBRARY_NAME
        if beside.exists():
            return beside
    return here
