"""The ``kiln`` command line (console entry point ``kiln.cli:main``)."""

from __future__ import annotations

from kiln.cli.main import main

__all__ = ["main"]
