"""SAVE's choice between a cubin and its reduced forms: compacted (kiln.binaries.cubin_compact:
unreached functions removed, what the driver loads fastest), else stubbed
(kiln.binaries.cubin_prune: unreached functions reduced to an EXIT), else whole. A compacted image
is read back first and must keep every kept function's code, relocations and .nv.info
identical to the original's, compared by name (kiln.binaries.cubin_verify); a difference there is
a rewriting error, and the cubin is stored whole. A reduced image is then stored only when
the driver, loading it and the original, gives every kernel the graphs launch the same
attributes and parameter layout; any refusal or difference moves on to the next form, and
the whole cubin is always correct. Reasons are logged. KILN_PRUNE_BINARIES=0 stores every
cubin whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

from kiln.binaries.cubin_compact import compact_cubin
from kiln.binaries.cubin_prune import PrunedCubin, PruneRefused, prune_cubin
from kiln.binaries.cubin_verify import compacted_code_difference
from kiln.env_settings import PRUNE_BINARIES, switch_setting
from kiln.errors import KilnError
from kiln.native import native

__all__ = ["PRUNE_ENV", "pruning_enabled", "verified_pruned_cubin"]

log = logging.getLogger("kiln.binaries.pruned_binaries")

PRUNE_ENV = PRUNE_BINARIES


def pruning_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return switch_setting(
        PRUNE_ENV, "store launched kernels' cubins pruned", "store them whole", environ
    )


def verified_pruned_cubin(cubin: bytes, kernels: Collection[str]) -> PrunedCubin | None:
    """`cubin` reduced to what `kernels` reach, compacted if its kept code is the original's
    and the driver sees those kernels unchanged that way, else stubbed if the driver does;
    None keeps the cubin whole."""
    compacted = _reduced(cubin, kernels, "compacted", compact_cubin)
    if compacted is not None:
        changed = compacted_code_difference(cubin, compacted.image)
        if changed is not None:
            log.debug(
                "cubin of %d bytes stored whole: its compacted form changes kept code (%s)",
                len(cubin),
                changed,
            )
            return None
        if _driver_sees_unchanged(cubin, kernels, "compacted", compacted):
            return compacted
    stubbed = _reduced(cubin, kernels, "stubbed", prune_cubin)
    if stubbed is not None and _driver_sees_unchanged(cubin, kernels, "stubbed", stubbed):
        return stubbed
    return None


def _reduced(
    cubin: bytes,
    kernels: Collection[str],
    form: str,
    reduce: Callable[[bytes, Collection[str]], PrunedCubin],
) -> PrunedCubin | None:
    try:
        return reduce(cubin, kernels)
    except PruneRefused as e:
        log.debug("cubin of %d bytes not %s: %s", len(cubin), form, e)
        return None


def _driver_sees_unchanged(
    cubin: bytes, kernels: Collection[str], form: str, reduced: PrunedCubin
) -> bool:
    try:
        difference = native().compare_kernel_images(cubin, reduced.image, sorted(kernels))
    except KilnError as e:
        difference = f"the comparison failed: {e}"
    if difference is not None:
        log.warning(
            "cubin of %d bytes not %s: its %s form differs (%s)", len(cubin), form, form, difference
        )
        return False
    return True
