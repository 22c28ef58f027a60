"""
kiln's native core: interposer state, deterministic regions, binaries, graphs.
"""

# Types of the nanobind module kiln._native (native/src/bind/module.cpp), first written by
# `python -m nanobind.stubgen -m kiln._native`, then given element types where the binding
# returns a bare list/dict/tuple. Its `testing` submodule (test builds only) is not part of
# the public surface. tests/test_native_stub.py checks the stub names what the module has.

from collections.abc import Sequence
from typing import Any

import torch

def interposer_installed() -> bool:
    """
    True when libkiln_preload.so was loaded through LD_PRELOAD (its dlsym is the process's).
    """

def set_enabled(enabled: bool) -> None: ...
def enabled() -> bool: ...
def take_last_hook_error() -> str:
    """
    The first error a driver wrapper could only report as a CUresult, then cleared.
    """

def set_log_level(arg: str, /) -> None: ...
def hook_table() -> list[tuple[str, int, bool, str, bool]]:
    """
    (base, version, per_thread, exported symbol, bound) for every wrapped driver entry point.
    """

def driver_available() -> bool: ...
def driver_version() -> int: ...
def ensure_context(device: int) -> int:
    """Initialise the driver and bind the primary context."""

def region_open(device: int, base: int, size: int, prealloc: int = 0, library_slot: int = 0) -> int:
    """
    Reserve the region, with a slot of `library_slot` bytes per communication library at its
    top; returns the granularity.
    """

def region_close(device: int) -> None: ...
def region_exists(device: int) -> bool: ...
def region_info(device: int) -> dict[str, Any]: ...
def region_suspend(device: int) -> None: ...
def region_resume(device: int) -> None: ...
def region_set_cursor(device: int, offset: int) -> None: ...
def region_allocate(device: int, bytes: int) -> int:
    """A backed allocation made by kiln itself (recorded as kind 3)."""

def region_release(device: int, address: int) -> bool: ...
def synchronize_device(device: int) -> None:
    """Wait until all work on the device's primary context has completed."""

def region_is_backed(device: int, address: int, length: int) -> bool: ...
def region_is_live(device: int, address: int) -> bool:
    """Whether a live allocation or reservation covers the address."""

def region_trajectory(device: int) -> list[tuple[int, int, int]]:
    """[(offset, size, kind)] of every allocation in order."""

def region_compare_prefix(
    device: int, expected: Sequence[tuple[int, int, int]]
) -> dict[str, Any] | None:
    """None, or the first divergence {index, expected, actual}."""

def region_library_slots(device: int) -> list[tuple[str, int, int]]:
    """
    [(library, offset from the base, size)] of each library's slot; empty without slots.
    """

def region_library_trajectory(device: int, library: str) -> list[tuple[int, int, int]]:
    """
    [(offset from the slot's start, size, kind)] of the library's requests in order.
    """

def library_mappings() -> list[dict[str, Any]]:
    """
    The communication libraries' live mappings in the order they were made: {library, class,
    slot, offset, size, address, in_capture}.
    """

def library_capture_events() -> list[tuple[str, str, int]]:
    """
    [(library, driver call, bytes)] of each library call made while a graph capture was in
    progress.
    """

def set_capture_open(open: bool) -> None:
    """
    Marks a graph capture in progress (library mappings made meanwhile are refused at SAVE).
    """

def capture_open() -> bool: ...
def library_mapping_exports() -> int:
    """How many physical handles were exported as shareable handles."""

def mappings_cover(address: int, length: int) -> bool:
    """Whether live mappings the interposer saw cover the range without a gap."""

def multicast_ranges() -> list[tuple[str, int, int]]:
    """
    [(who, address, size)] of everything a multicast object reaches: multicast mappings,
    mappings of memory bound to one, ranges bound by address; who is a library or 'engine'.
    """

def set_verified_library_ranges(ranges: Sequence[tuple[str, int, int]]) -> None:
    """
    The library mappings [(library, address, size)] LOAD verified against SAVE's record;
    graph pointers into a library slot must lie in one of them (replaces the earlier set).
    """

def binary_count() -> int: ...
def binary_info(id: int) -> dict[str, Any]: ...
def binary_bytes(id: int) -> bytes: ...
def binary_globals(id: int) -> list[str]:
    """
    The module globals of a recorded binary whose addresses the application obtained (sorted).
    """

def event_violation() -> str:
    """
    The first use outside its graph of an event a walked graph records or waits on ('' when none).
    """

def binary_loaded(id: int) -> bool: ...
def record_image(image: object, origin: str = "test") -> int: ...
def validate_image(image: object) -> tuple[str, int]:
    """
    (kind, size) an image's own header claims; raises ArchiveCorrupt if it does not fit.
    """

def compare_kernel_images(original: bytes, candidate: bytes, entries: Sequence[str]) -> str | None:
    """
    None when the candidate image gives the driver the same kernels `entries` (every function attribute and the parameter layout, resolved in the current context) as the original; else what differs first, or the driver's refusal of the candidate.
    """

class GraphDesc:
    @property
    def node_count(self) -> int: ...
    @property
    def edge_count(self) -> int: ...
    @property
    def kernel_count(self) -> int: ...
    @property
    def param_bytes(self) -> int:
        """
        Bytes of per-node parameters (kernel arguments, memset and memcpy operands).
        """

    def binaries(self) -> list[int]:
        """Distinct binary ids (or slots) used by kernel nodes."""

    def kernels(self) -> list[tuple[int, str]]:
        """(binary, entry) of every kernel node, in node order."""

    def region_pointers(self) -> list[int]: ...
    def pointers_between(self, begin: int, end: int) -> list[tuple[int, int, int, str]]:
        """
        [(node, argument byte, address, kernel entry)] of every kernel argument pointer in [begin, end), in node order.
        """

    def encode(self, old_ids: Sequence[int] = ..., new_ids: Sequence[int] = ...) -> bytes:
        """
        The blob; kernel binary ids in old_ids are renamed to new_ids (all ids when non-empty).
        """

    def to_dict(self) -> dict[str, Any]: ...
    @staticmethod
    def from_dict(d: dict[str, Any]) -> GraphDesc: ...

def decode_graph(data: object) -> GraphDesc:
    """Decode a graph blob; raises ArchiveCorrupt naming the defect."""

def blob_kernels(data: object) -> list[tuple[int, str]]:
    """
    (binary slot, entry) of each kernel shape a graph blob names, read without decoding its nodes; raises ArchiveCorrupt like decode_graph.
    """

def plan_families(templates: Sequence[GraphDesc]) -> list[tuple[list[int], int, list[list[int]]]]:
    """
    The families LOAD would plan, without a cap, for one template graph per topology group (in group order), as the manifest records them: (groups, slots, runs), runs per group as flat (node, slot, count) triples; slots 0 for a family of one group.
    """

def topology_signature(desc: GraphDesc) -> bytes:
    """Bytes equal for graphs that one instantiated template can serve."""

def group_by_signature(signatures: Sequence[bytes], hashes: Sequence[int]) -> list[int]:
    """
    Each graph's topology group as LOAD assigns it (numbered by first graph), from its signature and the signature's hash: equal hashes are confirmed byte for byte.
    """

def topology_difference(a: GraphDesc, b: GraphDesc) -> str:
    """Why two graphs cannot share a template, in words; empty when they can."""

def differing_nodes(a: GraphDesc, b: GraphDesc) -> list[int]:
    """
    Nodes whose updatable parameters differ between two graphs of one topology.
    """

def capture_recorder_arm(device: int) -> None:
    """
    Record (walk and audit) every graph whose stream capture ends from now on.
    """

def capture_recorder_disarm() -> None: ...
def capture_recorder_take() -> list[GraphDesc]:
    """
    Disarm; the graphs recorded since arming, or the first error met recording them.
    """

class GraphSet:
    def __init__(
        self,
        blobs: Sequence[object],
        kernels: KernelTable,
        device: int,
        threads: int = 4,
        family_groups: int = 0,
        verifier: SectionVerifier | None = None,
        items: Sequence[int] = ...,
        families: Sequence[tuple[Sequence[int], int, Sequence[Sequence[int]]]] = ...,
    ) -> None:
        """
        Decode, group and prepare every graph blob (the blobs are copied; blob i once the verifier's item items[i] passed). Topology groups that differ in a few nodes share one template, at most `family_groups` groups each (1: none; 0: no cap). `families`: the plan SAVE recorded (as plan_families returns it, groups named by their template's blob index), checked and used when there is no cap.
        """

    def start(self, dedicated: bool = True) -> None:
        """
        Background builds: templates, then one executable per graph if `dedicated`.
        """

    def wait(self, index: int, dedicated: bool = False) -> None: ...
    def wait_all(self, dedicated: bool = False) -> None: ...
    def launch(self, index: int, stream: int) -> None: ...
    def launch_template(self, index: int, stream: int) -> None: ...
    def start_dedicated(self) -> None:
        """
        Let the own executables start building (the templates' builds uploaded them already).
        """

    def timings(self) -> dict[str, dict[str, float]]:
        """
        {category: {sum, wall, count}} seconds: decode, families, updates, templates.* and dedicated.* (task, kernels, check, build, instantiate; templates also upload and member_kernels); templates.all runs from start() to the last template.
        """

    def __len__(self) -> int: ...
    @property
    def group_count(self) -> int: ...
    def group_of(self, index: int) -> int: ...
    def template_of(self, group: int) -> int: ...
    def differing_from_template(self, index: int) -> int:
        """Nodes whose parameters differ from the group's template."""

    @property
    def family_count(self) -> int:
        """Templates instantiated: one per family of groups."""

    def family_of_group(self, group: int) -> int: ...
    @property
    def families_recorded(self) -> bool:
        """
        Whether the families are the archive's recorded plan (checked) rather than planned at LOAD.
        """

    def family_slots(self, family: int) -> int:
        """Nodes of the family's template."""

    def switch_nodes(self, index: int) -> int:
        """
        Template nodes that replaying graph `index` changes (updated or disabled).
        """

    def has_dedicated(self, index: int) -> bool: ...
    def node_count(self, index: int) -> int: ...
    @property
    def switches(self) -> int: ...

def sha256_available() -> bool:
    """Whether native threads can hash (libcrypto was found)."""

def sha256(buffer: object) -> bytes:
    """
    SHA-256 digest of a buffer, hashed by the native path section verification uses.
    """

class SectionVerifier:
    def __init__(
        self,
        buffers: Sequence[object],
        digests: Sequence[bytes],
        names: Sequence[str],
        archive: str,
        threads: int,
    ) -> None:
        """
        Start hashing the buffers on `threads` native threads, in order; item i of the gate that make_kernel_table, GraphSet and KernelTable.resolve_in_background take is buffers[i].
        """

    def __len__(self) -> int: ...
    def wait_all(self) -> None:
        """
        Block until every section is hashed; raises ArchiveCorrupt for the first that does not match.
        """

def walk_graph(graph: int, device: int) -> GraphDesc:
    """Describe a captured CUgraph (its raw handle), auditing every address."""

class KernelTable:
    def __len__(self) -> int: ...
    def wait_loaded(self) -> None:
        """Block until every binary is loaded; raises the lowest slot's failure."""

    @property
    def loader_threads(self) -> int: ...
    def library(self, slot: int) -> int | None:
        """The CUlibrary kiln loaded from the archive for a binary slot, or None when the slot
        runs from the application's own module."""

    def resolve_in_background(
        self,
        threads: int,
        blobs: Sequence[object] = ...,
        verifier: SectionVerifier | None = None,
        items: Sequence[int] = ...,
    ) -> None:
        """
        Resolve every planned kernel on `threads` background threads; once. With `blobs` (graph blobs, blob i read once the verifier's item `items[i]` passed), first plan the kernels their shape tables name, so resolution starts before the graphs decode. Failures are raised where a graph needs the kernel.
        """

    def wait_background(self) -> None:
        """Join the background resolvers (every planned kernel taken)."""

    def timings(self) -> dict[str, dict[str, float]]:
        """
        {category: {sum, wall, count}} seconds: binaries.load (each image), binaries.all (start to last image), kernels.resolve (each function's lookup and attributes), kernels.background (resolve_in_background until its threads found nothing left).
        """

def make_kernel_table(
    sources: Sequence[object],
    app_binaries: Sequence[int],
    device: int = -1,
    threads: int = 0,
    verifier: SectionVerifier | None = None,
    items: Sequence[int] = ...,
) -> KernelTable:
    """
    Kernels for an archive's graphs. threads > 0 loads the binaries on that many background threads (bound to device's primary context) and returns at once; failures surface where a binary is needed or at wait_loaded. device < 0: use the calling thread's current context. With a verifier (SectionVerifier), source i is read only once the verifier's item items[i] passed.
    """

class BuiltGraph:
    def launch(self, stream: int) -> None: ...
    def upload(self, stream: int) -> None: ...
    @property
    def node_count(self) -> int: ...

def build_graph(desc: GraphDesc, kernels: KernelTable, device: int) -> BuiltGraph: ...
def cuda_tensor(
    ptr: int,
    shape: Sequence[int],
    strides: Sequence[int],
    code: int,
    bits: int,
    device: int,
    owner: object,
) -> torch.Tensor:
    """
    A torch tensor aliasing device memory at ptr (strides in elements), keeping owner alive.
    """
