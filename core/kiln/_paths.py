"""Where kiln's native artefacts live once installed."""

from __future__ import annotations

from pathlib import Path

PRELOAD_LIBRARY_NAME = "libkiln_preload.so"


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def preload_library() -> Path:
    """Path of the LD_PRELOAD interposer installed next to the Python package."""
    return package_dir() / PRELOAD_LIBRARY_NAME
