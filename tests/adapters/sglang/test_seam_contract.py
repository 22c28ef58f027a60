"""The seam contract: the SGLang symbols kiln-sglang attaches to must be where, and as, it
expects. Against the installed SGLang when there is one, and against a source tree named by
KILN_SGLANG_SOURCE (.ci/run unpacks the sglang==0.5.16 wheel there)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("kiln_sglang", reason="kiln-sglang is not installed (.ci/run installs it)")

from kiln_sglang.seams import SEAMS, Seam, check_installed, check_source
from kiln_sglang.sglang_plugin import TARGETS

FULL = "sglang.srt.model_executor.runner_backend.full_cuda_graph_backend"
KV = "sglang.srt.mem_cache.kv_cache_configurator"
STORE_LINE = "        self._graphs[shape_key] = graph\n"


def test_installed_sglang_matches_the_contract() -> None:
    pytest.importorskip("sglang", reason="SGLang is not installed here (the GPU bundle has it)")
    assert check_installed() == []


@pytest.fixture
def sglang_source() -> Path:
    root = os.environ.get("KILN_SGLANG_SOURCE")
    if not root:
        pytest.skip(
            "KILN_SGLANG_SOURCE (an SGLang 0.5.16 source tree or unpacked wheel) is not set"
        )
    return Path(root)


def test_sglang_source_tree_matches_the_contract(sglang_source: Path) -> None:
    assert check_source(sglang_source) == []


def test_every_hook_target_is_a_seam() -> None:
    seams = {s.name for s in SEAMS}
    assert {target for target, _, _ in TARGETS} <= seams


def test_every_sglang_name_kiln_imports_is_a_seam() -> None:
    import ast

    import kiln_sglang

    seams = {(s.module, s.qualname) for s in SEAMS}
    unchecked = []
    for path in sorted(Path(kiln_sglang.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("sglang"):
                continue
            for alias in node.names:
                module, name = node.module, alias.name
                if not any(
                    m == module and (n == name or n.startswith(name + ".")) for m, n in seams
                ):
                    unchecked.append(f"{path.name}: {module}.{name}")
    assert unchecked == []


def _edited_module(source: Path, tmp_path: Path, module: str, old: str, new: str) -> Path:
    rel = Path(*module.split(".")).with_suffix(".py")
    text = (source / rel).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {rel}"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(text.replace(old, new), encoding="utf-8")
    return tmp_path


def _seams_of(module: str) -> tuple[Seam, ...]:
    return tuple(s for s in SEAMS if s.module == module)


def test_a_change_to_the_capture_kiln_copies_names_it_and_kiln_s_copy(
    sglang_source: Path, tmp_path: Path
) -> None:
    root = _edited_module(
        sglang_source,
        tmp_path,
        FULL,
        STORE_LINE,
        "        graph.enable_debug_mode()\n" + STORE_LINE,
    )
    (problem,) = check_source(root, _seams_of(FULL))
    assert problem.startswith(f"{FULL}.FullCudaGraphBackend.capture_one: its source changed")
    assert "kiln_sglang.graphs.kiln_capture_one" in problem


def test_the_0_5_17_rename_of_capture_one_s_third_parameter_is_named(
    sglang_source: Path, tmp_path: Path
) -> None:
    root = _edited_module(
        sglang_source,
        tmp_path,
        FULL,
        "        dummies: Optional[Any] = None,\n",
        "        capture_inputs: Optional[Any] = None,\n",
    )
    problems = check_source(root, _seams_of(FULL))
    assert any("capture_one: parameters are" in p and "capture_inputs" in p for p in problems)


def test_kv_sizing_that_stops_sampling_free_memory_is_named(
    sglang_source: Path, tmp_path: Path
) -> None:
    root = _edited_module(
        sglang_source,
        tmp_path,
        KV,
        "        available_bytes = self._profile_available_bytes(pre_model_load_memory)\n",
        "        available_bytes = self._profile_budget(pre_model_load_memory)\n",
    )
    problems = check_source(root, _seams_of(KV))
    assert any("_resolve_memory_pool_config: no longer contains" in p for p in problems)
