"""kiln's test-only native library: a stand-in CUDA driver for CPU tests.

``kiln_testing.testing`` installs the stand-in as kiln's driver, reports its statistics and
drives kiln's registries as the interposer's hooks would (see
tests/native_support/src/testing/fake_driver.h and fake_graphs.h). ``standin_library`` names
the stand-in communication libraries (libnccl-kiln-standin.so, libnvshmem-kiln-standin.so;
tests/native_support/src/standin), through which a test makes driver calls that come from a
library named like NCCL's or NVSHMEM's. kiln's runtime neither contains nor exposes any of it.
"""

from __future__ import annotations

from pathlib import Path

# First: the test library binds to the libkiln_preload.so this loads (by its soname) and
# uses its classes (GraphDesc, KernelTable, BuiltGraph).
import kiln._native  # noqa: F401

from kiln_testing import _native_testing as testing


def standin_library(library: str) -> Path:
    """The stand-in shared library named like `library`'s ("nccl" or "nvshmem")."""
    return Path(__file__).parent / f"lib{library}-kiln-standin.so"


__all__ = ["standin_library", "testing"]
