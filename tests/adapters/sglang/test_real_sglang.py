"""kiln-sglang against an installed SGLang 0.5.16, on CPU: SGLang's own plugin discovery
finds kiln's plugin under a `kiln run` environment, every hook lands on its real target,
`ServerArgs` resolves with kiln's pins and refusals, the fingerprint reads real objects, and
SGLang's spawned scheduler process loads kiln and reaches kiln's device-bound stage. Each
probe runs in a fresh process (real_sglang_probe.py). Skips where SGLang is not installed
(CI reads only the wheel's source: test_seam_contract.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("sglang") is None:
    pytest.skip("SGLang is not installed here (the GPU bundle has it)", allow_module_level=True)
pytest.importorskip("kiln_sglang", reason="kiln-sglang is not installed (.ci/run installs it)")

from kiln_sglang.sglang_plugin import TARGETS

from tests.lifecycle.helpers import kiln_environ

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "bench" / "models" / "qwen3-0.6b"  # a config only: dummy weights
PROBE = Path(__file__).with_name("real_sglang_probe.py")


def _probe(name: str, tmp_path: Path, policy: str = "strict") -> tuple[dict[str, Any], str]:
    env = {**os.environ, **kiln_environ(tmp_path, "save", policy)}
    env.pop("SGLANG_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, str(PROBE), name, str(MODEL)],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=480,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("PROBE ")), done.stderr


@pytest.fixture(scope="module")
def attached(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report, _ = _probe("attach", tmp_path_factory.mktemp("attach"))
    return report


def test_sglang_s_plugin_discovery_patches_every_kiln_target(attached: dict[str, Any]) -> None:
    assert {target for target, _, _ in TARGETS} <= set(attached["patched"])
    assert attached["kiln_hook_in_wrapper"] == {
        f"{target} {name}": True for target, _, name in TARGETS
    }


def test_real_server_args_resolve_with_kiln_s_pins(attached: dict[str, Any]) -> None:
    pinned = {
        "decode": "full",
        "prefill": "disabled",
        "disable_flashinfer_autotune": True,
        "disable_custom_all_reduce": False,
        "refused": None,
    }
    assert attached["cases"]["plain"] == pinned
    assert attached["cases"]["tp2"] == {**pinned, "disable_custom_all_reduce": True}


def test_real_server_args_raise_kiln_s_conflicts_and_refusals_under_strict(
    attached: dict[str, Any],
) -> None:
    cases = attached["cases"]
    assert cases["explicit_breakable_decode"]["error"] == "PinConflict"
    assert cases["pdmux"] == {
        "error": "Unsupported",
        "message": "kiln-sglang: pdmux (several graph streams) is not supported",
    }
    assert cases["prefill_json"]["error"] == "Unsupported"
    assert "prefill='breakable'" in cases["prefill_json"]["message"]
    # The resolution after a refused one is pinned as the first was.
    assert cases["again_after_a_conflict"] == cases["plain"]


def test_a_refusal_under_fallback_reaches_the_schedulers_pickled_server_args(
    tmp_path: Path,
) -> None:
    report, _ = _probe("fallback", tmp_path, policy="fallback")
    assert report == {"refused": "pdmux (several graph streams) is not supported"}


def test_the_fingerprint_reads_real_server_args_and_model_config(
    attached: dict[str, Any],
) -> None:
    fields = attached["fingerprint"]
    assert fields["sglang.version"] == "0.5.16"
    assert fields["sglang.model_dtype"] == "torch.bfloat16"
    assert fields["sglang.context_len"] == 40960
    assert fields["sglang.cuda_graph.decode.backend"] == "full"
    assert fields["sglang.cuda_graph.prefill.backend"] == "disabled"
    assert len(fields["sglang.model_config_sha256"]) == 64
    assert attached["layout"]["tensor_parallel_size"] == 1


def test_kv_sizing_and_graph_keys_use_sglang_s_real_types(attached: dict[str, Any]) -> None:
    assert attached["kv_round_trip"] is True
    assert attached["key"] == "sglang/decode/full/bs=8/s=-/v=-/h=NULL/o=next_token_logits"


def test_sglang_s_spawned_scheduler_loads_kiln_and_reaches_device_bound(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi") is not None:
        pytest.skip("a GPU is here: test_gpu_sglang.py starts SGLang for real")
    report, stderr = _probe("scheduler", tmp_path)
    # No GPU: kiln's Scheduler.__init__ hook started the scheduler's driver, and its
    # ModelRunner.init_torch_distributed hook stops the strict SAVE at device_bound.
    assert "[sglang rank 0, save]" in stderr and "failed at device_bound" in stderr
    assert "in scheduler_init" in stderr and "in init_torch_distributed" in stderr
    assert report["ready_sent"] is False and report["sigquit"] == 1
