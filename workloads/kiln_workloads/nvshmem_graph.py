"""A one-PE NVSHMEM program that goes through kiln's lifecycle as an engine does, for
`kiln run`:

    kiln run --mode save --policy strict --archive DIR -- python -m PROGRAM --out R.json
    kiln run --mode load --policy strict --archive DIR -- python -m PROGRAM --out R.json

where PROGRAM is kiln_workloads.nvshmem_graph.

It builds kiln's NVSHMEM test kernel (kiln_workloads.nvshmem_build: nvcc, `-rdc=true`,
device-linked with libnvshmem_device), binds its device, allocates its tensors, bootstraps
NVSHMEM (unique-id bootstrap, one PE, no MPI), allocates a symmetric buffer, loads the
kernel's cubin through the driver and initialises it with `nvshmemx_cumodule_init`, reports
NVSHMEM bootstrapped (`collectives_bootstrapped`, where kiln initialises its own copies of
the archive's NVSHMEM modules at LOAD), then captures one graph of the kernel, which reads
and writes the symmetric heap. At LOAD the driver hands back the restored graph instead.

Both modes then write new input values (tensors and the heap's bias), replay the graph, and
run the same kernel eagerly from the program's own module: `bit_exact_vs_native` compares
the output tensor and the whole heap buffer byte for byte. SAVE keeps its replay's bytes
next to the archive; LOAD compares its own with them (`bit_exact_vs_save`).

With KILN_WORKLOADS_NVSHMEM_SKIP_BOOTSTRAP_REPORT=1 the program never reports NVSHMEM
bootstrapped (an environment variable, not a flag: the command line is part of the archive's
fingerprint); kiln must then refuse the restore, and the result holds kiln's error.

The JSON result (`--out`) is written whatever happens, with `step` naming the last step
reached and `error` / `message` / `traceback` on failure. Exit status: 0 success, 1 outputs
differ, 2 an error, 3 kiln stopped the start (policy strict). The process ends with
os._exit once the result is written: NVSHMEM's teardown at interpreter exit is not what this
program checks, and a teardown that hangs would hide the result.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from kiln_workloads import nvshmem_build

KEY = "nvshmem_step"
SKIP_ENV = "KILN_WORKLOADS_NVSHMEM_SKIP_BOOTSTRAP_REPORT"
REFERENCE = "nvshmem-reference.json"
N = 4096
BLOCK = 256
# NVSHMEM settings for one PE on a machine without network; each can be overridden. The
# address-space bound is the one `kiln run` pins (kiln.lifecycle.communication_pins).
NVSHMEM_DEFAULTS = {
    "NVSHMEM_MAX_MEMORY_PER_GPU": "32G",
    "NVSHMEM_REMOTE_TRANSPORT": "none",
    "NVSHMEM_DISABLE_NVLS": "1",
    "NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME": "lo",
    "NVSHMEM_BOOTSTRAP_UID_SOCK_FAMILY": "AF_INET",
}


class ProgramError(RuntimeError):
    """A step of the program failed (not kiln): the message names it."""


class Driver:
    """The CUDA driver calls the program makes itself, through ctypes (the interposer sees
    them as it sees any library's)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libcuda.so.1")

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
            text = name.value.decode() if name.value else "?"
            raise ProgramError(f"{what} failed: CUresult {rc} ({text})")

    def load_module(self, image: bytes) -> ctypes.c_void_p:
        module = ctypes.c_void_p()
        buf = ctypes.create_string_buffer(image, len(image))
        self.check(self.lib.cuModuleLoadData(ctypes.byref(module), buf), "cuModuleLoadData")
        return module

    def function(self, module: ctypes.c_void_p, name: str) -> ctypes.c_void_p:
        fn = ctypes.c_void_p()
        self.check(
            self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()),
            f"cuModuleGetFunction({name})",
        )
        return fn

    def launch(self, fn: ctypes.c_void_p, stream: int, *args: Any) -> None:
        """Launch the step kernel: (x, y, heap, out) device pointers and n."""
        x, y, heap, out, n = args
        values = [
            ctypes.c_void_p(x),
            ctypes.c_void_p(y),
            ctypes.c_void_p(heap),
            ctypes.c_void_p(out),
            ctypes.c_int(n),
        ]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        grid = (n + BLOCK - 1) // BLOCK
        self.check(
            self.lib.cuLaunchKernel(
                fn, grid, 1, 1, BLOCK, 1, 1, 0, ctypes.c_void_p(stream), params, None
            ),
            "cuLaunchKernel",
        )

    def read(self, ptr: int, nbytes: int) -> bytes:
        buf = ctypes.create_string_buffer(nbytes)
        self.check(
            self.lib.cuMemcpyDtoH_v2(buf, ctypes.c_uint64(ptr), ctypes.c_size_t(nbytes)),
            "cuMemcpyDtoH",
        )
        return buf.raw

    def write(self, ptr: int, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        self.check(
            self.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(ptr), buf, ctypes.c_size_t(len(data))),
            "cuMemcpyHtoD",
        )


class Nvshmem:
    """NVSHMEM's host library, loaded into the global scope (as kiln finds it), and the shim."""

    def __init__(self, built: nvshmem_build.Built) -> None:
        try:
            self.host = ctypes.CDLL(built.host_library, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise ProgramError(f"loading {built.host_library} failed: {err}") from err
        try:
            self.shim = ctypes.CDLL(built.shim, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise ProgramError(f"loading the host shim {built.shim} failed: {err}") from err
        self.host.nvshmem_malloc.restype = ctypes.c_void_p
        self.host.nvshmem_malloc.argtypes = [ctypes.c_size_t]
        self.shim.kiln_nvshmem_module_init.argtypes = [ctypes.c_void_p]

    def bootstrap(self) -> tuple[int, int]:
        step = ctypes.c_int(0)
        rc = self.shim.kiln_nvshmem_bootstrap(ctypes.byref(step))
        if rc != 0:
            name = nvshmem_build.STEPS.get(step.value, f"step {step.value}")
            raise ProgramError(f"NVSHMEM bootstrap failed in {name}: status {rc}")
        count, mine = int(self.host.nvshmem_n_pes()), int(self.host.nvshmem_my_pe())
        if (count, mine) != (1, 0):
            raise ProgramError(
                f"NVSHMEM runs {count} PEs with this one as PE {mine}; expected 1, 0"
            )
        return count, mine

    def malloc(self, nbytes: int) -> int:
        ptr = self.host.nvshmem_malloc(nbytes)
        if not ptr:
            raise ProgramError(f"nvshmem_malloc({nbytes}) returned NULL")
        return int(ptr)

    def module_init(self, module: ctypes.c_void_p) -> None:
        rc = self.shim.kiln_nvshmem_module_init(module)
        if rc != 0:
            raise ProgramError(f"nvshmemx_cumodule_init failed: status {rc}")


def kiln_run(
    mode: str, archive: Path, out: Path, build_dir: Path, arch: str, *, skip_report: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start this program under `kiln run --mode MODE
    --policy strict`, built in `build_dir` for `arch`; with `skip_report`, the program never
    reports NVSHMEM bootstrapped. The program's result goes to `out` (removed first)."""
    env = {
        **os.environ,
        nvshmem_build.BUILD_DIR_ENV: str(build_dir),
        nvshmem_build.ARCH_ENV: arch,
    }
    env.pop(SKIP_ENV, None)
    if skip_report:
        env[SKIP_ENV] = "1"
    out.unlink(missing_ok=True)
    kiln = [sys.executable, "-m", "kiln.cli", "run", "--mode", mode, "--policy", "strict"]
    program = [sys.executable, "-m", "kiln_workloads.nvshmem_graph", "--out", str(out)]
    return [*kiln, "--archive", str(archive), "--", *program], env


def _floats(seed: int, n: int, scale: float = 1.0) -> Any:
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float32) * scale


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Program:
    def __init__(self, n: int) -> None:
        self.n = n
        self.result: dict[str, Any] = {"ok": False, "step": "start", "timings": {}, "n": n}
        self._t = time.perf_counter()

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.result["timings"][self.result["step"]] = round(now - self._t, 6)
        self._t = now
        self.result["step"] = name
        print(f"nvshmem-graph: {name}", file=sys.stderr, flush=True)

    # --- the workload -------------------------------------------------------------------
    def fill(self, seed: int) -> None:
        """New input values: x and y, the heap's bias; the rest of the heap and out zeroed."""
        import torch

        n = self.n
        self.x.copy_(_floats(seed, n).cuda())
        self.y.copy_(_floats(seed + 1, n).cuda())
        self.out.zero_()
        torch.cuda.synchronize()
        bias = _floats(seed + 2, n, 0.5)
        self.cuda.write(self.heap, _tensor_bytes(bias) + bytes(8 * n))
        torch.cuda.synchronize()

    def launch(self, stream: int) -> None:
        self.cuda.launch(
            self.fn,
            stream,
            self.x.data_ptr(),
            self.y.data_ptr(),
            self.heap,
            self.out.data_ptr(),
            self.n,
        )

    def snapshot(self) -> dict[str, bytes]:
        import torch

        torch.cuda.synchronize()
        out = self.cuda.read(self.out.data_ptr(), 4 * self.n)
        heap = self.cuda.read(self.heap, 12 * self.n)
        return {"out": out, "heap": heap}

    def run(self, args: argparse.Namespace) -> int:
        r = self.result
        skip_report = os.environ.get(SKIP_ENV) == "1"
        r["skip_bootstrap_report"] = skip_report
        for k, v in NVSHMEM_DEFAULTS.items():
            os.environ.setdefault(k, v)
        r["nvshmem_env"] = {k: v for k, v in sorted(os.environ.items()) if k.startswith("NVSHMEM_")}

        self.step("build")
        built = nvshmem_build.build(build_dir=args.build_dir)
        r["build"] = built.as_dict()

        self.step("lifecycle_start")
        import torch
        from kiln import lifecycle
        from kiln.lifecycle.types import RunMode

        driver = lifecycle.start("kiln-nvshmem-graph")
        self.step("device_bound")
        driver.device_bound(0)
        r["mode"] = driver.ctx.mode.value

        self.step("allocate_tensors")
        n = self.n
        self.x = torch.zeros(n, dtype=torch.float32, device="cuda:0")
        self.y = torch.zeros(n, dtype=torch.float32, device="cuda:0")
        self.out = torch.zeros(n, dtype=torch.float32, device="cuda:0")
        torch.cuda.synchronize()
        r["device_name"] = torch.cuda.get_device_name(0)
        self.cuda = Driver()

        self.step("nvshmem_bootstrap")
        shmem = Nvshmem(built)
        r["pes"] = shmem.bootstrap()
        self.step("nvshmem_malloc")
        self.heap = shmem.malloc(12 * n)
        r["heap"] = hex(self.heap)

        self.step("module_load")
        image = Path(built.cubin).read_bytes()
        module = self.cuda.load_module(image)
        self.fn = self.cuda.function(module, nvshmem_build.KERNEL_NAME)
        self.step("nvshmem_cumodule_init")
        shmem.module_init(module)

        self.step("weights_loaded")
        driver.weights_loaded()
        if skip_report:
            self.step("collectives_bootstrapped_skipped")
        else:
            self.step("collectives_bootstrapped")
            driver.collectives_bootstrapped()

        self.step("warm_launch")
        # One eager launch before capture, as engines warm up; same allocations in every mode.
        self.fill(1)
        self.launch(torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()

        self.step("capture_begin")
        driver.capture_begin([KEY])

        def capture() -> tuple[Any, ...]:
            cg = torch.cuda.CUDAGraph()
            # Thread-local: NVSHMEM's own threads may call CUDA while this thread captures.
            with torch.cuda.graph(cg, capture_error_mode="thread_local"):
                self.launch(torch.cuda.current_stream().cuda_stream)
            return (cg, self.out)

        self.step("capture_graph")
        graph = driver.capture_graph(KEY, capture)
        self.step("capture_end")
        driver.capture_end()
        self.step("region_close")
        driver.region_close()
        self.step("ready")
        report = driver.ready()
        if report is not None:
            rep = report.as_dict()
            r["report"] = {k: rep.get(k) for k in ("outcome", "graphs_captured", "graphs_restored")}
        mode = driver.ctx.mode

        self.step("replay")
        restored = not isinstance(graph, tuple)
        r["restored"] = restored
        if restored:
            outputs = getattr(graph, "outputs", [])
            r["restored_output_at_own_out"] = (
                bool(outputs) and outputs[0].data_ptr() == self.out.data_ptr()
            )
        self.fill(7)
        t = time.perf_counter()
        if restored:
            graph.replay()
        else:
            graph[0].replay()
        torch.cuda.synchronize()
        r["first_replay_seconds"] = time.perf_counter() - t
        replayed = self.snapshot()

        self.step("native")
        self.fill(7)
        self.launch(torch.cuda.current_stream().cuda_stream)
        native = self.snapshot()

        self.step("compare")
        r["digests"] = {k: _digest(v) for k, v in replayed.items()}
        r["native_digests"] = {k: _digest(v) for k, v in native.items()}
        r["bit_exact_vs_native"] = replayed == native
        zero_out = replayed["out"] == bytes(len(replayed["out"]))
        put = replayed["heap"][4 * n : 8 * n]
        r["graph_wrote_outputs"] = not zero_out and put != bytes(len(put))
        bit_exact = r["bit_exact_vs_native"] and r["graph_wrote_outputs"]
        archive_dir = driver.ctx.archive_dir
        if archive_dir is not None and mode is RunMode.SAVE:
            encoded = {k: base64.b64encode(v).decode() for k, v in replayed.items()}
            (Path(archive_dir) / REFERENCE).write_text(json.dumps(encoded))
        elif archive_dir is not None and mode is RunMode.LOAD:
            saved = json.loads((Path(archive_dir) / REFERENCE).read_text())
            reference = {k: base64.b64decode(v) for k, v in saved.items()}
            r["bit_exact_vs_save"] = reference == replayed
            bit_exact = bit_exact and r["bit_exact_vs_save"]
        r["bit_exact"] = bit_exact
        r["ok"] = bit_exact
        self.step("done")
        return 0 if bit_exact else 1


def _tensor_bytes(t: Any) -> bytes:
    """A CPU float tensor's bytes (no numpy needed)."""
    t = t.contiguous()
    nbytes = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), nbytes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, type=Path, help="write the JSON result here")
    p.add_argument("--build-dir", type=Path, default=None, help="nvshmem_build's cache")
    p.add_argument("--n", type=int, default=N)
    args = p.parse_args(argv)
    program = Program(args.n)
    r = program.result
    code = 2
    try:
        code = program.run(args)
    except Exception as err:  # noqa: BLE001 (every cause is reported in the result)
        cause: BaseException = err
        try:
            from kiln.lifecycle import StageFailed

            if isinstance(err, StageFailed):
                cause = err.cause
                r["kiln_stage"] = err.stage
                code = 3
        except ImportError:
            pass
        r["ok"] = False
        r["error"] = type(cause).__name__
        r["message"] = str(cause)
        r["traceback"] = traceback.format_exc()
        print(
            f"nvshmem-graph: failed at {r['step']}: {r['error']}: {r['message']}", file=sys.stderr
        )
    r["exit_code"] = code
    text = json.dumps(r, indent=1, default=str)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    except OSError as err:
        print(f"nvshmem-graph: cannot write {args.out}: {err}", file=sys.stderr)
    print("NVSHMEM-GRAPH-RESULT " + json.dumps(r, default=str), flush=True)
    return code


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
