"""``verify_archive``: every check kiln can make on an archive without a GPU (and, asked for,
a restore on this GPU in a fresh process). A damaged or hostile archive yields a list of
problems, never an exception."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from kiln.archive import FORMAT_VERSION, ArchiveReader, load_json
from kiln.archive.manifest import FINGERPRINT, MANIFEST, GraphEntry, Manifest
from kiln.errors import ArchiveCorrupt, KilnError, NotAnArchive
from kiln.inspection.allocations import Allocations
from kiln.inspection.audit import audit_graph
from kiln.inspection.gpu import Consent, verify_on_gpu
from kiln.inspection.problems import Problems
from kiln.lifecycle.archive_io import checked_fingerprint
from kiln.native import native


def verify_archive(
    path: str | os.PathLike[str],
    gpu: bool = False,
    command: Sequence[str] | None = None,
    consent: Consent | None = None,
) -> dict[str, Any]:
    """Check archive ``path``; ``{"ok": bool, "problems": [str], "checked": {...}, ...}``.

    ``"readable": False`` says that ``path`` could not be read as a kiln archive at all
    (missing, not a regular file, no archive magic); ``problems`` then says why.

    With ``gpu``, also restore it on this machine's GPU in a fresh process (see
    :func:`kiln.inspection.gpu.verify_on_gpu`, which says when ``command`` is run and
    when ``consent`` is asked), once the CPU checks have passed."""
    problems = Problems()
    check = _Checks(Path(path), problems)
    try:
        check.run()
    except Exception as e:  # noqa: BLE001 - a check that failed unforeseen: reported, not raised
        problems.add(f"verification stopped: unexpected {type(e).__name__}: {e}")
    result: dict[str, Any] = {
        "path": os.fspath(path),
        "readable": check.readable,
        "checked": check.counts,
    }
    if check.unreferenced:
        result["unreferenced_sections"] = check.unreferenced
    if gpu:
        try:
            result["gpu"] = verify_on_gpu(Path(path), check.manifest, problems, command, consent)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            problems.add(f"GPU verification stopped: unexpected {type(e).__name__}: {e}")
    result["ok"] = not problems
    result["problems"] = problems.messages()
    return result


class _Checks:
    def __init__(self, path: Path, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self.manifest: Manifest | None = None
        self.unreferenced: list[str] = []
        self.counts = {
            "sections": 0,
            "binaries": 0,
            "graphs": 0,
            "kernel_nodes": 0,
            "ranges_audited": 0,
        }
        self._damaged: set[str] = set()
        self.readable = True

    def run(self) -> None:
        try:
            reader = ArchiveReader(self.path, verify=False)
        except (KilnError, OSError) as e:
            # Not a kiln archive at all, or no file to read: unreadable input, not a damaged
            # archive (those raise ArchiveCorrupt past the magic).
            self.readable = isinstance(e, ArchiveCorrupt) and not isinstance(e, NotAnArchive)
            self.problems.add(str(e))
            return
        with reader:
            self._sections(reader)
            region = self._fingerprint(reader)
            self.manifest = self._manifest(reader)
            if self.manifest is None:
                return
            self._unreferenced(reader, self.manifest)
            try:
                n = native()
            except KilnError as e:
                self.problems.add(f"graph blobs and kernel images not checked: {e}")
                return
            self._binaries(reader, self.manifest, n)
            allocations = None
            if region is not None:
                allocations = Allocations(region[0], region[1], self.manifest.trajectory)
                allocations.check(self.problems)
            for i, entry in enumerate(self.manifest.graphs):
                library = set()
                if region is not None and self.manifest.library_memory is not None:
                    library = self.manifest.library_memory.pointer_addresses(i, region[0])
                self._graph(reader, entry, self.manifest, n, allocations, library)

    # -- the container ------------------------------------------------------------------

    def _sections(self, reader: ArchiveReader) -> None:
        for name in reader.names:
            self.counts["sections"] += 1
            with reader.section(name) as view:
                digest = hashlib.sha256(view).digest()
            recorded = reader.section_digest(name)
            if digest != recorded:
                self._damaged.add(name)
                self.problems.add(
                    f"section {name!r}: checksum mismatch (SHA-256 {digest.hex()}, table says "
                    f"{recorded.hex()}); its contents are not checked further"
                )

    def _json(self, reader: ArchiveReader, name: str) -> dict[str, Any] | None:
        if name not in reader:
            self.problems.add(f"section {name!r} is missing")
            return None
        if name in self._damaged:
            return None
        try:
            with reader.section(name) as view:
                return load_json(view, name)
        except KilnError as e:
            self.problems.add(str(e))
            return None

    def _fingerprint(self, reader: ArchiveReader) -> tuple[int, int] | None:
        """The region's (base, size), or None when the fingerprint lacks them."""
        raw = self._json(reader, FINGERPRINT)
        if raw is None:
            return None
        try:
            fingerprint = checked_fingerprint(raw)
        except KilnError as e:
            self.problems.add(str(e))
            return None
        version = fingerprint.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.problems.add(
                f"fingerprint: format_version {version!r}, but the container is version "
                f"{FORMAT_VERSION}"
            )
        base, size = fingerprint.get("region_base"), fingerprint.get("region_size")
        for field, value in (("region_base", base), ("region_size", size)):
            if type(value) is not int or value <= 0:
                self.problems.add(
                    f"fingerprint: {field} is {value!r}, not a positive integer; device "
                    "addresses are not audited"
                )
                return None
        assert isinstance(base, int) and isinstance(size, int)
        if base + size > 1 << 64:
            self.problems.add(
                f"fingerprint: the region [0x{base:x}, +0x{size:x}) exceeds the 64-bit address space"
            )
        return base, size

    def _manifest(self, reader: ArchiveReader) -> Manifest | None:
        raw = self._json(reader, MANIFEST)
        if raw is None:
            return None
        try:
            return Manifest.from_json(raw, set(reader.names))
        except KilnError as e:
            self.problems.add(str(e))
            return None

    def _unreferenced(self, reader: ArchiveReader, manifest: Manifest) -> None:
        used = {FINGERPRINT, MANIFEST}
        used.update(b.section for b in manifest.binaries)
        used.update(g.section for g in manifest.graphs)
        self.unreferenced = [name for name in reader.names if name not in used]

    # -- kernel binaries ----------------------------------------------------------------

    def _binaries(self, reader: ArchiveReader, manifest: Manifest, n: ModuleType) -> None:
        for slot, entry in enumerate(manifest.binaries):
            self.counts["binaries"] += 1
            if entry.section in self._damaged:
                continue
            what = f"binary slot {slot} (section {entry.section!r})"
            with reader.section(entry.section) as view:
                size = len(view)
                digest = hashlib.sha256(view).hexdigest()
                try:
                    kind, claimed = n.validate_image(view)
                except KilnError as e:
                    kind, claimed = None, None
                    self.problems.add(f"{what} is not a valid kernel image: {e}")
            if size != entry.size:
                self.problems.add(f"{what}: holds {size} bytes, the manifest says {entry.size}")
            if digest != entry.sha256:
                self.problems.add(f"{what}: SHA-256 {digest}, the manifest says {entry.sha256}")
            if kind is not None and kind != entry.kind:
                self.problems.add(f"{what}: the image is a {kind}, the manifest says {entry.kind}")
            if claimed is not None and claimed != size:
                self.problems.add(
                    f"{what}: the image's header claims {claimed} bytes, the section holds {size}"
                )

    # -- graphs -------------------------------------------------------------------------

    def _graph(
        self,
        reader: ArchiveReader,
        entry: GraphEntry,
        manifest: Manifest,
        n: ModuleType,
        allocations: Allocations | None,
        library: set[tuple[int, int, int]] | None = None,
    ) -> None:
        self.counts["graphs"] += 1
        if entry.section in self._damaged:
            return
        name = entry.name
        try:
            with reader.section(entry.section) as view:
                desc = n.decode_graph(view)
        except Exception as e:  # noqa: BLE001 - the codec names the defect (ArchiveCorrupt, ...)
            self.problems.add(f"graph {name!r} (section {entry.section!r}) does not decode: {e}")
            return
        if desc.node_count != entry.nodes:
            self.problems.add(
                f"graph {name!r}: the blob has {desc.node_count} nodes, the manifest says "
                f"{entry.nodes}"
            )
        if desc.kernel_count != entry.kernels:
            self.problems.add(
                f"graph {name!r}: the blob has {desc.kernel_count} kernel nodes, the manifest "
                f"says {entry.kernels}"
            )
        nodes = desc.to_dict()["nodes"]
        slots = len(manifest.binaries)
        for index, node in enumerate(nodes):
            if node["type"] != "kernel":
                continue
            self.counts["kernel_nodes"] += 1
            kernel = node["kernel"]
            if kernel["binary"] >= slots:
                self.problems.add(
                    f"graph {name!r} node {index} (kernel {kernel['entry']!r}) uses binary slot "
                    f"{kernel['binary']}, but the archive has {slots} binaries"
                )
        if allocations is not None:
            self.counts["ranges_audited"] += audit_graph(
                name, nodes, entry.inputs, entry.outputs, allocations, self.problems, library or ()
            )
