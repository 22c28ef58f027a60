"""The runtime behind the lifecycle driver (kiln.lifecycle.runtime.Runtime) on a real GPU.

Engines capture their graphs themselves; kiln sees each one where its stream capture ends
(the interposer's cuStreamEndCapture wrapper walks and audits it there, between
begin_graph and end_graph), so no engine code changes how it captures. At LOAD the first
restore() re-creates the capture window and starts building every archived graph in the
background; each restore() then returns a graph that is replayable (through its topology
group's template until its own executable is built; finish_restores() waits for those).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln import env_settings
from kiln.errors import KilnError, NonPersistableGraph, RestoreError
from kiln.graphs import library_memory
from kiln.graphs.restored import RestoredGraph, RestoredSet
from kiln.graphs.rng_check import TorchGraphWatch, check_graph_rng
from kiln.graphs.tensors import TensorSpec
from kiln.lifecycle.types import FingerprintValue, RestoreProgress, RunMode
from kiln.native import native
from kiln.region import Region, RegionConfig


@dataclass
class _RecordedGraph:
    """One engine-captured graph, shaped like kiln.graphs.capture.CapturedGraph for the archive."""

    name: str
    desc: Any
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    trajectory_span: tuple[int, int]


@dataclass
class _Session:
    """The SAVE capture window and what was recorded in it (what store.archive_sections
    reads)."""

    region: Region
    window: tuple[int, int] | None = None
    graphs: list[_RecordedGraph] = field(default_factory=list)


def _tensors(result: object) -> list[Any]:
    """The CUDA tensors among what the engine's capture returned (a tensor, or a tuple or
    list holding some at its top level): the outputs a restored graph hands back."""
    try:
        import torch
    except ImportError:
        return []
    items = result if isinstance(result, (list, tuple)) else [result]
    return [t for t in items if isinstance(t, torch.Tensor) and t.is_cuda]


class NativeRuntime:
    def __init__(self, recipe: Mapping[str, Any] | None = None) -> None:
        self._recipe = dict(recipe) if recipe else None
        self._region: Region | None = None
        self._mode: RunMode | None = None
        self._session: _Session | None = None
        self._open_key: str | None = None
        self._key_start = 0
        self._reader: Any = None
        self._restored: RestoredSet | None = None
        self._restore: Any = None  # kiln.graphs.restore_pipeline.GraphRestore at LOAD
        self._torch_graphs = TorchGraphWatch()

    # --- device -----------------------------------------------------------------------
    def fingerprint(self, device: int, *, slot: int = 0) -> Mapping[str, FingerprintValue]:
        from kiln.fingerprint import environment_fingerprint

        fields = environment_fingerprint(RegionConfig.from_env(device, slot=slot))
        return {k: v for k, v in fields.items() if k not in ("format_version", "kiln_version")}

    def bind(self, device: int, mode: RunMode, archive: Any, *, slot: int = 0) -> None:
        import torch

        from kiln.graphs import store
        from kiln.graphs.restore_pipeline import GraphRestore

        torch.cuda.set_device(device)
        self._mode = mode
        # The rank's slot, not the device number, places the region: ranks sharing a GPU
        # never overlap, and a rank keeps its addresses whichever GPU it is given.
        self._region = Region(RegionConfig.from_env(device, slot=slot)).open()
        if mode is RunMode.SAVE:
            self._session = _Session(self._region)
            return
        if archive is None:
            raise RestoreError("LOAD needs an open archive")
        self._reader = archive
        manifest = store.manifest_of(archive, device)
        # The restore starts now, beside the engine's model loading: the driver verified its
        # own sections only, the rest are hashed on native threads while the binaries load
        # and the graphs decode; the first restore() finishes it (kiln.graphs.restore_pipeline).
        self._restore = GraphRestore(_BorrowedReader(archive), manifest, device)
        self._restored = self._restore.restored

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return self._require_region().suspended()

    # --- SAVE ---------------------------------------------------------------------------
    def begin_graph(self, key: str) -> None:
        import torch

        session = self._require_session()
        region = self._require_region()
        torch.cuda.synchronize(region.device)
        if session.window is None:
            session.window = (region.trajectory_length(), region.trajectory_length())
        self._open_key = key
        self._key_start = region.trajectory_length()
        self._torch_graphs.arm()
        native().capture_recorder_arm(region.device)
        library_memory.capture_window(True)

    def end_graph(self, key: str, result: object = None) -> None:
        session = self._require_session()
        region = self._require_region()
        if self._open_key != key:
            raise KilnError(f"end_graph({key!r}) without a matching begin_graph")
        self._open_key = None
        library_memory.capture_window(False)
        descs = native().capture_recorder_take()
        torch_graphs = self._torch_graphs.take()
        if len(descs) != 1:
            raise NonPersistableGraph(
                f"graph {key!r}: the engine's capture ended {len(descs)} stream captures; kiln "
                "records exactly one graph per key"
            )
        outputs = [
            TensorSpec.of(t, f"output {i} of {key!r}")
            for i, t in enumerate(_tensors(result))
            if region.contains(t.data_ptr())
        ]
        # The same RNG check as CaptureSession's, on the engine's own torch graph (a capture
        # that did not go through torch.cuda.CUDAGraph cannot use torch's generator).
        for graph in torch_graphs:
            check_graph_rng(graph, key, region.device)
        end = region.trajectory_length()
        session.graphs.append(_RecordedGraph(key, descs[0], [], outputs, (self._key_start, end)))
        assert session.window is not None
        session.window = (session.window[0], end)

    def abort_graph(self, key: str) -> None:
        library_memory.capture_window(False)
        native().capture_recorder_disarm()
        self._torch_graphs.take()
        with contextlib.suppress(KilnError):
            native().capture_recorder_take()
        self._open_key = None

    def sections(self) -> Mapping[str, bytes | memoryview]:
        from kiln.graphs.store import archive_sections

        session = self._require_session()
        sections, _stats = archive_sections(session, recipe=self._recipe)
        return sections

    # --- LOAD ---------------------------------------------------------------------------
    def restore(self, key: str) -> RestoredGraph:
        restored = self._require_restored()
        if not restored.started:
            # The first graph the engine asks for: this is where SAVE's capture window began.
            assert self._restore is not None
            if not self._restore.nvshmem_initialized:
                raise RestoreError(
                    f"graph {key!r} was asked for before the engine reported NVSHMEM "
                    "bootstrapped (kiln_collectives_bootstrapped): the archive's NVSHMEM kernels "
                    "would run uninitialised"
                )
            self._restore.materialize(self._require_region())
        if key not in restored:
            raise RestoreError(f"the archive holds no graph {key!r}")
        graph: RestoredGraph = restored[key]
        return graph

    def restore_progress(self) -> RestoreProgress:
        """Counts every graph of the archive: all of them are built, whichever the engine
        asked for."""
        restored = self._restored
        if restored is None or not restored.started:
            return RestoreProgress()
        own = sum(1 for graph in restored.values() if graph.has_own_executable)
        return RestoreProgress(own_executable=own, on_template=len(restored) - own)

    def finish_restores(self) -> RestoreProgress:
        restored = self._restored
        if restored is None or not restored.started:
            return RestoreProgress()
        restored.finish()  # the GIL is released while it waits
        return self.restore_progress()

    def collectives_bootstrapped(self) -> None:
        """LOAD: initialise kiln's copies of the archive's NVSHMEM binaries (PE count and PE
        checked against SAVE's; kiln.graphs.nvshmem)."""
        if self._restore is not None:
            self._restore.initialize_nvshmem()

    # --- end ----------------------------------------------------------------------------
    def close_region(self) -> None:
        import torch

        region = self._require_region()
        torch.cuda.synchronize(region.device)
        if self._open_key is not None:
            raise KilnError(f"the region closed while graph {self._open_key!r} was being captured")
        region.close()

    def bytes_mapped(self) -> int:
        if self._region is None:
            return 0
        return int(self._region.info()["bytes_backed"])

    def take_hook_error(self) -> str:
        return str(native().take_last_hook_error())

    def abandon(self) -> None:
        native().capture_recorder_disarm()
        if self._region is not None:
            self._region.close()

    # --- helpers ------------------------------------------------------------------------
    def _require_region(self) -> Region:
        if self._region is None:
            raise KilnError("the runtime has no region: device_bound has not run")
        return self._region

    def _require_session(self) -> _Session:
        if self._session is None:
            raise KilnError("graphs are recorded only at SAVE")
        return self._session

    def _require_restored(self) -> RestoredSet:
        if self._restored is None:
            raise KilnError("graphs are restored only at LOAD")
        return self._restored


class _BorrowedReader:
    """The driver owns the archive reader; a RestoredSet must not close it."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def recipe_from_environment() -> dict[str, Any] | None:
    """`kiln run` passes the command it launched (KILN_COMMAND, JSON) so that the archive can
    say which command saved it. `kiln verify --gpu` shows it but never runs it on its own
    (docs/cli.md): it re-runs the command the user gives, or this one once confirmed."""
    raw = os.environ.get(env_settings.COMMAND)
    if not raw:
        return None
    try:
        argv = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    return {"kind": "command", "argv": argv}
