"""Issue 24: test scaffolding shipped in the runtime. The stand-in driver was linked into
libkiln_preload.so (preloaded into every engine process) with driver injection reachable
from Python (kiln._native.testing), and kiln.workloads (fault injection included) was in
the wheel. The stand-in now lives in a test-only library (tests/native_support) and the
workloads in their own package (./workloads)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import kiln
import pytest
from kiln._paths import preload_library

ROOT = Path(__file__).resolve().parents[2]


def _exported_symbols(library: Path) -> list[str]:
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        ["nm", "-D", "--defined-only", "-C", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split(maxsplit=2)[-1] for line in out.splitlines() if line.strip()]


def test_preload_library_exports_no_fake_driver_or_testing_symbols() -> None:
    library = preload_library()
    assert library.is_file(), library
    symbols = _exported_symbols(library)
    assert any("kiln::driver()" in s for s in symbols)  # the listing is of the right library
    leaked = [s for s in symbols if "fake" in s.lower() or "testing" in s.lower()]
    assert leaked == []


def test_runtime_module_does_not_expose_driver_injection() -> None:
    native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")
    names = [n.lower() for n in dir(native)]
    assert "testing" not in names
    assert not [n for n in names if "fake" in n or "driver_for" in n or "replace_driver" in n]


def test_the_test_library_is_a_separate_module_bound_to_the_same_core() -> None:
    from kiln_testing import testing

    assert Path(testing.__file__).parent.name == "kiln_testing"
    assert Path(testing.__file__).parent != Path(kiln.__file__).parent
    # Its stand-in drives the runtime's own driver table: kiln._native sees it installed.
    native = pytest.importorskip("kiln._native")
    testing.install_fake_driver(granularity=1 << 21)
    try:
        native.region_open(0, 1 << 40, 1 << 25, 0)
        native.region_allocate(0, 5)
        assert testing.fake_driver_stats()["live_mappings"] >= 1
        native.region_close(0)
    finally:
        testing.uninstall_fake_driver()


def test_runtime_package_holds_no_workloads_or_fault_injection() -> None:
    package = Path(kiln.__file__).parent
    assert not (package / "workloads").exists()
    assert importlib.util.find_spec("kiln.workloads") is None
    assert not list(package.rglob("faults.py"))
    assert not list(package.rglob("*fake*"))
    # The source tree the wheel is built from (wheel.packages = core/kiln) agrees.
    if (ROOT / "core" / "kiln").is_dir():
        assert not (ROOT / "core" / "kiln" / "workloads").exists()


def test_kiln_demo_needs_no_workloads() -> None:
    # `kiln demo` runs the runtime's own demo program, not kiln_workloads.
    for module in ("demo.py", "demo_program.py"):
        text = (Path(kiln.__file__).parent / module).read_text()
        assert "import kiln_workloads" not in text and "from kiln_workloads" not in text
