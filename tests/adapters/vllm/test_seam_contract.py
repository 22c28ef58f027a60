"""The seam contract: the vLLM symbols kiln-vllm attaches to must be where, and as, it
expects. Against the installed vLLM when there is one (the GPU machine's bundle), against a
source tree named by KILN_VLLM_SOURCE, and the checker itself on stand-in trees."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("kiln_vllm", reason="kiln-vllm is not installed (.ci/run installs it)")

from kiln_vllm.seams import SEAMS, Seam, check_installed, check_source


def test_installed_vllm_matches_the_contract() -> None:
    pytest.importorskip(
        "vllm", reason="vLLM is not installed here (the GPU machine's bundle has it)"
    )
    assert check_installed() == []


@pytest.fixture
def vllm_source() -> Path:
    root = os.environ.get("KILN_VLLM_SOURCE")
    if not root:
        pytest.skip("KILN_VLLM_SOURCE (a vLLM 0.24.0 source tree or unpacked wheel) is not set")
    return Path(root)


def test_vllm_source_tree_matches_the_contract(vllm_source: Path) -> None:
    assert check_source(vllm_source) == []


def _edited_module(source: Path, tmp_path: Path, module: str, old: str, new: str) -> Path:
    """A tree holding only `module`, copied from `source` with `old` replaced by `new`."""
    rel = Path(*module.split(".")).with_suffix(".py")
    text = (source / rel).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {rel}"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(text.replace(old, new), encoding="utf-8")
    return tmp_path


def _seams_of(module: str) -> tuple[Seam, ...]:
    return tuple(s for s in SEAMS if s.module == module)


GRAPHS = "vllm.v1.worker.gpu.cudagraph_utils"
WORKER = "vllm.v1.worker.gpu_worker"
CAPTURE_LINE = "        self._graphs_captured = True\n"


def test_a_change_to_the_capture_kiln_copies_names_it_and_kiln_s_copy(
    vllm_source: Path, tmp_path: Path
) -> None:
    # One statement added: every name and parameter is unchanged, only the hash sees it.
    root = _edited_module(
        vllm_source,
        tmp_path,
        GRAPHS,
        CAPTURE_LINE,
        "        torch.cuda.synchronize()\n" + CAPTURE_LINE,
    )
    (problem,) = check_source(root, _seams_of(GRAPHS))
    assert problem.startswith(f"{GRAPHS}.CudaGraphManager.capture: its source changed")
    assert "kiln_vllm.graphs.capture_all" in problem and "reviewed" in problem


def test_comments_and_blank_lines_in_the_capture_do_not_count_as_a_change(
    vllm_source: Path, tmp_path: Path
) -> None:
    root = _edited_module(
        vllm_source, tmp_path, GRAPHS, CAPTURE_LINE, "\n        # a note\n" + CAPTURE_LINE
    )
    assert check_source(root, _seams_of(GRAPHS)) == []


def test_a_statement_moved_out_of_its_block_counts_as_a_change(
    vllm_source: Path, tmp_path: Path
) -> None:
    # The same lines once stripped: only the indentation says the count moved out of the
    # FULL branch (it would then count PIECEWISE captures too).
    line = "                        compilation_counter.num_cudagraph_captured += 1\n"
    root = _edited_module(vllm_source, tmp_path, GRAPHS, line, line[4:])
    (problem,) = check_source(root, _seams_of(GRAPHS))
    assert "CudaGraphManager.capture: its source changed" in problem


def test_a_model_capture_that_no_longer_calls_the_base_capture_is_named(
    vllm_source: Path, tmp_path: Path
) -> None:
    call = "return super().capture(create_forward_fn, progress_bar_desc)"
    root = _edited_module(vllm_source, tmp_path, GRAPHS, call, call.replace("super()", "self"))
    (problem,) = check_source(root, _seams_of(GRAPHS))
    assert problem.startswith(f"{GRAPHS}.ModelCudaGraphManager.capture: no longer contains")


def test_a_removed_module_global_of_the_worker_is_named(vllm_source: Path, tmp_path: Path) -> None:
    root = _edited_module(
        vllm_source, tmp_path, WORKER, "from .gpu.warmup import warmup_kernels\n", ""
    )
    (problem,) = check_source(root, _seams_of(WORKER))
    assert problem.startswith(f"{WORKER}.warmup_kernels: not found")


SEAM = Seam(
    "fakevllm.worker", "Worker.load_model", ("self", "load_dummy_weights"), "weights loaded"
)
GLOBAL = Seam("fakevllm.worker", "kernel_warmup", None, "patched module global")


def _tree(tmp_path: Path, body: str) -> Path:
    pkg = tmp_path / "fakevllm"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "worker.py").write_text(textwrap.dedent(body))
    return tmp_path


GOOD = """
    from fakevllm.warmup import kernel_warmup

    class Worker:
        def load_model(self, *, load_dummy_weights: bool = False) -> None: ...
"""


def test_a_matching_tree_passes(tmp_path: Path) -> None:
    assert check_source(_tree(tmp_path, GOOD), (SEAM, GLOBAL)) == []


def test_a_changed_signature_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, GOOD.replace("load_dummy_weights", "dummy"))
    (problem,) = check_source(root, (SEAM,))
    assert "fakevllm.worker.Worker.load_model" in problem and "(self, dummy)" in problem


def test_a_removed_symbol_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, "class Worker:\n    pass\n")
    problems = check_source(root, (SEAM, GLOBAL))
    assert len(problems) == 2 and all("not found" in p for p in problems)


def test_a_missing_module_is_named(tmp_path: Path) -> None:
    (problem,) = check_source(tmp_path, (SEAM,))
    assert "cannot read" in problem


def test_the_installed_checker_sees_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(
        tmp_path, GOOD.replace("from fakevllm.warmup import kernel_warmup", "kernel_warmup = None")
    )
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("fakevllm")]:
        monkeypatch.delitem(sys.modules, name)
    assert check_installed((SEAM, GLOBAL)) == []
    moved = Seam("fakevllm.worker", "Worker.load_model", ("self",), "weights loaded")
    (problem,) = check_installed((moved,))
    assert "kiln expects (self)" in problem


def test_every_seam_names_why_it_is_needed() -> None:
    assert len({s.name for s in SEAMS}) == len(SEAMS)
    assert all(s.why for s in SEAMS)
