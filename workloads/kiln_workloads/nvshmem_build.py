"""Build kiln's NVSHMEM test kernel on the machine that runs it, with its nvcc and the
NVSHMEM of its `nvidia-nvshmem-cu13` wheel (or NVSHMEM_HOME).

Two artifacts, cached by everything that goes into them (sources, GPU architecture, nvcc's
version, NVSHMEM's files):

- `kernel.cubin`: the kernel compiled with relocatable device code (`-rdc=true`) and
  device-linked against `libnvshmem_device.a` into one executable cubin. The program loads it
  with the driver (`cuModuleLoadData`), so kiln's interposer records it, and hands the module
  to NVSHMEM (`nvshmemx_cumodule_init`), which fills the module's own copy of NVSHMEM's device
  state (`nvshmemi_device_state_d`).
- `libkiln_nvshmem_host.so`: a small host shim compiled against NVSHMEM's headers, so the
  bootstrap structures (`nvshmemx_uniqueid_t`, `nvshmemx_init_attr_t`) come from the headers'
  own initialisers whatever NVSHMEM version is installed. It leaves NVSHMEM's symbols
  undefined: the program loads `libnvshmem_host.so.3` into the global scope first.

    python -m kiln_workloads.nvshmem_build [--build-dir DIR] [--arch sm_90]

prints a JSON line (`ok`, the artifacts' paths, or `error` and the failing step's output).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

KERNEL_NAME = "kiln_nvshmem_step"
STATE_SYMBOL = b"nvshmemi_device_state_d\0"
DISTRIBUTION = "nvidia-nvshmem-cu13"
HOST_LIBRARY = "libnvshmem_host.so.3"
DEVICE_LIBRARY = "libnvshmem_device.a"
BUILD_DIR_ENV = "KILN_WORKLOADS_NVSHMEM_BUILD_DIR"
ARCH_ENV = "KILN_WORKLOADS_NVSHMEM_ARCH"

# heap: [0, n) a bias the host writes before each replay, [n, 2n) the target of an NVSHMEM
# put to this PE, [2n, 3n) a plain store. Every thread reads the heap through NVSHMEM (get),
# writes it through NVSHMEM (put), reads its put back, and stores into it directly; the
# output also depends on the PE id and count, read from NVSHMEM's device state.
KERNEL_SOURCE = r"""
#include <nvshmem.h>
#include <nvshmemx.h>

extern "C" __global__ void kiln_nvshmem_step(const float* x, const float* y, float* heap,
                                             float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int pe = nvshmem_my_pe();
  float bias = nvshmem_float_g(heap + i, pe);
  float v = x[i] * 1.5f + y[i] * bias;
  nvshmem_float_p(heap + n + i, v, pe);
  nvshmem_quiet();
  float back = nvshmem_float_g(heap + n + i, pe);
  heap[2 * n + i] = back - bias;
  out[i] = back + (float)(pe + 2 * nvshmem_n_pes());
}
"""

# One process, one PE, bootstrapped with NVSHMEM's unique-id bootstrap (no MPI, no launcher).
# nvshmemx_init_attr is a header-inline wrapper around nvshmemi_init_thread, which lives in
# libnvshmem_device.a's host part and also initialises a module the CUDA runtime registered;
# this program has none (its kernels come from a driver-loaded cubin initialised with
# nvshmemx_cumodule_init), so it calls the host library's exported nvshmemx_hostlib_init_attr.
SHIM_SOURCE = r"""
#include <nvshmem.h>
#include <nvshmemx.h>

extern "C" {

// Returns 0, or the failing call's status with *step naming it (1 get_uniqueid,
// 2 set_attr_uniqueid_args, 3 hostlib_init_attr).
int kiln_nvshmem_bootstrap(int* step) {
  nvshmemx_uniqueid_t id = NVSHMEMX_UNIQUEID_INITIALIZER;
  nvshmemx_init_attr_t attr = NVSHMEMX_INIT_ATTR_INITIALIZER;
  *step = 1;
  int rc = nvshmemx_get_uniqueid(&id);
  if (rc != 0) return rc;
  *step = 2;
  rc = nvshmemx_set_attr_uniqueid_args(0, 1, &id, &attr);
  if (rc != 0) return rc;
  *step = 3;
  rc = nvshmemx_hostlib_init_attr(NVSHMEMX_INIT_WITH_UNIQUEID, &attr);
  if (rc != 0) return rc;
  *step = 0;
  return 0;
}

int kiln_nvshmem_module_init(void* module) {
  return nvshmemx_cumodule_init(static_cast<CUmodule>(module));
}

}  // extern "C"
"""

STEPS = {
    1: "nvshmemx_get_uniqueid",
    2: "nvshmemx_set_attr_uniqueid_args",
    3: "nvshmemx_hostlib_init_attr",
}


class BuildError(RuntimeError):
    """The kernel or the shim could not be built; the message names the step and its output."""


@dataclass(frozen=True)
class Nvshmem:
    root: str
    include: str
    lib: str
    host_library: str
    device_library: str
    version: str


@dataclass(frozen=True)
class Built:
    cubin: str
    shim: str
    host_library: str
    arch: str
    nvshmem_version: str
    nvshmem_root: str
    nvcc: str
    build_dir: str
    cached: bool
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _nvshmem_roots() -> list[tuple[str, Path]]:
    roots: list[tuple[str, Path]] = []
    home = os.environ.get("NVSHMEM_HOME")
    if home:
        roots.append(("NVSHMEM_HOME", Path(home)))
    try:
        spec = importlib.util.find_spec("nvidia.nvshmem")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for location in spec.submodule_search_locations or ():
            roots.append(("import nvidia.nvshmem", Path(location)))
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
        roots.append(
            (f"the {DISTRIBUTION} distribution", Path(str(dist.locate_file("nvidia/nvshmem"))))
        )
    except importlib.metadata.PackageNotFoundError:
        pass
    return roots


def _version(root: Path) -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    header = root / "include" / "non_abi" / "nvshmem_version.h"
    try:
        fields = {}
        for line in header.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("NVSHMEM_VENDOR_"):
                fields[parts[1]] = parts[2]
        return ".".join(
            fields.get(f"NVSHMEM_VENDOR_{k}_VERSION", "?") for k in ("MAJOR", "MINOR", "PATCH")
        )
    except OSError:
        return "unknown"


def find_nvshmem() -> Nvshmem:
    """NVSHMEM's headers and libraries: NVSHMEM_HOME, else the installed wheel. Raises
    BuildError listing every place looked at and what each lacked."""
    looked: list[str] = []
    for how, root in _nvshmem_roots():
        include, lib = root / "include", root / "lib"
        missing = [
            str(p)
            for p in (
                include / "nvshmem.h",
                include / "nvshmemx.h",
                lib / HOST_LIBRARY,
                lib / DEVICE_LIBRARY,
            )
            if not p.is_file()
        ]
        if missing:
            looked.append(f"{root} ({how}): missing {', '.join(missing)}")
            continue
        return Nvshmem(
            str(root),
            str(include),
            str(lib),
            str(lib / HOST_LIBRARY),
            str(lib / DEVICE_LIBRARY),
            _version(root),
        )
    where = "; ".join(looked) if looked else "no NVSHMEM_HOME, no importable nvidia.nvshmem"
    raise BuildError(
        f"NVSHMEM not found ({where}): install {DISTRIBUTION} or set NVSHMEM_HOME to a "
        f"directory with include/nvshmem.h, lib/{HOST_LIBRARY} and lib/{DEVICE_LIBRARY}"
    )


def find_nvcc() -> str:
    """nvcc: $NVCC, then PATH, then $CUDA_HOME/bin, then /usr/local/cuda/bin."""
    candidates = [os.environ.get("NVCC"), shutil.which("nvcc")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(str(Path(os.environ[var]) / "bin" / "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise BuildError("nvcc not found ($NVCC, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")


def unavailable_reason() -> str | None:
    """Why the kernel cannot be built here (no NVSHMEM, no nvcc), or None. Needs no GPU."""
    try:
        find_nvshmem()
        find_nvcc()
    except BuildError as err:
        return str(err)
    return None


def device_arch(device: int = 0) -> str:
    """`sm_XY` of the GPU (KILN_WORKLOADS_NVSHMEM_ARCH overrides)."""
    if os.environ.get(ARCH_ENV):
        return os.environ[ARCH_ENV]
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def default_build_dir() -> Path:
    if os.environ.get(BUILD_DIR_ENV):
        return Path(os.environ[BUILD_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kiln" / "nvshmem-graph"


def _run(step: str, argv: list[str], cwd: Path) -> None:
    print(f"nvshmem-build: {step}: {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BuildError(f"{step} could not run ({err}): {' '.join(argv)}") from err
    if proc.returncode != 0:
        raise BuildError(
            f"{step} failed (rc {proc.returncode}): {' '.join(argv)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )


def _nvcc_version(nvcc: str) -> str:
    try:
        out = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BuildError(f"{nvcc} --version could not run: {err}") from err
    if out.returncode != 0:
        raise BuildError(f"{nvcc} --version failed (rc {out.returncode}): {out.stderr[-2000:]}")
    return out.stdout.strip()


def _key(nvshmem: Nvshmem, arch: str, nvcc_version: str) -> str:
    h = hashlib.sha256()
    for part in (KERNEL_SOURCE, SHIM_SOURCE, arch, nvcc_version, nvshmem.root, nvshmem.version):
        h.update(part.encode())
        h.update(b"\0")
    for path in (nvshmem.device_library, nvshmem.host_library):
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def _check_cubin(path: Path) -> None:
    data = path.read_bytes()
    problems = []
    if not data.startswith(b"\x7fELF"):
        problems.append("it is not an ELF cubin")
    if KERNEL_NAME.encode() + b"\0" not in data:
        problems.append(f"it has no {KERNEL_NAME}")
    if STATE_SYMBOL not in data:
        problems.append("it holds no nvshmemi_device_state_d (not device-linked with NVSHMEM)")
    if problems:
        raise BuildError(f"the linked cubin {path} is unusable: {'; '.join(problems)}")


def build(arch: str | None = None, build_dir: Path | None = None) -> Built:
    """Build (or find in the cache) the cubin and the host shim; BuildError names the step."""
    import time

    started = time.perf_counter()
    nvshmem = find_nvshmem()
    nvcc = find_nvcc()
    arch = arch or device_arch()
    if not arch.startswith(("sm_", "compute_")):
        raise BuildError(f"GPU architecture {arch!r} is not of the form sm_XY")
    key = _key(nvshmem, arch, _nvcc_version(nvcc))
    base = build_dir or default_build_dir()
    final = base / key
    cubin, shim = final / "kernel.cubin", final / "libkiln_nvshmem_host.so"
    cached = cubin.is_file() and shim.is_file()
    if not cached:
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=base))
        (work / "kernel.cu").write_text(KERNEL_SOURCE)
        (work / "shim.cpp").write_text(SHIM_SOURCE)
        inc = f"-I{nvshmem.include}"
        _run(
            "compile the kernel (-rdc=true)",
            [
                nvcc,
                f"-arch={arch}",
                "-rdc=true",
                "-std=c++17",
                "-O2",
                inc,
                "-c",
                "kernel.cu",
                "-o",
                "kernel.o",
            ],
            work,
        )
        _run(
            "device-link the kernel with libnvshmem_device into a cubin",
            [nvcc, f"-arch={arch}", "-dlink", "-cubin", "kernel.o", f"-L{nvshmem.lib}",
             "-lnvshmem_device", "-o", "kernel.cubin"],
            work,
        )  # fmt: skip
        _check_cubin(work / "kernel.cubin")
        _run(
            "compile the host shim",
            [nvcc, "-x", "c++", "-shared", "-Xcompiler", "-fPIC", "-cudart", "none", "-std=c++17",
             inc, "shim.cpp", "-o", "libkiln_nvshmem_host.so"],
            work,
        )  # fmt: skip
        try:
            work.rename(final)
        except OSError:
            # Another process built the same key meanwhile: use its copy.
            shutil.rmtree(work, ignore_errors=True)
            if not (cubin.is_file() and shim.is_file()):
                raise BuildError(f"could not move the build into {final}") from None
    _check_cubin(cubin)
    return Built(
        str(cubin),
        str(shim),
        nvshmem.host_library,
        arch,
        nvshmem.version,
        nvshmem.root,
        nvcc,
        str(final),
        cached,
        time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--build-dir", type=Path, default=None)
    p.add_argument(
        "--arch", default=None, help="sm_XY (default: the GPU's, or $KILN_WORKLOADS_NVSHMEM_ARCH)"
    )
    args = p.parse_args(argv)
    try:
        built = build(args.arch, args.build_dir)
    except BuildError as err:
        print(json.dumps({"ok": False, "error": "BuildError", "message": str(err)}), flush=True)
        return 1
    print(json.dumps({"ok": True, **built.as_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
