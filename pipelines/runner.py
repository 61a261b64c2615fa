"""A whole run as the command line starts it: lock, audit record, sync and/or dbt build."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipelines import build_gate, deadline
from pipelines.adapters.connections import Connections
from pipelines.adapters.replica import open_replica
from pipelines.config import Settings
from pipelines.deadline import run_deadline
from pipelines.errors import EXIT_DATABASE, EXIT_OK, LockLost, PipelineError
from pipelines.lock import HeldLock, run_lock
from pipelines.paths import dbt_work_dir, dlt_pipelines_dir, record_last_run
from pipelines.publish import BuildRequest, build
from pipelines.record.audit import Audit, RunRecord, detect_trigger
from pipelines.registry import TableSpec, select_tables
from pipelines.sync import sync
from pipelines.transform import TransformResult
from pipelines.types import SyncOptions, SyncResult

log = logging.getLogger("pipelines.runner")


@dataclass
class RunRequest:
    """What the caller asked for."""

    command: str
    sync: bool = True
    transform: bool = False
    tables: list[str] | None = None
    options: SyncOptions = field(default_factory=SyncOptions)
    allow_mass_delete: bool = False
    dry_run: bool = False
    wait_seconds: float = 0.0
    trigger: str | None = None
    build: BuildRequest = field(default_factory=BuildRequest)
    """dbt selection and full refresh of the transform."""
    dbt_dir: Path | None = None
    """Where dbt keeps its target and logs; a per-database temporary directory by default."""
    started_by: str | None = None
    """Recorded in the audit; the operating system user when None (the API: the token's name)."""
    on_start: Callable[[str], None] | None = None
    """Called with the run id once the audit row exists (the API answers with it)."""
    record_quiet: bool = True
    """Record the run in the audit even when it changed no row and built nothing (False: a
    follower tick, whose quiet ticks leave only its heartbeat, `pipelines.follow`)."""
    connections: Connections | None = None
    """Connections and layouts the caller keeps between runs (the follower); the run uses
    them and leaves them open. None: the run opens its own."""


@dataclass
class RunOutcome:
    """What the run did."""

    sync: SyncResult | None = None
    transform: TransformResult | None = None
    """The dbt build; None when there was none (or `unchanged` says why not)."""
    unchanged: str | None = None
    """Why the run did no dbt work: nothing the build reads changed (`pipelines.build_gate`)."""
    run_id: str | None = None


def execute(
    settings: Settings,
    request: RunRequest,
    say: Callable[[str], None] | None = None,
    outcome: RunOutcome | None = None,
) -> RunOutcome:
    """Run a sync and/or dbt build under the run lock, recording it in the audit tables.

    Args:
        settings: Runtime settings.
        request: What to run.
        say: Called with one human line per step.
        outcome: Filled in as the run goes (so a caller sees what a failed run did);
            a new one when omitted.

    Raises:
        PipelineError: The contract's failures (config, lock held, database, data test).

    """
    say = say or (lambda _line: None)
    for warning in settings.tls_warnings():
        log.warning("%s", warning)
    specs = select_tables(request.tables)
    outcome = outcome if outcome is not None else RunOutcome()
    # a missing database file or an unusable working directory is a configuration error,
    # found before anything starts (and before the lock creates a DuckDB file's neighbour)
    if request.sync:
        settings.require_kimai_file()
        dlt_pipelines_dir(settings)
    else:
        settings.require_atlas_file()  # only a run that syncs may create Atlas DB's file
    if request.transform:
        dbt_work_dir(settings)
    postgres = settings.atlas_dialect == "postgresql"
    with (
        run_lock(settings, request.wait_seconds) as lock,
        run_deadline(settings.limits.run, lock.cancel_statements if postgres else None) as halt,
    ):
        started = time.monotonic()
        succeeded = False
        try:
            _run_locked(settings, request, lock, halt, specs, outcome, say)
            succeeded = True
        finally:
            if not request.dry_run:  # a dry run is no run of the metrics
                _remember(settings, succeeded, time.monotonic() - started)
    return outcome


def _run_locked(
    settings: Settings,
    request: RunRequest,
    lock: HeldLock,
    halt: Callable[[], None],
    specs: list[TableSpec],
    outcome: RunOutcome,
    say: Callable[[str], None],
) -> None:
    """The run itself, under its lock and deadline, recorded in the audit."""
    kept = request.connections
    replica = kept.replica if kept is not None else open_replica(settings)
    audit = Audit(replica, lock.fence()) if not request.dry_run else None
    record = None
    began = dt.datetime.now(dt.UTC)

    def recorded() -> RunRecord | None:
        """The run's audit row, written when first needed (with the run's own start)."""
        nonlocal record
        if audit is not None and record is None:
            record = _start_record(audit, request, began)
            outcome.run_id = record.run_id
        return record

    try:
        if audit is not None:
            audit.ensure_tables()
            if request.record_quiet:
                recorded()
        if request.sync:
            outcome.sync = sync(
                settings,
                specs,
                request.options,
                allow_mass_delete=request.allow_mass_delete,
                progress=say,
                dry_run=request.dry_run,
                before_write=lock.check,
                connections=kept,
            )
            if audit is not None and (record is not None or _changed(outcome.sync)):
                lock.check("the audit")
                audit.record_tables(recorded(), outcome.sync.tables, request.options.reconcile)
        if request.transform:
            _transform(settings, request, lock, audit, recorded, outcome)
        if audit is not None:
            lock.check("the audit")
    except LockLost:
        raise  # writes nothing more: the next run marks this one crashed
    except BaseException as exc:
        halt()  # the deadline's watchdog must not cancel the audit's own write
        error = _timed_out_or(exc)
        if audit is not None and not request.record_quiet:
            with suppress(Exception):  # what failed may be Atlas DB itself: say that, not this
                recorded()  # a failed follower tick is recorded, its quiet ticks are not
        if audit is not None and record is not None:
            if isinstance(error, PipelineError):
                code, message = error.exit_code, str(error)
            else:
                first = (str(exc).strip().splitlines() or [""])[0]
                code, message = EXIT_DATABASE, f"{type(exc).__name__}: {first}"
            # fenced: a run that lost its lock meanwhile records nothing (LockLost)
            audit.finish(record, "failed", code, message)
        if error is not exc:
            raise error from exc
        raise
    else:
        halt()
        if audit is not None and record is not None:
            audit.finish(record, "success", EXIT_OK)
    finally:
        if kept is None:
            replica.close()


def _start_record(audit: Audit, request: RunRequest, began: dt.datetime) -> RunRecord:
    """Write the run's audit row (and tell the caller its id)."""
    options = {**asdict(request.options), "tables": request.tables}
    if request.options.scopes is not None:  # a binlog tick: how many keys, not which
        options["scopes"] = {name: s.size for name, s in request.options.scopes.items()}
    if request.transform:
        options["build"] = asdict(request.build)
    record = audit.start(
        request.command,
        detect_trigger(request.trigger),
        options,
        started_by=request.started_by,
        started_at=began,
    )
    if request.on_start is not None:
        request.on_start(record.run_id)
    return record


def _changed(result: SyncResult) -> bool:
    """Whether the sync wrote any row."""
    return any(t.inserted or t.updated or t.deleted for t in result.tables)


def _remember(settings: Settings, succeeded: bool, seconds: float) -> None:
    """Keep the run's outcome on this host, for metrics that must not miss a failure."""
    try:
        record_last_run(settings, "success" if succeeded else "failed", seconds)
    except OSError as exc:
        log.warning("could not record the run's outcome for the metrics: %s", exc)


def _transform(
    settings: Settings,
    request: RunRequest,
    lock: HeldLock,
    audit: Audit | None,
    recorded: Callable[[], RunRecord | None],
    outcome: RunOutcome,
) -> None:
    """The dbt build and its publication, recorded in the run's audit row.

    A scheduled run (`run`) or follower tick (`follow`) whose build inputs did not change
    since the last green build does no dbt work and records its build as unchanged
    (`pipelines.build_gate`); a follower tick that changed nothing records nothing at all.
    """
    lock.check("the dbt build")
    if audit is None:
        outcome.transform = build(
            settings,
            request.build,
            target_dir=request.dbt_dir,
            on_publish=lambda _cursor: lock.check("publishing the build"),
        )
        return
    # a selection tests part of the project only: no later run may rely on it
    whole = not request.build.select
    inputs = _build_inputs(settings, audit) if whole else None
    wanted = request.build
    if request.command in ("run", "follow") and whole and inputs is not None:
        verdict = build_gate.decide(settings, audit.replica, audit.runs, inputs)
        if not verdict.build:
            if request.record_quiet or outcome.run_id is not None:
                audit.build_unchanged(recorded(), inputs.to_json())
            log.info("no dbt build: %s", verdict.reason)
            outcome.unchanged = verdict.reason
            return
        log.info("dbt build: %s", verdict.reason)
        if verdict.delta:
            inputs = replace(inputs, audit="delta")
            wanted = replace(
                wanted,
                delta=True,
                keep_views=verdict.keep_views,
                changed_tables=verdict.changed_tables,
                since=verdict.since,
            )
    record = recorded()
    assert record is not None
    audit.build_started(record, inputs.to_json() if inputs is not None else None)

    def publish(cursor: object) -> None:
        # inside the swap's transaction: a lost lock rolls the swap back
        lock.check("publishing the build")
        audit.mark_published(record, cursor)

    try:
        outcome.transform = build(settings, wanted, target_dir=request.dbt_dir, on_publish=publish)
    except LockLost:
        raise  # writes nothing more
    except PipelineError as exc:
        # fenced: raises LockLost instead when the lock went meanwhile
        audit.build_failed(record, str(_timed_out_or(exc)))
        raise


def _build_inputs(settings: Settings, audit: Audit) -> build_gate.BuildInputs | None:
    """What the build reads, or None (it builds, and no later run skips on its record)."""
    try:
        return build_gate.read_inputs(settings, audit.replica)
    except Exception as exc:  # a gate that cannot decide must not fail the run: it builds
        log.warning("could not read the build's inputs, so it runs: %s", exc)
        return None


def _timed_out_or(exc: BaseException) -> BaseException:
    """`exc`, or the deadline's error when the run failed because its deadline passed.

    What fails first at the deadline is a cancelled statement (a database error, or a
    failed dbt model); the audit and the exit should say why it was cancelled.
    """
    if isinstance(exc, Exception) and deadline.expired():
        return deadline.timed_out()
    return exc
