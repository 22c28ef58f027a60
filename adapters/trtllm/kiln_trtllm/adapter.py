"""kiln's hooks for TensorRT-LLM. Launcher-side hooks run in `kiln run` before TensorRT-LLM
is imported; the fingerprint hook runs in the worker process that builds the PyExecutor
(kiln_trtllm.hooks binds the engine's settings first)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from kiln.hooks import hookimpl
from kiln.lifecycle import KilnContext, Pin
from kiln.lifecycle.launch import LaunchContext
from kiln.plugins import AdapterSpec, command_runs, installed_version

ENGINE = "trtllm"
DISTRIBUTION = "tensorrt_llm"
SUPPORTED = "==1.3.0rc24"  # short: `kiln adapters` prints it in an 80-column table
_CLIS = {"trtllm-serve", "trtllm-bench", "trtllm-llmapi-launch"}


def runs_trtllm(command: Sequence[str]) -> bool:
    """Whether a `kiln run` command starts TensorRT-LLM: one of its CLIs, `python -m
    tensorrt_llm...`, or a Python script that imports tensorrt_llm (`LLM(...)`)."""
    return command_runs(command, "tensorrt_llm", _CLIS)


def version_supported(version: str | None, specifier: str = SUPPORTED) -> bool:
    if version is None:
        return False
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) in SpecifierSet(specifier, prereleases=True)
    except InvalidVersion:
        return False


# Environment every TensorRT-LLM process must see for a restore to be valid
# (docs/trtllm/adapter.md, "Pins").
ENV_PINS = (
    Pin(
        "TLLM_WORKER_USE_SINGLE_PROCESS",
        "1",
        "kiln drives one worker per GPU; TP1 runs the executor in the process kiln started "
        "(the default spawns an MPI worker whose environment kiln cannot vouch for)",
    ),
)


class TrtllmAdapter:
    kiln_adapter = AdapterSpec(
        engine=ENGINE,
        engine_versions=SUPPORTED,
        engine_distribution=DISTRIBUTION,
        summary="TensorRT-LLM 1.3.0rc24 (PyTorch, TP1): decode graphs restored, KV "
        "estimation skipped at LOAD",
    )

    def __init__(self) -> None:
        self._fingerprint: Callable[[], dict[str, Any]] | None = None

    def bind(self, fingerprint: Callable[[], dict[str, Any]] | None) -> None:
        """The worker's fingerprint fields, read when the GPU is bound."""
        self._fingerprint = fingerprint

    @hookimpl
    def kiln_pin_settings(
        self, ctx: KilnContext, settings: Mapping[str, object], explicit: Collection[str]
    ) -> Sequence[Pin] | None:
        from kiln_trtllm.settings import setting_pins

        return setting_pins(settings)

    @hookimpl
    def kiln_fingerprint(self, ctx: KilnContext) -> dict[str, Any] | None:
        if self._fingerprint is None:
            return None
        return self._fingerprint()

    @hookimpl
    def kiln_launch_fingerprint(self, launch: LaunchContext) -> dict[str, str] | None:
        if not runs_trtllm(launch.command):
            return None
        return {
            "trtllm.version": installed_version(DISTRIBUTION) or "not installed",
            "trtllm.torch_version": installed_version("torch") or "not installed",
        }

    @hookimpl
    def kiln_child_env(self, launch: LaunchContext) -> Sequence[Pin] | None:
        if not runs_trtllm(launch.command):
            return None
        return ENV_PINS
