"""Access to the compiled core (``kiln._native``), imported on first use.

``import kiln`` must work without a GPU, without libcuda and even without the extension;
only the calls that need the native core import it, and a missing build is an error that
says so.
"""

from __future__ import annotations

import functools
from types import ModuleType

from kiln.errors import InterposerNotLoaded, NativeUnavailable


@functools.cache
def native() -> ModuleType:
    try:
        from kiln import _native
    except ImportError as e:  # pragma: no cover - depends on the install
        raise NativeUnavailable(
            f"kiln's native extension is not built ({e}); install kiln with `pip install .`"
        ) from e
    return _native


def require_interposer() -> ModuleType:
    """The native module, after checking that the LD_PRELOAD interposer is in place."""
    n = native()
    if not n.interposer_installed():
        from kiln._paths import preload_library

        raise InterposerNotLoaded(
            "kiln's interposer is not loaded in this process: start it as "
            f"`kiln run -- <command>` or with LD_PRELOAD={preload_library()}"
        )
    return n
