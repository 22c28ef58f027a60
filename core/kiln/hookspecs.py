"""Hook specifications of the kiln lifecycle (pluggy project ``kiln``).

Every engine — vLLM, SGLang, TensorRT-LLM — passes through the same points on its way to
serving: it binds a GPU, loads weights, sizes the KV cache, warms up and captures CUDA graphs.
An adapter reports those points to the lifecycle driver (:mod:`kiln.lifecycle`), and the
driver calls the hooks below, in this order (see ``docs/lifecycle.md`` for the diagram):

In the ``kiln run`` launcher, before it execs the engine:

1. :func:`kiln_launch_fingerprint`
2. :func:`kiln_child_env`

In each engine process (the main process stops after 2 when it does not drive a GPU):

1. :func:`kiln_process_init`
2. :func:`kiln_pin_settings` (where the engine resolves its settings)
3. :func:`kiln_fingerprint`, then :func:`kiln_device_bound`
4. :func:`kiln_communicators_ready`
5. :func:`kiln_weights_loaded`
6. :func:`kiln_collectives_bootstrapped`
7. :func:`kiln_kv_capacity`
8. :func:`kiln_capture_begin`, :func:`kiln_capture_graph` once per graph,
   :func:`kiln_capture_end` (the block may repeat, e.g. for a draft model)
9. :func:`kiln_region_close`
10. :func:`kiln_ready`

:func:`kiln_warmup_policy` fires for each warmup phase between 3 and 9, and
:func:`kiln_failure` fires whenever a stage fails. Stages an engine does not have
(communicators on one GPU) are skipped; none fires out of order.

Conventions:

* ``ctx`` is the process's :class:`kiln.lifecycle.context.KilnContext`: mode, policy, archive,
  rank, device, fingerprint, recorded values. ``ctx.mode`` is ``"save"`` or ``"load"``, or
  ``"native"`` after a fallback; no hook fires when kiln is off.
* Hooks marked *firstresult* stop at the first implementation that returns something other
  than ``None``; kiln's own default implementation runs last (``trylast``), so an adapter
  overrides a default by returning a value and defers to it by returning ``None``.
* Other hooks with a return value collect every non-``None`` result, in pluggy's call order
  (last registered first).
* A hook that raises a :class:`kiln.errors.KilnError` fails its stage, and the configured
  policy applies; any other exception is a bug and propagates unchanged.
* Hook implementations must not import the engine at module import time: every installed
  adapter is imported in every engine process and in the launcher.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

from kiln.hooks import PROJECT_NAME

if TYPE_CHECKING:  # the lifecycle package imports this module; annotations only
    from kiln.lifecycle.context import KilnContext
    from kiln.lifecycle.launch import LaunchContext
    from kiln.lifecycle.report import StartupReport
    from kiln.lifecycle.types import (
        FailureAction,
        FingerprintValue,
        KvCapacity,
        Pin,
        WarmupAction,
        WarmupPhase,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- launcher: ``kiln run``, before exec ---------------------------------------------------


@hookspec
def kiln_launch_fingerprint(launch: LaunchContext) -> Mapping[str, FingerprintValue] | None:
    """Contribute fingerprint fields that are known before the engine starts.

    **When:** once, in ``kiln run``, after the config is resolved and before the archive
    location and the mode are decided. The default archive directory is named after a hash of
    these fields, so a changed field selects another archive instead of reusing a stale one.

    **Process:** the launcher; the engine is not imported and no GPU is touched.

    :param launch: The engine command, the config and the user's environment.
        ``launch.mode`` is the requested mode (possibly ``auto``), ``launch.archive_dir`` is
        ``None`` unless the user named one.
    :returns: Fields namespaced by engine (``{"vllm.version": "0.24.0"}``, a hash of a config
        file the command refers to), or ``None`` when the command is not for this adapter's
        engine. The fields are passed on to the engine processes and become part of the
        archive fingerprint; two contributions of one field with different values are an
        error.

    All results are collected.
    """


@hookspec
def kiln_child_env(launch: LaunchContext) -> Sequence[Pin] | None:
    """Pin environment variables the engine and all its child processes must run with.

    **When:** once, in ``kiln run``, after the mode and the archive are decided, just before
    the environment is built and the engine command is exec'd. Every process the engine
    starts inherits it (workers spawned through Ray must be given it by the adapter, see
    :func:`kiln.lifecycle.environment.inherited`).

    **Process:** the launcher.

    :param launch: As for :func:`kiln_launch_fingerprint`, with ``launch.mode`` now
        ``save`` or ``load`` and ``launch.archive_dir`` set.
    :returns: One :class:`~kiln.lifecycle.types.Pin` per variable (``key`` is the variable
        name, ``value`` a ``str``, ``reason`` why a restore needs it), or ``None`` when the
        command is not for this adapter's engine. A variable the user already set to another
        value is an error (:class:`~kiln.lifecycle.errors.PinConflict`), never overridden.
        ``LD_PRELOAD`` and ``KILN_*`` are kiln's own and cannot be pinned.

    All results are collected.
    """


# --- engine processes ------------------------------------------------------------------------


@hookspec
def kiln_process_init(ctx: KilnContext) -> None:
    """The lifecycle driver started in this process.

    **When:** first, when the adapter calls :func:`kiln.lifecycle.start` — in every engine
    process (main process, each worker), before the engine binds a GPU.

    **Process:** each engine process.

    :param ctx: The process's context; ``ctx.device`` is still ``None``.
    """


@hookspec
def kiln_pin_settings(
    ctx: KilnContext, settings: Mapping[str, object], explicit: Collection[str]
) -> Sequence[Pin] | None:
    """Name the engine settings that must hold for a restore to be valid.

    **When:** once, where the engine has resolved its settings and before it creates workers
    or binds a GPU (vLLM: the engine config; SGLang: ``ServerArgs``; TRT-LLM: ``LlmArgs``).
    Pins are the same at SAVE and at LOAD: they make the two runs build identical graphs
    (same capture sizes, same graph mode, same memory fraction).

    **Process:** the engine process that resolves settings (usually the main process).

    :param ctx: The process's context.
    :param settings: The engine's resolved settings, flattened to dotted keys.
    :param explicit: The keys of ``settings`` the user set explicitly (command line, config
        file); the others hold engine defaults.
    :returns: :class:`~kiln.lifecycle.types.Pin` objects, each with the reason a restore
        needs it, or ``None``. The driver returns the merged pins to the adapter, which
        applies them to the engine. An explicit user setting that differs from a pin raises
        :class:`~kiln.lifecycle.errors.PinConflict` under every policy, and so do two pins of
        one key with different values.

    Not called after a fallback: a native start needs no pins.

    All results are collected.
    """


@hookspec
def kiln_fingerprint(ctx: KilnContext) -> Mapping[str, FingerprintValue] | None:
    """Contribute fields to the archive fingerprint.

    **When:** at the start of the device-bound stage, after the GPU is chosen and before the
    fingerprint is checked against the archive (LOAD) or recorded (SAVE) — so, before any
    weights are loaded.

    **Process:** each engine process that binds a GPU.

    :param ctx: The process's context; ``ctx.device`` is set.
    :returns: Fields that change the captured graphs when they change, namespaced by engine
        (``{"vllm.model": ..., "vllm.dtype": "bfloat16", "vllm.tp": 2}``), or ``None``.
        Values are JSON scalars. kiln itself contributes its version, the region, the rank
        and the runtime's device fields (GPU, driver, CUDA, torch).

    Not called after a fallback: nothing is checked or recorded then.

    All results are collected; one field with two different values is an error.
    """


@hookspec
def kiln_device_bound(ctx: KilnContext, device: int) -> None:
    """The process is bound to its GPU and the deterministic region is ready.

    **When:** after the fingerprint was checked (LOAD) and the region was reserved and bound
    (archived modules loaded at LOAD), before communicators, weights or anything else
    allocate device memory.

    **Process:** each engine process that binds a GPU.

    :param ctx: The process's context.
    :param device: The CUDA device ordinal, as the process sees it.
    """


@hookspec
def kiln_communicators_ready(ctx: KilnContext) -> None:
    """The engine's communicators (NCCL process groups, custom all-reduce) are created.

    **When:** after the device is bound, before weights load. Skipped by engines with one GPU.

    **Process:** each engine worker.

    :param ctx: The process's context.
    """


@hookspec
def kiln_weights_loaded(ctx: KilnContext) -> None:
    """The model's weights are in device memory.

    **When:** after the model is built and its weights are loaded, before collectives
    bootstrap and KV sizing.

    **Process:** each engine worker.

    :param ctx: The process's context.
    """


@hookspec
def kiln_collectives_bootstrapped(ctx: KilnContext) -> None:
    """Device-side collectives (NVSHMEM, DeepEP buffers) are bootstrapped.

    **When:** after weights load and before KV sizing, in engines that use them. At LOAD the
    runtime has initialised kiln's copies of the archive's NVSHMEM binaries (checking PE
    count and PE against SAVE's) before this hook fires; a graph asked for before it is
    refused.

    **Process:** each engine worker.

    :param ctx: The process's context.
    """


@hookspec(firstresult=True)
def kiln_warmup_policy(ctx: KilnContext, phase: WarmupPhase) -> WarmupAction | None:
    """Decide what happens to one warmup phase: run, skip, or run with the region suspended.

    **When:** each time the adapter asks (:meth:`kiln.lifecycle.Driver.warmup`), between the
    device-bound and the region-close stages: the profiling run before KV sizing, the
    compile warmups and the capture warmups.

    **Process:** each engine worker.

    :param ctx: The process's context.
    :param phase: The phase's name and whether LOAD can do without it.
    :returns: A :class:`~kiln.lifecycle.types.WarmupAction`, or ``None`` to defer. kiln's
        default: at SAVE, ``run-suspended`` for phases skippable on load and ``run`` for the
        others; at LOAD, ``skip`` and ``run`` respectively; ``run`` after a fallback. At LOAD
        a decision that would allocate differently from SAVE's recorded decision fails the
        stage (:class:`~kiln.lifecycle.errors.WarmupMismatch`).

    Stops at the first non-``None`` result (firstresult).
    """


@hookspec(firstresult=True)
def kiln_kv_capacity(ctx: KilnContext, measure: Callable[[], KvCapacity]) -> KvCapacity | None:
    """Decide the KV-cache capacity: SAVE measures and records it, LOAD reuses the record.

    **When:** once, after weights load and before capture, where the engine would profile
    free memory to size its KV cache.

    **Process:** each engine worker.

    :param ctx: The process's context; ``ctx.recorded["kv_capacity"]`` holds the value
        recorded at SAVE when ``ctx.mode`` is ``"load"``.
    :param measure: Runs the engine's own sizing (its profiling pass) and returns the
        capacity. Call it at most once.
    :returns: The capacity as ``{name: int}`` in the engine's units, or ``None`` to defer.
        kiln's default returns ``measure()`` at SAVE and after a fallback, and the recorded
        value at LOAD (skipping the profiling pass). The driver records the SAVE decision;
        at LOAD a decision other than the recorded one fails the stage.

    Stops at the first non-``None`` result (firstresult).
    """


@hookspec
def kiln_capture_begin(ctx: KilnContext, keys: Sequence[str] | None) -> None:
    """The engine is about to capture (SAVE) or restore (LOAD) a set of graphs.

    **When:** after KV sizing and the pre-capture warmups; once per graph set.

    **Process:** each engine worker.

    :param ctx: The process's context.
    :param keys: The keys of the graphs the engine will ask for, when it knows them in
        advance (drives the progress display; at LOAD the driver fails the stage right away
        if the archive lacks any of them), else ``None``.
    """


@hookspec(firstresult=True)
def kiln_capture_graph(ctx: KilnContext, key: str, capture: Callable[[], object]) -> object:
    """Produce one graph: SAVE captures it natively and records it, LOAD restores it.

    **When:** once per graph, between :func:`kiln_capture_begin` and :func:`kiln_capture_end`.

    **Process:** each engine worker.

    :param ctx: The process's context.
    :param key: The graph's stable name within the archive, identical at SAVE and LOAD and
        unique within the process (the vLLM adapter's keys name the runtime mode, batch
        descriptor and, for a PIECEWISE graph, its piece).
    :param capture: The engine's own capture of this graph (warmup iterations included);
        returns whatever the engine needs to keep.
    :returns: At SAVE, ``capture()``'s result; at LOAD, the restored graph object of the
        runtime (:meth:`kiln.lifecycle.runtime.Runtime.restore`); ``None`` to defer. kiln's
        default does exactly that; an adapter overrides it to wrap the restored graph in the
        engine's own graph type.

    Stops at the first non-``None`` result (firstresult).
    """


@hookspec
def kiln_capture_end(ctx: KilnContext) -> None:
    """The current graph set is complete.

    **When:** after the last :func:`kiln_capture_graph` of a set.

    **Process:** each engine worker.

    :param ctx: The process's context.
    """


@hookspec
def kiln_region_close(ctx: KilnContext) -> None:
    """The deterministic region is closed: later allocations are the engine's own business.

    **When:** after the last graph set, before the engine serves. The allocations before the
    capture window were checked against SAVE's when the window was re-created (the first
    restored graph); nothing more is checked here.

    **Process:** each engine worker.

    :param ctx: The process's context.
    """


@hookspec
def kiln_ready(ctx: KilnContext, report: StartupReport) -> None:
    """The engine is ready to serve.

    **When:** last. At SAVE the archive has been committed atomically before this fires;
    the startup report has been written next to the archive and logged.

    **Process:** each engine worker.

    :param ctx: The process's context.
    :param report: Stage timings, graphs captured or restored, bytes mapped, fallback reason.

    Exceptions propagate: the start is complete, there is nothing left to fall back from.
    """


@hookspec
def kiln_failure(ctx: KilnContext, stage: str, error: BaseException, action: FailureAction) -> None:
    """A stage failed; the policy is about to be applied.

    **When:** as soon as a stage raises, before the driver stops (policy ``strict``) or
    switches to native start (policy ``fallback``). Also fires, with action ``stop``, for
    usage errors and for errors that are not kiln's, which then propagate unchanged.

    **Process:** the engine process where the stage failed.

    :param ctx: The process's context; ``ctx.mode`` is still the mode that failed.
    :param stage: The failed stage's name (``"device_bound"``, ``"capture_graph"``, ...).
    :param error: The exception; ``str(error)`` names the cause.
    :param action: ``"stop"`` or ``"fallback"``. After a fallback the remaining hooks fire
        with ``ctx.mode == "native"``; a stage failing then fires this hook again (action
        ``"fallback"``), is noted in the report, and the engine goes on natively.

    Exceptions raised by implementations are logged and ignored: they must not hide the
    original failure.
    """
