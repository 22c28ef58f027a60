"""The one restore pipeline, used by `kiln.load` and by the engine runtime alike.

A restore starts as soon as the archive is open: its sections are hashed, its kernel binaries
load and its graphs decode in the background (native threads). It finishes where SAVE's
capture window began: the allocations before it are checked against SAVE's, the window is
re-created at its recorded addresses, and the graphs are built (templates first, then, with
`dedicated`, each graph's own executable). `kiln.load` runs both halves back to back; an
engine starts it when its device is bound and finishes it at its first restored graph.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kiln.archive.manifest import Manifest
from kiln.archive.section_verification import verify_in_background
from kiln.graphs import library_memory, nvshmem, store
from kiln.graphs.restored import RestoredSet
from kiln.region import Region


@dataclass(frozen=True)
class RestoreOptions:
    """How a restore runs. None: the environment's setting (KILN_*), else kiln's default."""

    verify: bool = True  # hash every section beside the restore (else only the manifest)
    dedicated: bool = True  # build each graph's own executable in the background
    build_threads: int | None = None  # store.build_thread_count
    binary_threads: int | None = None  # store.binary_thread_count
    resolve_threads: int | None = None  # store.resolve_thread_count
    # Topology groups one template may serve (store.template_group_limit; default 1, no
    # merging: docs/restore.md says where merged templates stand).
    template_groups: int | None = None


class GraphRestore:
    """One archive's restore in this process: started at construction, finished by
    `materialize` (idempotent). `restored` is the RestoredSet it fills; closing it stops
    whatever still runs."""

    def __init__(
        self,
        reader: Any,
        manifest: Manifest,
        device: int,
        options: RestoreOptions | None = None,
        *,
        started_at: float | None = None,
    ) -> None:
        self.options = options if options is not None else RestoreOptions()
        self.manifest = manifest
        self.restored = RestoredSet(reader, device)
        self.restored.started_at = started_at
        self._decoding: Future[None] | None = None
        self.nvshmem_initialized = not any(b.nvshmem for b in manifest.binaries)
        try:
            if self.options.verify:
                # Each section is read only once its hash matched, all of them before the
                # window is re-created: a corrupt archive fails with the region untouched.
                self.restored.verification = verify_in_background(reader, manifest)
            store.load_kernels(
                reader,
                manifest,
                self.restored,
                threads=self.options.binary_threads,
                resolve_threads=self.options.resolve_threads,
            )
            # The graphs decode on a native thread (the GIL is released) beside the loads.
            pool = ThreadPoolExecutor(1, thread_name_prefix="kiln-decode")
            self._decoding = pool.submit(
                store.decode_graphs,
                reader,
                manifest,
                self.restored,
                threads=self.options.build_threads,
                template_groups=self.options.template_groups,
            )
            pool.shutdown(wait=False)  # the thread ends with the task
        except BaseException:
            self.restored.close()
            raise

    def initialize_nvshmem(self, host: nvshmem.NvshmemHost | None = None) -> int:
        """Initialise kiln's copies of the archive's NVSHMEM binaries through the process's
        NVSHMEM host library (found when not given); call it once NVSHMEM bootstrapped.
        Returns how many were initialised; RestoreError names the cause."""
        if self.nvshmem_initialized:
            return 0
        pes = self.manifest.nvshmem_pes
        done = nvshmem.initialize(
            self.restored.kernels,
            self.manifest.binaries,
            None if pes is None else nvshmem.Pes(*pes),
            host if host is not None else nvshmem.NvshmemHost.find(),
        )
        self.nvshmem_initialized = True
        return done

    def wait_decoded(self) -> None:
        """Block until every graph is decoded; raises what decoding raised."""
        assert self._decoding is not None
        self._decoding.result()

    def materialize(self, region: Region, stage: Any = None) -> RestoredSet:
        """Finish the restore where SAVE's capture window began and return the graph set
        once every graph is replayable. `stage(name)`, if given, is called after each step
        (verify, materialize, decode, templates) for the caller's timings."""
        restored = self.restored
        if restored.started:
            return restored

        def done(name: str) -> None:
            if stage is not None:
                stage(name)

        # A graph launching an uninitialised NVSHMEM module would fault or hang.
        self.initialize_nvshmem()
        restored.wait_verified()
        done("verify")
        # Communication libraries hold what SAVE's graphs may point into.
        library_memory.check(self.manifest.library_memory, region)
        store.materialize_window(self.manifest, region, restored)
        done("materialize")
        self.wait_decoded()
        done("decode")
        restored.start_builds(self.options.dedicated)
        store.add_graphs(self.manifest, restored)  # beside the builds: they need the graph set
        restored.wait_replayable()
        done("templates")
        return restored
