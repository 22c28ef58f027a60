"""The markers adapters and observers use to implement kiln's lifecycle hooks.

An adapter writes::

    from kiln.hooks import hookimpl

    class VllmAdapter:
        @hookimpl
        def kiln_pin_settings(self, ctx, settings, explicit): ...

The specifications (what each hook receives, returns and when it fires) are in
:mod:`kiln.hookspecs`.
"""

from __future__ import annotations

import pluggy

#: The pluggy project name; hook implementations marked for another project are ignored.
PROJECT_NAME = "kiln"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl"]
