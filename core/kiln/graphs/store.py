"""save() and load(): a finished CaptureSession to an archive, and an archive back to
replayable graphs in a fresh process."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln import env_settings
from kiln.archive import ArchiveReader, archive_lock, compare_fingerprints, write_archive
from kiln.archive.jsonsec import dump_json, load_json
from kiln.archive.manifest import (
    FINGERPRINT,
    MANIFEST,
    BinaryEntry,
    FamilyEntry,
    GraphEntry,
    GroupEntry,
    Manifest,
)
from kiln.binaries.fatbin import device_cubin
from kiln.binaries.pruned_binaries import pruning_enabled, verified_pruned_cubin
from kiln.env_settings import count_setting
from kiln.errors import (
    AllocationDriftError,
    ArchiveCorrupt,
    KilnError,
    NonPersistableGraph,
    RestoreError,
)
from kiln.fingerprint import device_sm, environment_fingerprint
from kiln.graphs import library_memory, library_pointers, nvshmem
from kiln.graphs.capture import CaptureSession
from kiln.graphs.restored import RestoredGraph, RestoredSet
from kiln.native import native
from kiln.region import Region

_KINDS = {0: "cuMemAlloc", 1: "cuMemAllocPitch", 2: "cuMemAddressReserve", 3: "kiln"}


@dataclass
class SaveReport:
    path: Path
    bytes_written: int
    graphs: int
    binaries: int
    binary_bytes: int
    graph_bytes: int
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


def _check_window_references(session: Any, traj: list[tuple[int, int, int]]) -> None:
    """Memory allocated inside the window but outside any capture holds whatever the SAVE
    process put there; LOAD re-creates it empty. A graph reading it would silently compute
    garbage, so unless it is a declared input (rewritten by the caller), refuse.

    Only allocations made before a graph's capture ended count for it: memory allocated
    later did not exist when the graph was captured, so a pointer there is not a reference
    to it but a value that happens to equal its address (typically one past the end of the
    graph's own last allocation, which the bump allocator places right before it)."""
    assert session.window is not None
    w0, w1 = session.window
    base = session.region.config.base
    captured: set[int] = set()
    for g in session.graphs:
        captured.update(range(*g.trajectory_span))
    # Usually none: then no pointer needs looking at (graphs hold ~10^4 pointers each).
    uncaptured = sorted(
        (base + off, base + off + size, i)
        for i, (off, size, _kind) in enumerate(traj)
        if w0 <= i < w1 and i not in captured
    )
    if not uncaptured:
        return
    for g in session.graphs:
        ranges = [(s, e, i) for s, e, i in uncaptured if i < g.trajectory_span[1]]
        if not ranges:
            continue
        starts = [start for start, _end, _i in ranges]
        for addr in sorted(set(g.desc.region_pointers())):
            k = bisect.bisect_right(starts, addr) - 1
            if k < 0 or addr >= ranges[k][1]:
                continue
            if any(s.address <= addr < s.address + max(s.nbytes, 1) for s in g.input_specs):
                continue
            raise NonPersistableGraph(
                f"graph {g.name!r} reads memory at 0x{addr:x}, allocated inside the capture "
                f"session but outside a capture (allocation #{ranges[k][2]}, before the "
                "graph's capture); allocate it before the session (LOAD would re-create it "
                "without its contents)"
            )


def _window_unbacked(session: Any, traj: list[tuple[int, int, int]]) -> list[int]:
    """Window allocations LOAD need not back: freed in this process by now and not pointed
    into by any graph. vLLM frees each capture's warmup activations before the next capture
    (torch.cuda.graph empties the cache), so backing every window allocation at once needs
    far more memory than SAVE ever held (an 8B model's LOAD ran out of memory)."""
    assert session.window is not None
    w0, w1 = session.window
    base = session.region.config.base
    device = session.region.device
    n = native()
    freed = [
        i for i in range(w0, w1) if not n.region_is_backed(device, base + traj[i][0], traj[i][1])
    ]
    if not freed:
        return []  # then no graph's pointers need collecting
    pointers = sorted({p for g in session.graphs for p in g.desc.region_pointers()})
    unbacked = []
    for i in freed:
        start = base + traj[i][0]
        k = bisect.bisect_left(pointers, start)
        if k < len(pointers) and pointers[k] < start + traj[i][1]:
            continue  # a graph points into it: LOAD backs it (its contents never mattered)
        unbacked.append(i)
    return unbacked


def _topology_groups(session: CaptureSession) -> list[GroupEntry]:
    """Graphs with one topology, in capture order; the first member is the template (LOAD
    groups the same way and checks that it agrees)."""
    n = native()
    by_key: dict[str, list[Any]] = {}
    for g in session.graphs:
        by_key.setdefault(hashlib.sha256(n.topology_signature(g.desc)).hexdigest(), []).append(g)
    groups = []
    for key, members in by_key.items():
        first = members[0]
        differing = [len(n.differing_nodes(first.desc, m.desc)) for m in members]
        groups.append(GroupEntry(key, first.name, [m.name for m in members], differing))
    return groups


def _families(session: CaptureSession, groups: list[GroupEntry]) -> list[FamilyEntry] | None:
    """Which groups share a merged template, planned here as LOAD would plan them without a
    cap, so that LOAD only checks the plan (kiln._native.plan_families)."""
    if len(groups) < 2:
        return None
    descs = {g.name: g.desc for g in session.graphs}
    plans = native().plan_families([descs[g.template] for g in groups])
    return [
        FamilyEntry([groups[i].template for i in members], slots, runs)
        for members, slots, runs in plans
    ]


def _recorded_families(manifest: Manifest) -> list[tuple[list[int], int, list[list[int]]]]:
    """The manifest's families for kiln._native.GraphSet: groups by their template's index."""
    if manifest.families is None:
        return []
    index = {g.name: i for i, g in enumerate(manifest.graphs)}
    return [([index[n] for n in f.groups], f.slots, f.runs) for f in manifest.families]


def _check_groups(manifest: Manifest, graph_set: Any) -> None:
    """The grouping LOAD derived from the graphs themselves must be the one SAVE recorded."""
    if manifest.groups is None:
        return
    index = {g.name: i for i, g in enumerate(manifest.graphs)}
    for group in manifest.groups:
        t = index[group.template]
        for name, differing in zip(group.members, group.differing, strict=True):
            i = index[name]
            if (
                graph_set.group_of(i) != graph_set.group_of(t)
                or graph_set.template_of(graph_set.group_of(i)) != t
                or graph_set.differing_from_template(i) != differing
            ):
                raise ArchiveCorrupt(
                    f"graph {name!r}: its topology group differs from the one SAVE recorded "
                    f"(template {group.template!r})"
                )
    if graph_set.group_count != len(manifest.groups):
        raise ArchiveCorrupt(
            f"LOAD found {graph_set.group_count} topology groups, SAVE recorded {len(manifest.groups)}"
        )


def archive_sections(
    session: Any, *, recipe: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, int]]:
    """The sections describing a finished capture session (binaries, graphs, manifest; not
    the fingerprint), and counts for a report. `session` is a CaptureSession or anything
    with its `region`, `window` and `graphs` (name, desc, input_specs, output_specs,
    trajectory_span)."""
    if session.window is None:
        raise KilnError("the capture session has not ended")
    if not session.graphs:
        raise KilnError("the capture session captured no graphs")
    n = native()
    # An event a graph claimed and eager code used since: the graph would lose that
    # synchronisation with a private event at LOAD.
    violation = n.event_violation()
    if violation:
        raise NonPersistableGraph(violation)
    library_memory.refuse_capture_state()
    library_pointers.refuse_multicast(session.graphs)
    region = session.region
    traj = region.trajectory()[: session.window[1]]
    _check_window_references(session, traj)

    sections: dict[str, Any] = {}
    ids = sorted({b for g in session.graphs for b in g.desc.binaries()})
    slot_of: dict[int, int] = {}
    by_hash: dict[str, int] = {}
    first: list[tuple[int, bytes, str]] = []  # (binary id, bytes, SHA-256) of each slot
    for bid in ids:
        data = n.binary_bytes(bid)
        digest = hashlib.sha256(data).hexdigest()
        if digest not in by_hash:
            by_hash[digest] = len(first)
            first.append((bid, data, digest))
        slot_of[bid] = by_hash[digest]

    launched: dict[int, set[str]] = {}  # slot -> the entries the graphs launch from it
    for g in session.graphs:
        for bid, entry in g.desc.kernels():
            launched.setdefault(slot_of[bid], set()).add(entry)
    binaries: list[BinaryEntry] = []
    prune = pruning_enabled()
    for slot, (bid, data, digest) in enumerate(first):
        name = f"b{slot}"
        entry, sections[name] = _binary_entry(
            name,
            data,
            digest,
            n.binary_info(bid)["kind"],
            region,
            kernels=launched.get(slot, set()) if prune else (),
        )
        obtained = {g for b, s in slot_of.items() if s == slot for g in n.binary_globals(b)}
        # NVSHMEM's own globals are initialised at LOAD (kiln.graphs.nvshmem); any other
        # global the application obtained ties the binary to the application's module.
        stateful = sorted(g for g in obtained if not nvshmem.is_nvshmem_symbol(g))
        carries = any(map(nvshmem.is_nvshmem_symbol, obtained)) or nvshmem.carries_state(data)
        if stateful or carries:
            entry = dataclasses.replace(entry, globals=tuple(stateful), nvshmem=carries)
        binaries.append(entry)

    graphs: list[GraphEntry] = []
    graph_bytes = 0
    for i, g in enumerate(session.graphs):
        blob = g.desc.encode(list(slot_of), list(slot_of.values()))
        graph_bytes += len(blob)
        sections[f"g{i}"] = blob
        graphs.append(
            GraphEntry(
                g.name,
                f"g{i}",
                g.desc.node_count,
                g.desc.kernel_count,
                g.input_specs,
                g.output_specs,
            )
        )
    groups = _topology_groups(session)
    pes = None
    if any(b.nvshmem for b in binaries):
        host = nvshmem.NvshmemHost.find()
        if host is not None:
            found = host.pes()
            pes = (found.count, found.mine)
    manifest = Manifest(
        region.device,
        traj,
        session.window,
        binaries,
        graphs,
        recipe=recipe,
        groups=groups,
        window_unbacked=_window_unbacked(session, traj),
        families=_families(session, groups),
        nvshmem_pes=pes,
        library_memory=library_memory.current(region, session.graphs),
    )
    sections[MANIFEST] = dump_json(manifest.to_json())
    stats = {
        "graphs": len(graphs),
        "binaries": len(binaries),
        "binary_bytes": sum(b.size for b in binaries),
        "graph_bytes": graph_bytes,
        "binaries_pruned": sum(b.unpruned_size is not None for b in binaries),
        "binary_bytes_unpruned": sum(b.unpruned_size or b.size for b in binaries),
    }
    return sections, stats


def _binary_entry(
    name: str,
    data: bytes,
    digest: str,
    kind: str,
    region: Any,
    *,
    kernels: Collection[str] = (),
) -> tuple[BinaryEntry, bytes]:
    """The manifest entry and section bytes of one kernel binary: a fatbin becomes the one
    cubin this device runs from it where kiln.binaries.fatbin finds it, and a cubin is pruned to
    what `kernels` (the entries the graphs launch from it) reach where the driver sees
    those kernels unchanged (kiln.binaries.pruned_binaries). Either way LOAD loads less."""
    image, stored_kind = data, kind
    if kind == "fatbin":
        cubin = device_cubin(data, device_sm(region.device))
        if cubin is not None:
            image, stored_kind = cubin, "cubin"
    unpruned = None
    if stored_kind == "cubin" and kernels:
        pruned = verified_pruned_cubin(image, kernels)
        if pruned is not None:
            image, unpruned = pruned.image, len(image)
    if image is data:
        return BinaryEntry(name, digest, len(data), kind), data
    entry = BinaryEntry(
        name,
        hashlib.sha256(image).hexdigest(),
        len(image),
        stored_kind,
        digest,
        len(data),
        unpruned,
    )
    return entry, image


def save(
    path: str | os.PathLike[str],
    session: CaptureSession,
    *,
    recipe: Mapping[str, Any] | None = None,
) -> SaveReport:
    """Write every graph of a finished session, its kernel binaries and context to `path`.

    `recipe` (a JSON object with a string "kind") records how to re-run the SAVE program, so
    that `kiln verify --gpu` can restore the archive in a fresh process."""
    t0 = time.perf_counter()
    sections, stats = archive_sections(session, recipe=recipe)
    region = session.region
    sections[FINGERPRINT] = dump_json(environment_fingerprint(region.config))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive_lock(target):
        written = write_archive(target, sections)
    return SaveReport(
        target,
        written,
        stats["graphs"],
        stats["binaries"],
        stats["binary_bytes"],
        stats["graph_bytes"],
        time.perf_counter() - t0,
        {k: stats[k] for k in ("binaries_pruned", "binary_bytes_unpruned")},
    )


def _drift_message(d: dict[str, Any], recorded: int) -> str:
    i, want, got = d["index"], d["expected"], d["actual"]

    def show(e: tuple[int, int, int]) -> str:
        return f"offset 0x{e[0]:x}, {e[1]} bytes ({_KINDS.get(e[2], e[2])})"

    if want is None:
        return (
            f"allocation #{i} ({show(got)}) has no counterpart at SAVE: this process allocated "
            f"more before LOAD than SAVE did before capture ({recorded} allocations)"
        )
    if got is None:
        return (
            f"this process made only {i} allocations before LOAD; SAVE made {recorded}: "
            f"allocation #{i} ({show(want)}) is missing"
        )
    return f"allocation #{i} differs from SAVE: expected {show(want)}, got {show(got)}"


def _app_copies(binaries: list[BinaryEntry]) -> list[int]:
    """For each archive binary, the id of this process's own loaded copy (or -1). Each
    candidate of a matching size is hashed at most once."""
    n = native()
    by_size: dict[int, list[int]] = {}
    for i in range(n.binary_count()):
        by_size.setdefault(n.binary_info(i)["size"], []).append(i)
    digests: dict[int, str] = {}

    def digest(i: int) -> str:
        if i not in digests:
            digests[i] = hashlib.sha256(n.binary_bytes(i)).hexdigest()
        return digests[i]

    out = []
    for b in binaries:
        found = -1
        sha, size = b.loaded_as
        for i in by_size.get(size, ()):
            if n.binary_loaded(i) and digest(i) == sha:
                found = i
                break
        if found < 0 and b.globals:
            raise RestoreError(
                f"kernel binary {b.section} has module globals the application obtained at SAVE "
                f"({', '.join(b.globals[:3])}{', ...' if len(b.globals) > 3 else ''}) and this "
                "process has not loaded its own copy of that binary: a copy loaded from the "
                "archive would start from the image's initial values, not what the application "
                "wrote (load the module and set its globals before kiln restores)"
            )
        out.append(found)
    return out


def materialize_window(manifest: Manifest, region: Region, restored: RestoredSet) -> None:
    """Check that this process allocated what SAVE had allocated before the capture window,
    then re-create the window's allocations at their recorded addresses."""
    n = native()
    dev = region.device
    w0, w1 = manifest.window
    drift = n.region_compare_prefix(dev, manifest.trajectory[:w0])
    if drift is not None:
        raise AllocationDriftError(_drift_message(drift, w0))
    base = region.config.base
    unbacked = set(manifest.window_unbacked or ())
    granularity = int(n.region_info(dev)["granularity"])
    for i in range(w0, w1):
        off, size, _kind = manifest.trajectory[i]
        if i in unbacked:
            # Stepped over without physical memory: the cursor ends where SAVE's bump
            # allocation left it (a later allocation landing elsewhere reports drift).
            n.region_set_cursor(dev, off + -(-size // granularity) * granularity)
            continue
        addr = n.region_allocate(dev, size)
        restored.own_allocation(addr)
        if addr != base + off:
            raise AllocationDriftError(
                f"capture-window allocation #{i} landed at offset 0x{addr - base:x}, SAVE had 0x{off:x}"
            )


BINARY_THREADS_ENV = env_settings.BINARY_THREADS


def binary_thread_count(threads: int | None = None) -> int:
    """How many background threads load an archive's kernel binaries: `threads`, else
    $KILN_BINARY_THREADS, else 3 (loading runs beside the graph decode's threads; more
    would contend inside the driver). 0 loads them all on the calling thread first."""
    return count_setting(BINARY_THREADS_ENV, 3, "binary loader threads", threads)


RESOLVE_THREADS_ENV = env_settings.RESOLVE_THREADS


def resolve_thread_count(threads: int | None = None) -> int:
    """How many background threads resolve the planned kernels (each a lookup that loads
    the function into the context) while the templates build, so that a template finds its
    members' kernels resolved: `threads`, else $KILN_RESOLVE_THREADS, else 2. 0: each
    template's build resolves what it needs itself."""
    return count_setting(RESOLVE_THREADS_ENV, 2, "kernel resolver threads", threads)


BUILD_THREADS_ENV = env_settings.BUILD_THREADS


def build_thread_count(threads: int | None = None) -> int:
    """How many background threads build the restored graphs (templates, then own
    executables): `threads`, else $KILN_BUILD_THREADS, else 2. On the H100 (driver 580)
    building and instantiating 16 decode graphs took 152 ms on 2 threads, 191 ms on 4 and
    321 ms on one: instantiations on more threads contend inside the driver."""
    return count_setting(BUILD_THREADS_ENV, 2, "graph build threads", threads)


TEMPLATE_GROUPS_ENV = env_settings.TEMPLATE_GROUPS


def template_group_limit(limit: int | None = None) -> int:
    """How many topology groups one template may serve (groups that differ in a few nodes
    share a merged template; see docs/restore.md): `limit`, else $KILN_TEMPLATE_GROUPS,
    else 1 (no merging; 0: no cap). kiln.load and engines share this default."""
    return count_setting(TEMPLATE_GROUPS_ENV, 1, "groups per template", limit)


def _gate(restored: RestoredSet, sections: list[str]) -> dict[str, Any]:
    """The verifier arguments of a native consumer of `sections` (none when verified)."""
    v = restored.verification
    return {} if v is None else {"verifier": v.verifier, "items": v.items(sections)}


def load_kernels(
    reader: Any,
    manifest: Manifest,
    restored: RestoredSet,
    *,
    threads: int | None = None,
    resolve_threads: int | None = None,
) -> None:
    """Start loading the archive's kernel binaries (or find this process's own copies of
    them) on background threads bound to the device's primary context, and return: graph
    blobs decode meanwhile, and each template waits only for the binaries it launches.
    Beside the loaders, `resolve_threads` threads (see resolve_thread_count) plan every
    kernel from the graph blobs' shape tables and resolve them as their binaries arrive. A
    failed load is raised where a graph needs the binary, or by wait_replayable. With
    `restored.verification`, each section is read once its hash matched."""
    binaries = [b.section for b in manifest.binaries]
    restored.kernels = native().make_kernel_table(
        [reader.section(s) for s in binaries],
        _app_copies(manifest.binaries),
        device=restored.device,
        threads=binary_thread_count(threads),
        **_gate(restored, binaries),
    )
    resolvers = resolve_thread_count(resolve_threads)
    if resolvers:
        graphs = [g.section for g in manifest.graphs]
        restored.kernels.resolve_in_background(
            resolvers, [reader.section(s) for s in graphs], **_gate(restored, graphs)
        )


def decode_graphs(
    reader: Any,
    manifest: Manifest,
    restored: RestoredSet,
    *,
    threads: int | None,
    template_groups: int | None = None,
) -> None:
    """Decode and group every graph (while load_kernels' threads load the binaries and
    resolve the kernels) into `restored.graph_set`, CPU only; its start() builds them and
    add_graphs (once the capture window is materialized) hands them out."""
    workers = build_thread_count(threads) or 1
    graphs = [g.section for g in manifest.graphs]
    graph_set = native().GraphSet(
        [reader.section(s) for s in graphs],
        restored.kernels,
        restored.device,
        workers,
        template_group_limit(template_groups),
        **_gate(restored, graphs),
        families=_recorded_families(manifest),
    )
    restored.graph_set = graph_set
    _check_groups(manifest, graph_set)


def add_graphs(manifest: Manifest, restored: RestoredSet) -> None:
    """Every decoded graph as a RestoredGraph, its tensors on the materialized window."""
    for i, g in enumerate(manifest.graphs):
        restored.add(RestoredGraph(g.name, i, restored, g.inputs, g.outputs))


def start_graphs(
    reader: Any,
    manifest: Manifest,
    restored: RestoredSet,
    *,
    dedicated: bool,
    threads: int | None,
    template_groups: int | None = None,
) -> None:
    """decode_graphs, then build in the background: the templates first, one per family of
    topology groups (every graph is replayable once those exist), then each graph's own
    executable. Returns once decoded; RestoredSet.wait_replayable waits for the
    templates."""
    decode_graphs(reader, manifest, restored, threads=threads, template_groups=template_groups)
    restored.start_builds(dedicated)
    add_graphs(manifest, restored)


def open_archive(path: str | os.PathLike[str], device: int) -> tuple[Any, Manifest]:
    """The reader and the verified, validated manifest of a kiln archive (no other section
    hashed yet: see section_verification; fingerprint not checked)."""
    reader = ArchiveReader(path, verify=False)
    try:
        manifest = manifest_of(reader, device)
    except BaseException:
        reader.close()
        raise
    return reader, manifest


def manifest_of(reader: Any, device: int) -> Manifest:
    """The verified, validated manifest of an open archive, which must have been saved on
    `device`."""
    reader.verify_section(MANIFEST)
    manifest = Manifest.from_json(load_json(reader.section(MANIFEST), MANIFEST), set(reader.names))
    if manifest.device != device:
        raise RestoreError(
            f"archive was saved on device {manifest.device}, this process uses {device}"
        )
    return manifest


def load(
    path: str | os.PathLike[str],
    region: Region,
    *,
    verify: bool = True,
    dedicated: bool = True,
    threads: int | None = None,
    binary_threads: int | None = None,
    template_groups: int | None = None,
) -> RestoredSet:
    """Restore every graph of an archive into this process (kiln.graphs.restore_pipeline,
    as engines do).

    The process must have made the same allocations as the SAVE process up to the capture
    window (checked; AllocationDriftError names the first difference). Returns once every
    graph is replayable, with tensors aliasing their inputs and outputs; with `dedicated`,
    background threads (`threads`, see store.build_thread_count) go on building each graph
    its own executable (see RestoredSet.finish). Kernel binaries load on `binary_threads`
    threads (see store.binary_thread_count) while the graphs decode. With `verify`, every section is
    hashed on native threads beside that (kiln.archive.section_verification), each read only once
    its hash matched, and all of them before the capture window is materialized: a corrupt
    archive raises ArchiveCorrupt with the region untouched. Without, only the manifest is.

    `template_groups`: how many topology groups one template may serve (see
    store.template_group_limit; default 1, no merging).

    `timings` of the result: seconds per stage as the caller saw them (open, which checks
    the fingerprint; binaries, which starts the hashing, the loading and the decoding;
    verify, materialize, decode, templates, total; verify waits for the hashing and
    materialize maps the capture window while the graphs decode, decode waits for what is
    left of that)
    and, from the native side, `<category>_sum` (thread-seconds), `<category>_wall` (time
    during which any thread was in it) and `<category>_count` for binary loading, kernel
    resolution, decoding, update preparation and each step of the template builds (see
    RestoredSet.native_timings)."""
    timings: dict[str, float] = {}
    started_at = time.monotonic()  # the native timeline's clock
    t = t0 = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = now - t
        t = now

    from kiln.graphs.restore_pipeline import GraphRestore, RestoreOptions

    options = RestoreOptions(
        verify=verify,
        dedicated=dedicated,
        build_threads=threads,
        binary_threads=binary_threads,
        template_groups=template_groups,
    )
    reader, manifest = open_archive(path, region.device)
    try:
        stage("open")
        if verify:
            reader.verify_section(FINGERPRINT)
        fingerprint = load_json(reader.section(FINGERPRINT), FINGERPRINT)
        compare_fingerprints(fingerprint, environment_fingerprint(region.config))
        stage("fingerprint")
    except BaseException:
        reader.close()
        raise
    restore = GraphRestore(reader, manifest, region.device, options, started_at=started_at)
    restored = restore.restored
    try:
        stage("binaries")
        restore.materialize(region, stage)
    except BaseException:
        restored.close()
        raise
    timings["total"] = time.perf_counter() - t0
    timings.update(restored.native_timings())
    restored.timings = timings
    return restored
