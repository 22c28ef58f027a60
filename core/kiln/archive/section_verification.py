"""LOAD's archive verification, beside the restore instead of before it.

Hashing every section before anything else started took about a tenth of the decode67
restore on the H100 (25 ms of 171 MB). Here the manifest is verified at once and every
other section is hashed on native threads, which hold no GIL, in the order LOAD reads
them. The binary loader, the kernel planner and the graph decoders each wait for their own
section's verdict (`kiln._native.SectionVerifier`), so nothing unverified is parsed or
handed to the driver, and `wait` raises the first mismatch as `ArchiveCorrupt`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import zip_longest
from typing import Any

from kiln.archive.manifest import MANIFEST, Manifest
from kiln.native import native

# Hashing runs beside three binary loaders and up to eight decoders; more threads would
# only take cores from them.
VERIFY_THREADS = 8


class SectionVerification:
    """Every section of an open archive but the manifest, hashed in the background."""

    def __init__(self, reader: Any, order: Sequence[str], threads: int | None = None) -> None:
        # The manifest was verified before it was read.
        names = [n for n in dict.fromkeys([*order, *reader.names]) if n != MANIFEST]
        self._item = {name: i for i, name in enumerate(names)}
        self.verifier = native().SectionVerifier(
            [reader.section(n) for n in names],
            [reader.section_digest(n) for n in names],
            names,
            str(reader.path),
            threads or min(VERIFY_THREADS, os.cpu_count() or 1),
        )

    def items(self, sections: Sequence[str]) -> list[int]:
        """The verifier's item of each section, for the native consumers' gates."""
        return [self._item[name] for name in sections]

    def wait(self) -> None:
        """Block until every section is hashed; ArchiveCorrupt names the first mismatch."""
        self.verifier.wait_all()


def restore_order(manifest: Manifest) -> list[str]:
    """Binaries and graphs alternately, each in the order LOAD starts on them: the loaders
    and the decoders both begin at once."""
    binaries = [b.section for b in manifest.binaries]
    graphs = [g.section for g in manifest.graphs]
    return [s for pair in zip_longest(binaries, graphs) for s in pair if s is not None]


def verify_in_background(reader: Any, manifest: Manifest) -> SectionVerification | None:
    """Start hashing every section but the manifest (already verified) in the background.
    Where this process has no native SHA-256 (no libcrypto), verify every section now and
    return None: the consumers then read verified sections without waiting."""
    if not native().sha256_available():
        reader.verify()
        return None
    return SectionVerification(reader, restore_order(manifest))
