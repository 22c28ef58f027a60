"""The lifecycle driver: what adapters call at each point of an engine's startup.

An adapter stays thin: it finds the engine's points (through the engine's plugin mechanism)
and calls the matching method here. The driver keeps the order, times each stage, composes
and checks the fingerprint, takes the SAVE lock, records and replays decisions, commits the
archive, writes the startup report, fires the hooks and applies the policy on failure.

Outside ``kiln run`` (``KILN_ENABLE`` unset) every method passes through: warmups run,
``measure()`` and ``capture()`` are called, nothing is fired or written. Adapters can
therefore call the driver unconditionally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

import pluggy

from kiln import __version__
from kiln.config import Config, ConfigError, LoadBuilds, Policy, load_config
from kiln.errors import (
    AgreementFailed,
    ArchiveCorrupt,
    ArchiveError,
    FingerprintMismatch,
    KilnError,
    RegionError,
)
from kiln.lifecycle import (
    agreement,
    archive_io,
    cache_report,
    cache_transfer,
    environment,
    fingerprint,
    job,
    pins,
    topology,
)
from kiln.lifecycle.agreement import Gather
from kiln.lifecycle.context import KilnContext
from kiln.lifecycle.defaults import CORE_PLUGIN_NAME, CoreDefaults
from kiln.lifecycle.errors import (
    BuildsFailed,
    DuplicateGraph,
    GraphNotRecorded,
    InvalidHookResult,
    KvCapacityMismatch,
    MissingGraphs,
    StageFailed,
    UsageError,
    WarmupMismatch,
)
from kiln.lifecycle.logsetup import configure_logging
from kiln.lifecycle.progress import Progress, make_progress
from kiln.lifecycle.record import LifecycleRecord
from kiln.lifecycle.report import StartupReport, write_report
from kiln.lifecycle.runtime import Runtime, default_runtime
from kiln.lifecycle.session import ArchiveSession
from kiln.lifecycle.stages import Stage, StageOrder
from kiln.lifecycle.startup import initial_state
from kiln.lifecycle.timing import Timeline
from kiln.lifecycle.types import (
    FailureAction,
    FingerprintValue,
    KvCapacity,
    Pin,
    RestoreProgress,
    RunMode,
    WarmupAction,
    WarmupPhase,
)
from kiln.plugins import discover_adapters, make_plugin_manager, register, register_adapters
from kiln.region import rank_slot

T = TypeVar("T")
log = logging.getLogger("kiln")
_ACTIVE = (RunMode.SAVE, RunMode.LOAD)
# With several ranks, these stages end with the ranks agreeing whether all of them still
# restore (kiln.lifecycle.agreement): from the first stage the engine's CPU group exists
# (communicators_ready) to the last one whose fallback captures natively (capture_end).
_AGREED = frozenset(
    {
        Stage.COMMUNICATORS_READY,
        Stage.WEIGHTS_LOADED,
        Stage.COLLECTIVES_BOOTSTRAPPED,
        Stage.WARMUP,
        Stage.KV_CAPACITY,
        Stage.CAPTURE_BEGIN,
        Stage.CAPTURE_GRAPH,
        Stage.CAPTURE_END,
    }
)


class Driver:
    """One engine process's lifecycle. Create it with :func:`kiln.lifecycle.start`."""

    def __init__(
        self,
        engine: str,
        *,
        adapter: object | None = None,
        rank: int = 0,
        world_size: int = 1,
        config: Config | None = None,
        environ: Mapping[str, str] | None = None,
        runtime: Runtime | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        plugins: Sequence[object] = (),
        clock: Callable[[], float] | None = None,
        layout: Mapping[str, int] | None = None,
        topology_reader: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        config = load_config(environ=environ) if config is None else config
        configure_logging(config.log_level)
        self._state = initial_state(engine, rank, world_size, config, environ)
        self._environ = environ
        self._caches_stored: dict[str, Any] | None = None
        self.ctx = KilnContext(self._state)
        self._timeline = Timeline(_float(environ.get(environment.LAUNCH_TIME)), clock)
        self._order = StageOrder()
        self._runtime = runtime
        self._archive: ArchiveSession | None = None
        self._record = LifecycleRecord(engine)
        try:
            self._layout = job.layout_of(world_size, layout)
        except ValueError as err:
            raise UsageError(f"lifecycle.start(layout=...): {err}") from None
        self._read_topology = topology_reader or (lambda: topology.read_topology(environ))
        self._manifest: job.JobManifest | None = None  # this start's, from device_bound on
        self._gather: Gather | None = None  # the engine's CPU group, from communicators_ready
        self._agreed_once = False
        self._seen: set[str] = set()
        self._captured = 0
        self._restored = 0
        self._at_ready: RestoreProgress | None = None  # LOAD: the background builds at ready
        self._error: dict[str, str] | None = None
        self._progress: Progress = make_progress(rank)
        self._pm = plugin_manager
        if self._state.mode is not RunMode.OFF:
            self._pm = self._plugins(plugin_manager, engine, adapter, plugins, config)

    # --- properties -------------------------------------------------------------------------

    @property
    def mode(self) -> RunMode:
        return self._state.mode

    @property
    def plugin_manager(self) -> pluggy.PluginManager | None:
        return self._pm

    @property
    def hook(self) -> Any:
        assert self._pm is not None, "no hooks fire when kiln is off"
        return self._pm.hook

    # --- stages, in order ---------------------------------------------------------------------

    def process_init(self) -> None:
        """Fire :func:`~kiln.hookspecs.kiln_process_init` (called by :func:`start`)."""
        self._stage(Stage.PROCESS_INIT, lambda: self.hook.kiln_process_init(ctx=self.ctx), _none)

    def resolve_pins(
        self, settings: Mapping[str, object], explicit: Collection[str] = ()
    ) -> dict[str, Pin]:
        """Collect the pins for the engine's settings; the adapter applies what it returns.

        ``settings`` are the engine's resolved settings (dotted keys), ``explicit`` the keys
        the user set. Raises :class:`~kiln.lifecycle.errors.PinConflict` under every policy.
        """

        def work() -> dict[str, Pin]:
            if self._state.mode not in _ACTIVE:
                return {}  # nothing will be restored: nothing needs pinning
            results = self.hook.kiln_pin_settings(
                ctx=self.ctx, settings=settings, explicit=frozenset(explicit)
            )
            merged = pins.merge(results, "kiln_pin_settings")
            pins.check_settings(merged, settings, explicit)
            self._state.pins = merged
            return dict(merged)

        return self._stage(Stage.PIN_SETTINGS, work, lambda _err: {})

    def device_bound(self, device: int) -> None:
        """The process chose its GPU: fingerprint, check (LOAD), lock (SAVE), bind the region.

        Call it before anything allocates device memory (communicators, weights).
        """

        def work() -> None:
            self._state.device = device
            if self._state.mode in _ACTIVE:
                self._bind(device)
            self.hook.kiln_device_bound(ctx=self.ctx, device=device)

        self._stage(Stage.DEVICE_BOUND, work, _none)

    def communicators_ready(self, gather: Gather | None = None) -> None:
        """The engine's process groups exist. ``gather`` all-gathers one block per rank over
        the engine's CPU group (kiln.lifecycle.agreement.torch_gather); with several ranks,
        this and every later stage up to capture_end ends with the ranks agreeing that all
        of them still restore, or none does. It is never called with one rank."""
        if gather is not None and self._state.world_size > 1:
            self._gather = gather
        self._notify(Stage.COMMUNICATORS_READY, "kiln_communicators_ready")

    def weights_loaded(self) -> None:
        self._notify(Stage.WEIGHTS_LOADED, "kiln_weights_loaded")

    def collectives_bootstrapped(self) -> None:
        def work() -> None:
            if self._state.mode in _ACTIVE:
                self._rt().collectives_bootstrapped()
            self.hook.kiln_collectives_bootstrapped(ctx=self.ctx)

        self._stage(Stage.COLLECTIVES_BOOTSTRAPPED, work, _none)

    def warmup_action(self, phase: WarmupPhase) -> WarmupAction:
        """Decide one warmup phase (for engines whose warmup is not one callable)."""

        def work() -> WarmupAction:
            decided = self.hook.kiln_warmup_policy(ctx=self.ctx, phase=phase)
            try:
                action = WarmupAction(decided)
            except ValueError:
                raise InvalidHookResult("kiln_warmup_policy", f"{decided!r} is no action") from None
            self._check_warmup(phase, action)
            return action

        # Deciding takes microseconds; the phase itself is timed by warmup().
        return self._stage(Stage.WARMUP, work, lambda _err: WarmupAction.RUN, timed=False)

    def warmup(self, phase: WarmupPhase, run: Callable[[], T]) -> T | None:
        """Run, skip, or run with the region suspended, as the policy decides for ``phase``.

        Returns ``run()``'s result, or ``None`` when the phase is skipped.
        """
        action = self.warmup_action(phase)
        if action is WarmupAction.SKIP:
            return None
        label = f"warmup:{phase.name}"
        if action is WarmupAction.RUN or self._state.mode not in _ACTIVE:
            with self._timeline.measure(label):
                return run()
        done: list[T] = []

        def suspended_run() -> T:
            with self._rt().suspended():
                done.append(run())
            return done[0]

        # A failure to suspend or resume the region follows the policy; the engine's own
        # warmup is never run twice.
        return self._stage(
            Stage.WARMUP, suspended_run, lambda _err: done[0] if done else run(), label
        )

    def suspended(self) -> Any:
        """Context manager: allocations inside bypass the region (no-op when kiln is inactive).

        Errors propagate without the policy; prefer :meth:`warmup` where it fits.
        """
        return self._rt().suspended() if self._state.mode in _ACTIVE else nullcontext()

    def kv_capacity(
        self, measure: Callable[[], KvCapacity], keys: Collection[str] | None = None
    ) -> dict[str, int]:
        """The KV capacity to use: measured and recorded at SAVE, reused at LOAD.

        ``measure`` runs the engine's own sizing; at LOAD it is not called. ``keys``, when
        given, are the fields the engine reads: a capacity with other fields (an archive
        written for another engine, or rewritten) is refused by the policy, so that the
        engine never reads a field that is not there.
        """
        measured: list[dict[str, int]] = []

        def once() -> dict[str, int]:
            # The hook spec says "at most once"; an override calling it twice, or a fallback
            # after it ran, must not run the engine's profiling pass again.
            if not measured:
                measured.append(_kv(measure(), "measure()"))
            return measured[0]

        def work() -> dict[str, int]:
            decided = _kv(
                self.hook.kiln_kv_capacity(ctx=self.ctx, measure=once), "kiln_kv_capacity"
            )
            if keys is not None and set(decided) != set(keys):
                detail = f"has the fields {sorted(decided)}, the engine reads {sorted(keys)}"
                if self._state.mode is RunMode.LOAD:
                    raise ArchiveCorrupt(f"the archive's KV capacity {detail}")
                raise InvalidHookResult("kiln_kv_capacity", f"the KV capacity {detail}")
            if self._state.mode is RunMode.LOAD:
                recorded = self._state.recorded.get("kv_capacity")
                if decided != recorded:
                    raise KvCapacityMismatch(recorded, decided)
            elif self._state.mode is RunMode.SAVE:
                self._record.kv_capacity = decided
            return decided

        return self._stage(Stage.KV_CAPACITY, work, lambda _err: once())

    def capture_begin(self, keys: Sequence[str] | None = None) -> None:
        """A graph set starts; ``keys`` (if known) are checked against the archive at LOAD."""
        planned = None if keys is None else tuple(keys)

        def work() -> None:
            if self._state.mode is RunMode.LOAD and planned is not None:
                archived = set(self._state.recorded.get("graphs", ()))
                missing = [key for key in planned if key not in archived]
                if missing:
                    raise MissingGraphs(missing)
            label = "restoring" if self._state.mode is RunMode.LOAD else "capturing"
            self._progress.start(label, None if planned is None else len(planned))
            self.hook.kiln_capture_begin(ctx=self.ctx, keys=planned)

        self._stage(Stage.CAPTURE_BEGIN, work, _none)

    def capture_graph(self, key: str, capture: Callable[[], T]) -> T | object:
        """One graph: SAVE runs ``capture`` and records it; LOAD returns the restored graph."""
        if key in self._seen:
            raise DuplicateGraph(key)
        self._seen.add(key)

        def work() -> object:
            mode = self._state.mode
            result = self.hook.kiln_capture_graph(ctx=self.ctx, key=key, capture=capture)
            if mode is RunMode.LOAD:
                self._restored += 1
            else:
                self._captured += 1
            if mode is RunMode.SAVE:
                self._record.graphs.append(key)
            self._progress.advance()
            return result

        def native(err: KilnError | None) -> object:
            result = err.result if isinstance(err, GraphNotRecorded) else capture()
            self._captured += 1
            self._progress.advance()
            return result

        return self._stage(Stage.CAPTURE_GRAPH, work, native)

    def capture_end(self) -> None:
        def work() -> None:
            self._progress.finish()
            self.hook.kiln_capture_end(ctx=self.ctx)

        self._stage(Stage.CAPTURE_END, work, _none)

    def region_close(self) -> None:
        def work() -> None:
            if self._state.mode in _ACTIVE:
                self._rt().close_region()
            self.hook.kiln_region_close(ctx=self.ctx)

        self._stage(Stage.REGION_CLOSE, work, _none)

    def ready(self) -> StartupReport | None:
        """Commit the archive (SAVE), write and log the startup report, fire ``kiln_ready``.

        At LOAD with ``load_builds = before-ready`` it first waits until every restored graph
        has its own executable (stage ``builds_finished``); by default those builds go on in
        the background. Either way the report says how many graphs had theirs at this point.
        Returns the report, or ``None`` when kiln is off.
        """
        if self._state.mode is RunMode.OFF:
            return None
        self._finish_builds()
        if self._at_ready is None:
            self._at_ready = self._restore_progress()
        self._stage(Stage.READY, self._commit, _none)
        self._release()
        report = self.report()
        self._publish(report)
        # Nothing is left to fall back from: an exception here propagates.
        self.hook.kiln_ready(ctx=self.ctx, report=report)
        return report

    def close(self) -> None:
        """Release the lock and the archive (engine shutdown; see process.reset)."""
        self._release()

    # --- the report -------------------------------------------------------------------------

    def report(self, outcome: str | None = None) -> StartupReport:
        state = self._state
        if outcome is None:
            outcome = {RunMode.SAVE: "saved", RunMode.LOAD: "restored"}.get(state.mode, "fallback")
        capture_phase = "restore" if self._restored else "capture"
        milestones = [
            ("device_bound", Stage.DEVICE_BOUND),
            ("weights", Stage.WEIGHTS_LOADED),
            ("kv", Stage.KV_CAPACITY),
            (capture_phase, Stage.CAPTURE_END),
        ]
        if self._timeline.ended(Stage.BUILDS_FINISHED) is not None:
            milestones.append(("builds", Stage.BUILDS_FINISHED))  # only when ready waited
        milestones.append(("ready", Stage.READY))
        phases = self._timeline.phases(milestones)
        at_ready = self._at_ready
        elapsed = self._timeline.now()
        start = self._timeline.process_start_s
        return StartupReport(
            kiln_version=__version__,
            engine=state.engine,
            requested_mode=state.requested_mode.value,
            mode=state.mode.value,
            policy=str(state.config.policy),
            load_builds=str(state.config.load_builds),
            outcome=outcome,
            archive=None if self.ctx.archive_path is None else str(self.ctx.archive_path),
            rank=state.rank,
            world_size=state.world_size,
            pid=os.getpid(),
            graphs_captured=self._captured,
            graphs_restored=self._restored,
            graphs_own_executable_at_ready=None if at_ready is None else at_ready.own_executable,
            graphs_on_template_at_ready=None if at_ready is None else at_ready.on_template,
            bytes_mapped=self._bytes_mapped(),
            kv_capacity=self._record.kv_capacity or state.recorded.get("kv_capacity"),
            fallback_reason=state.fallback_reason,
            error=self._error,
            phases_s=phases,
            total_s=round(elapsed + (start or 0.0), 6),
            stages=[entry.as_dict() for entry in self._timeline.entries],
            notes=list(state.notes),
            caches=self._caches_report(),
        )

    # --- internals --------------------------------------------------------------------------

    def _stage(
        self,
        stage: Stage,
        work: Callable[[], T],
        native: Callable[[KilnError | None], T],
        label: str | None = None,
        timed: bool = True,
    ) -> T:
        """Run one stage: order check, timing, and the policy on failure.

        ``native`` gives the stage's result without kiln: when kiln is off, and after a
        fallback (it then receives the error).
        """
        if self._state.mode is RunMode.OFF:
            return native(None)
        self._order.enter(stage)
        with self._timeline.measure(label or stage.value) if timed else nullcontext():
            agree = stage in _AGREED and self._agreement_due()
            try:
                result = work()
            except StageFailed:
                raise  # a nested stage (a warmup inside measure()) already applied the policy
            except (UsageError, ConfigError) as err:
                self._fail(stage, err, FailureAction.STOP)
                self._tell_peers(stage, err, agree)
                raise
            except KilnError as err:
                return self._policy(stage, err, native, agree)
            except Exception as err:
                # A region that ran out of room (or failed to map) inside a driver call reaches
                # the engine as its own error (an out-of-memory error); the wrapper kept kiln's
                # cause, and the policy applies to it.
                cause = self._hook_error()
                if cause:
                    region_err = RegionError(f"{cause} (the engine raised {type(err).__name__})")
                    region_err.__cause__ = err
                    return self._policy(stage, region_err, native, agree)
                self._fail(stage, err, FailureAction.STOP)  # the engine's or an adapter's bug
                self._tell_peers(stage, err, agree)
                raise
            if agree:
                refused = self._agree(stage, None)
                if refused is not None:
                    return self._policy(stage, refused, native, False)
            return result

    def _policy(
        self,
        stage: Stage,
        err: KilnError,
        native: Callable[[KilnError | None], T],
        agree: bool = False,
    ) -> T:
        # After a fallback the engine runs natively; later hook failures are reported the
        # same way rather than stopping an engine that no longer depends on kiln.
        can_fall_back = self._state.config.policy is Policy.FALLBACK and (
            self._state.mode in (*_ACTIVE, RunMode.NATIVE)
        )
        if not can_fall_back:
            self._fail(stage, err, FailureAction.STOP)
            self._tell_peers(stage, err, agree)
            raise StageFailed(stage.value, err) from err
        self._fail(stage, err, FailureAction.FALLBACK)
        # The peers learn it before this rank acts natively, and act natively too.
        self._tell_peers(stage, err, agree)
        return native(err)

    # --- agreement across ranks ---------------------------------------------------------------

    def _agreement_due(self) -> bool:
        """Whether this stage ends with an agreement. The first one (once the engine's group
        exists) includes every rank, whatever it does: before it a rank may have fallen back
        alone (device_bound, where no group exists yet). After it the ranks either all
        restore or none does, so only restoring ranks agree again."""
        if self._gather is None or self._state.world_size <= 1:
            return False
        return not self._agreed_once or self._state.mode is RunMode.LOAD

    def _agree(self, stage: Stage, failure: BaseException | None) -> KilnError | None:
        """Agree with the peers; the error that stops this rank restoring, or None."""
        self._agreed_once = True
        state = self._state
        restoring = failure is None and state.mode is RunMode.LOAD
        if failure is not None:
            cause = str(failure)
        elif state.fallback_reason is not None:
            cause = state.fallback_reason
        else:
            cause = f"it runs in mode {state.mode.value}"
        own = agreement.Verdict(state.rank, restoring, stage.value, "" if restoring else cause)
        try:
            verdicts = agreement.agree(own, state.world_size, self._gather)
        except AgreementFailed as err:
            if restoring:
                return err
            state.notes.append(f"{stage.value}: telling the other ranks failed: {err}")
            log.warning("kiln: %s", state.notes[-1])
            return None
        if not restoring:
            return None
        return agreement.first_refusal([v for v in verdicts if v.rank != state.rank])

    def _tell_peers(self, stage: Stage, err: BaseException, agree: bool) -> None:
        """This rank failed in an agreed stage: the peers learn it from the agreement they
        are waiting in (under strict they stop too, naming this rank)."""
        if agree:
            self._agree(stage, err)

    def _hook_error(self) -> str:
        if self._runtime is None or self._state.mode not in _ACTIVE:
            return ""
        try:
            return self._runtime.take_hook_error()
        except Exception:  # the original error matters more than this lookup
            log.exception("kiln: reading the interposer's last error failed")
            return ""

    def _notify(self, stage: Stage, hook_name: str) -> None:
        self._stage(stage, lambda: getattr(self.hook, hook_name)(ctx=self.ctx), _none)

    def _fail(self, stage: Stage, err: BaseException, action: FailureAction) -> None:
        self._error = {"stage": stage.value, "type": type(err).__name__, "message": str(err)}
        try:
            self.hook.kiln_failure(ctx=self.ctx, stage=stage.value, error=err, action=action)
        except Exception:  # a failing observer must not replace the original error
            log.exception("kiln: a kiln_failure hook raised")
        if action is FailureAction.FALLBACK:
            if self._state.mode is RunMode.NATIVE:
                self._state.notes.append(f"after the fallback, {stage.value} failed: {err}")
                log.warning("kiln: %s", self._state.notes[-1])
                return
            self._state.fallback_reason = f"{stage.value}: {err}"
            if self._state.mode is RunMode.LOAD and stage is Stage.DEVICE_BOUND:
                self._discard_caches()
            self._state.mode = RunMode.NATIVE
            self._abandon()
            log.warning("kiln: starting natively, %s failed: %s", stage.value, err)
            return
        self._abandon()
        report = self.report(outcome="failed")
        self._publish(report, level=logging.ERROR)

    def _discard_caches(self) -> None:
        # The archive was refused before the engine read any cache: what LOAD installed from
        # it was built for the refused environment, so the native start compiles afresh.
        try:
            removed = cache_transfer.discard_installed(self._environ)
        except OSError as err:
            log.warning("kiln: cannot remove the caches installed from the archive: %s", err)
            return
        if removed:
            self._state.notes.append(
                f"removed the {removed} cache files installed from the refused archive"
            )

    def _bind(self, device: int) -> None:
        state = self._state
        state.region_slot = rank_slot(state.rank, self._environ)
        contributions = self.hook.kiln_fingerprint(ctx=self.ctx)
        state.fingerprint = fingerprint.merge(contributions, "kiln_fingerprint")
        self._manifest = job.JobManifest(
            self._environ.get(environment.JOB) or None,
            state.rank,
            state.world_size,
            self._layout,
            _topology_facts(self._read_topology()),
        )
        session = self._session()
        if state.mode is RunMode.LOAD:
            try:
                # The job first: a layout or topology that differs is named as such, before
                # the fingerprint's fields that follow from it (the region's base, say).
                if state.archive_dir is not None:
                    job.check(state.archive_dir, self._manifest)
                state.recorded = session.open_checked(state.fingerprint)
            except (FingerprintMismatch, ArchiveError) as err:
                # One rank alone turning into SAVE while the others LOAD would make them
                # disagree on every later stage; with several ranks the policy decides.
                if not state.auto or state.world_size > 1:
                    raise
                # Auto mode chose LOAD from the launcher's partial fingerprint; the full one
                # says the archive is stale, so this start replaces it.
                session.close_reader()
                state.mode = RunMode.SAVE
                state.notes.append(
                    f"auto: saving a new archive, the existing one is unusable: {err}"
                )
                log.info("kiln: %s", state.notes[-1])
        if state.mode is RunMode.SAVE:
            session.lock()
        self._rt().bind(device, state.mode, session.reader, slot=state.region_slot)

    def _check_warmup(self, phase: WarmupPhase, action: WarmupAction) -> None:
        state = self._state
        if state.mode is RunMode.SAVE:
            self._record.warmup[phase.name] = action.value
        elif state.mode is RunMode.LOAD:
            saved = state.recorded.get("warmup", {}).get(phase.name)
            # Only RUN allocates in the region; it must happen in both runs or in neither.
            if (saved == WarmupAction.RUN) != (action is WarmupAction.RUN):
                raise WarmupMismatch(phase.name, saved, action.value)

    def _finish_builds(self) -> None:
        state = self._state
        if state.mode is not RunMode.LOAD or not self._restored:
            return
        if state.config.load_builds is not LoadBuilds.BEFORE_READY:
            return

        def work() -> None:
            try:
                self._at_ready = self._rt().finish_restores()
            except UsageError:
                raise
            except KilnError as err:
                # The policy applies as in any stage; its message says what a fallback means
                # once the engine holds restored graphs.
                raise BuildsFailed(err) from err

        self._stage(Stage.BUILDS_FINISHED, work, _none)

    def _restore_progress(self) -> RestoreProgress | None:
        if not self._restored or self._runtime is None:
            return None  # nothing restored in this process: nothing is being built
        try:
            return self._runtime.restore_progress()
        except Exception:  # a report field, not worth failing the start for
            log.exception("kiln: runtime.restore_progress() failed")
            return None

    def _commit(self) -> None:
        if self._state.mode is RunMode.SAVE:
            sections = dict(self._rt().sections())
            if self._state.rank == 0:  # one cache directory for all ranks, in rank 0's archive
                sections.update(self._cache_sections(sections))
            assert self._manifest is not None  # device_bound made it
            self._session().commit(sections, self._state.fingerprint, self._record, self._manifest)

    def _cache_sections(self, runtime_sections: Mapping[str, object]) -> dict[str, bytes]:
        stored = cache_transfer.store(self._environ, self._state.fingerprint)
        if stored.note:
            self._state.notes.append(stored.note)
            log.warning("kiln: %s", stored.note)
        clash = sorted(set(stored.sections) & set(runtime_sections))
        if clash:
            raise InvalidHookResult("Runtime.sections", f"section {clash[0]!r} is the driver's")
        self._caches_stored = stored.summary
        return stored.sections

    def _caches_report(self) -> dict[str, Any] | None:
        try:
            return cache_report.summarize(self._environ, self._caches_stored)
        except Exception:  # a report field, not worth failing the report for
            log.exception("kiln: summarizing the cache directory failed")
            return None

    def _publish(self, report: StartupReport, level: int = logging.INFO) -> None:
        log.log(level, "%s", report.log_line())
        if self._state.archive_dir is None:
            return
        path = archive_io.report_file(self._state.archive_dir, self._state.rank)
        try:
            write_report(report, path)
        except OSError as err:  # the report is informative; it must not stop a working engine
            log.warning("kiln: cannot write startup report %s: %s", path, err)

    def _session(self) -> ArchiveSession:
        if self._archive is None:
            path = self.ctx.archive_path
            if path is None:
                raise ConfigError("archive.dir", "environment", "no archive directory is set")
            self._archive = ArchiveSession(path)
        return self._archive

    def _rt(self) -> Runtime:
        if self._runtime is None:
            self._runtime = default_runtime(self._state.config)
        return self._runtime

    def _bytes_mapped(self) -> int:
        if self._runtime is None:
            return 0
        try:
            return self._runtime.bytes_mapped()
        except Exception:  # a report field, not worth failing the report for
            log.exception("kiln: runtime.bytes_mapped() failed")
            return 0

    def _abandon(self) -> None:
        self._release()
        if self._runtime is not None:
            try:
                self._runtime.abandon()
            except Exception:
                log.exception("kiln: runtime.abandon() failed")

    def _release(self) -> None:
        if self._archive is not None:
            self._archive.release()

    def _plugins(
        self,
        pm: pluggy.PluginManager | None,
        engine: str,
        adapter: object | None,
        extra: Sequence[object],
        config: Config,
    ) -> pluggy.PluginManager:
        if pm is None:
            pm = make_plugin_manager()
            register_adapters(pm, discover_adapters(disabled=config.disable_adapters), engine)
        if not pm.has_plugin(CORE_PLUGIN_NAME):
            register(pm, CoreDefaults(self._rt), CORE_PLUGIN_NAME)
        if adapter is not None and not pm.is_registered(adapter):
            register(pm, adapter, f"adapter:{engine}")
        for index, plugin in enumerate(extra):
            if not pm.is_registered(plugin):
                register(pm, plugin, f"extra:{index}:{type(plugin).__name__}")
        return pm


# --- helpers -------------------------------------------------------------------------------------


def _none(_err: KilnError | None) -> None:
    return None


def _topology_facts(facts: Mapping[str, object]) -> dict[str, FingerprintValue]:
    out: dict[str, FingerprintValue] = {}
    for key, value in facts.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise InvalidHookResult("topology", f"{key!r} is {value!r}, not a string or an int")
        out[key] = value
    return out


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _kv(value: object, where: str) -> dict[str, int]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidHookResult(where, f"a KV capacity is a non-empty mapping, got {value!r}")
    for name, count in value.items():
        if not isinstance(name, str) or not isinstance(count, int) or isinstance(count, bool):
            raise InvalidHookResult(
                where, f"KV capacity entries are str: int, got {name!r}: {count!r}"
            )
        if not 0 <= count < 1 << 63:
            raise InvalidHookResult(where, f"KV capacity {name!r} is {count}, outside [0, 2**63)")
    return dict(value)
