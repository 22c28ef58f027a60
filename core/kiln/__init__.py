"""kiln: persist captured CUDA graphs with their execution context, restore them bit-exact."""

from __future__ import annotations

__version__ = "0.1.0"
