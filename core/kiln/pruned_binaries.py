"""SAVE's choice between a cubin and its pruned form (kiln.cubin_prune): the pruned image
is stored only when the driver, loading both, gives every kernel the graphs launch the
same attributes and parameter layout. Any refusal or difference keeps the whole cubin,
which is always correct; the reason is logged. KILN_PRUNE_BINARIES=0 stores every cubin
whole."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

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
    """`cubin` pruned to what `kernels` reach, if the driver sees those kernels unchanged;
    None keeps the cubin whole."""
    try:
        pruned = prune_cubin(cubin, kernels)
    except PruneRefused as e:
        log.debug("cubin of %d bytes kept whole: %s", len(cubin), e)
        return None
    try:
        difference = native().compare_kernel_images(cubin, pruned.image, sorted(kernels))
    except KilnError as e:
        difference = f"the comparison failed: {e}"
    if difference is not None:
        log.warning(
            "cubin of %d bytes kept whole: its pruned form differs (%s)", len(cubin), difference
        )
        return None
    return pruned
