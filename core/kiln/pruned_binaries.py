"""SAVE's choice between a cubin and its reduced forms: compacted (kiln.cubin_compact:
unreached functions removed, what the driver loads fastest), else stubbed
(kiln.cubin_prune: unreached functions reduced to an EXIT), else whole. A reduced image is
stored only when the driver, loading it and the original, gives every kernel the graphs
launch the same attributes and parameter layout; any refusal or difference moves on to
the next form, and the whole cubin is always correct. Reasons are logged.
KILN_PRUNE_BINARIES=0 stores every cubin whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

from kiln.cubin_compact import compact_cubin
from kiln.cubin_prune import PrunedCubin, PruneRefused, prune_cubin
from kiln.env_settings import switch_setting
from kiln.errors import KilnError
from kiln.native import native

__all__ = ["PRUNE_ENV", "pruning_enabled", "verified_pruned_cubin"]

log = logging.getLogger("kiln.pruned_binaries")

PRUNE_ENV = "KILN_PRUNE_BINARIES"


def pruning_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return switch_setting(
        PRUNE_ENV, "store launched kernels' cubins pruned", "store them whole", environ
    )


def verified_pruned_cubin(cubin: bytes, kernels: Collection[str]) -> PrunedCubin | None:
    """`cubin` reduced to what `kernels` reach, compacted if the driver sees those kernels
    unchanged that way, else stubbed if it does; None keeps the cubin whole."""
    for form, reduce in (("compacted", compact_cubin), ("stubbed", prune_cubin)):
        reduced = _verified(cubin, kernels, form, reduce)
        if reduced is not None:
            return reduced
    return None


def _verified(
    cubin: bytes,
    kernels: Collection[str],
    form: str,
    reduce: Callable[[bytes, Collection[str]], PrunedCubin],
) -> PrunedCubin | None:
    try:
        reduced = reduce(cubin, kernels)
    except PruneRefused as e:
        log.debug("cubin of %d bytes not %s: %s", len(cubin), form, e)
        return None
    try:
        difference = native().compare_kernel_images(cubin, reduced.image, sorted(kernels))
    except KilnError as e:
        difference = f"the comparison failed: {e}"
    if difference is not None:
        log.warning(
            "cubin of %d bytes not %s: its %s form differs (%s)", len(cubin), form, form, difference
        )
        return None
    return reduced
