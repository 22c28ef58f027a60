"""kiln's test-only native library: a stand-in CUDA driver for CPU tests.

``kiln_testing.testing`` installs the stand-in as kiln's driver, reports its statistics and
drives kiln's registries as the interposer's hooks would (see
tests/native_support/src/testing/fake_driver.h and fake_graphs.h). kiln's runtime neither
contains nor exposes any of it.
"""

from __future__ import annotations

# First: the test library binds to the libkiln_preload.so this loads (by its soname) and
# uses its classes (GraphDesc, KernelTable, BuiltGraph).
import kiln._native  # noqa: F401

from kiln_testing import _native_testing as testing

__all__ = ["testing"]
