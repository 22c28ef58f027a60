"""Entry points the lifecycle layer imports lazily (only in a process that binds a GPU)."""

from __future__ import annotations

from kiln.config import Config
from kiln.lifecycle.runtime import Runtime


def lifecycle_runtime(config: Config) -> Runtime:
    """The native runtime for the lifecycle driver; records the launched command (if
    `kiln run` passed it) as the archive's recipe."""
    from kiln.lifecycle.native_runtime import NativeRuntime, recipe_from_environment

    del config  # region settings reach the runtime through KILN_REGION_* (set by `kiln run`)
    return NativeRuntime(recipe_from_environment())
