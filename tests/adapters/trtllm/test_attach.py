"""How kiln-trtllm attaches: kiln_trtllm.pth runs in every fresh Python process of the
environment, inert unless `kiln run` set KILN_ENABLE=1; then TensorRT-LLM's modules are
patched as they are imported, and an attach failure follows the policy."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kiln_trtllm", reason="kiln-trtllm is not installed (.ci/run installs it)")

from tests.adapters.trtllm import stand_in_tree
from tests.lifecycle.helpers import kiln_environ

PROBE = (
    "import sys\n"
    "import tensorrt_llm._torch.pyexecutor.cuda_graph_runner as m\n"
    "print('autoload', 'kiln_trtllm.autoload' in sys.modules)\n"
    "print('patched', hasattr(m.CUDAGraphRunner.capture, '__kiln_trtllm_original__'))\n"
)


def _pth_installed() -> bool:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return any((Path(d) / "kiln_trtllm.pth").is_file() for d in dirs)


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if not _pth_installed():
        pytest.skip("kiln_trtllm.pth is not in this interpreter's site-packages")
    src = stand_in_tree.write(tmp_path / "src")
    base = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    full = {**base, "PYTHONPATH": str(src), **env}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=False
    )


def test_outside_kiln_run_the_pth_imports_nothing(tmp_path: Path) -> None:
    proc = _run(tmp_path, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["autoload", "False", "patched", "False"]


def test_under_kiln_run_an_unsupported_version_stops_the_worker_under_strict(
    tmp_path: Path,
) -> None:
    proc = _run(tmp_path, kiln_environ(tmp_path, "save", "strict"))
    assert proc.returncode != 0
    assert "kiln-trtllm cannot attach to TensorRT-LLM" in proc.stderr
    assert "supports TensorRT-LLM ==1.3.0rc24" in proc.stderr


def test_under_kiln_run_an_unsupported_version_stays_native_under_fallback(
    tmp_path: Path,
) -> None:
    proc = _run(tmp_path, kiln_environ(tmp_path, "save", "fallback"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["autoload", "True", "patched", "False"]


def test_under_kiln_run_a_supported_version_is_patched_as_it_is_imported(tmp_path: Path) -> None:
    # The stand-in tree declared as the distribution kiln-trtllm supports.
    info = tmp_path / "src" / "tensorrt_llm-1.3.0rc24.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tensorrt_llm\nVersion: 1.3.0rc24\n", encoding="utf-8"
    )
    proc = _run(tmp_path, kiln_environ(tmp_path, "save", "strict"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["autoload", "True", "patched", "True"]


def test_under_kiln_run_the_pth_imports_no_kiln_module_before_trtllm_loads(
    tmp_path: Path,
) -> None:
    # Every process `kiln run` starts reads the .pth, engine or not: only the standard
    # library and kiln_trtllm's two light modules may load at interpreter start.
    if not _pth_installed():
        pytest.skip("kiln_trtllm.pth is not in this interpreter's site-packages")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(kiln_environ(tmp_path, "save", "strict"))
    code = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('kiln', 'kiln_trtllm')))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['kiln_trtllm', 'kiln_trtllm.autoload']"
