"""One sync run, stage by stage.

1. plan: key sets, cursor windows, the guard (`pipelines.sync.plan`, `pipelines.window`,
   `pipelines.sync.orphans`);
2. change sets per table (`pipelines.sync.changes`);
3. load: the dlt merge or the bulk path (`pipelines.sync.load`, `pipelines.sync.bulk`);
4. verify, reconciling runs: what still differs after the load (`pipelines.sync.verify`);
5. record: the runner writes the audit (`pipelines.runner`, `pipelines.record.audit`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pipelines.adapters.connections import Connections
from pipelines.adapters.kimai import Kimai
from pipelines.adapters.layout import TableLayout
from pipelines.adapters.replica import PostgresReplica, Replica, open_replica
from pipelines.config import Settings
from pipelines.errors import MassDeleteRefused
from pipelines.record import changelog
from pipelines.registry import TableSpec
from pipelines.sync.bulk import BulkLoader
from pipelines.sync.changes import ChangeSet
from pipelines.sync.load import (
    BULK_WORKERS,
    TableLoad,
    bulk_loads,
    collect_ahead,
    prepare_pipeline,
    run_dlt,
)
from pipelines.sync.orphans import find_orphans
from pipelines.sync.plan import TablePlan, check_mass_delete, plan_tables, supports_fingerprints
from pipelines.sync.verify import unrepaired
from pipelines.types import BulkWrite, LoadResult, SyncOptions, SyncResult, TableStats
from pipelines.window import Window, incremental_window

log = logging.getLogger("pipelines.sync")

MASS_DELETE_MIN_ROWS = 20
"""Deletes below this count never trip the guard: small tables lose rows in normal use."""


def sync(
    settings: Settings,
    specs: Sequence[TableSpec],
    options: SyncOptions | None = None,
    allow_mass_delete: bool = False,
    progress: Callable[[str], None] | None = None,
    dry_run: bool = False,
    before_write: Callable[[str], None] | None = None,
    connections: Connections | None = None,
) -> SyncResult:
    """Make the replica of the given tables equal to Kimai.

    Args:
        settings: Runtime settings.
        specs: Registry entries to sync.
        options: Full refresh, backfill date, overlap.
        allow_mass_delete: Skip the mass-delete guard.
        progress: Called with one human line per step.
        dry_run: Plan and count what would change; write nothing, keep the state.
        before_write: Called with what is about to be written, before each write; raises
            to stop the run (`pipelines.lock.HeldLock.check`).
        connections: Kept connections and layouts to use and leave open (the follower);
            None: the run opens its own and closes them.

    Returns:
        Per-table counts.

    Raises:
        PipelineError: Bad configuration, unreachable database, guard tripped, load failed.

    """
    started = time.monotonic()
    options = options or SyncOptions(overlap_seconds=settings.overlap_seconds)
    run = _Run(settings, options, dry_run, allow_mass_delete, progress, before_write, connections)
    try:
        run.connect(specs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlt") as setup:
            # importing dlt and reading its state overlaps the key sweeps ...
            prepared = setup.submit(prepare_pipeline, settings, dry_run)
            change_sets = run.changes(run.plans(lambda: prepared.result()[2]))
            # ... and the first loads of empty tables, which no pending dlt package touches
            run.bulk_loads([c for c in change_sets if c.plan.replica_count == 0])
            pipeline, resumed, states = prepared.result()
        run.result.resumed_pending = resumed
        if resumed and not dry_run:
            # an interrupted load was just completed: what was read before it is stale
            change_sets = run.changes(run.plans(lambda: states))
        loaded = run.preview(pipeline, change_sets) if dry_run else run.load(pipeline, change_sets)
        run.result.tables = run.stats(change_sets, loaded)
    finally:
        run.close()
    run.result.seconds = time.monotonic() - started
    return run.result


class _Run:
    """One sync run's connections and settings, and its stages as methods, in order."""

    synced_at: dt.datetime
    """The ``synced_at`` of every row this run writes: taken once `connect` is done."""

    def __init__(
        self,
        settings: Settings,
        options: SyncOptions,
        dry_run: bool,
        allow_mass_delete: bool,
        progress: Callable[[str], None] | None,
        before_write: Callable[[str], None] | None,
        connections: Connections | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.dry_run = dry_run
        self.allow_mass_delete = allow_mass_delete
        self.say = progress or (lambda _line: None)
        self.check = before_write or (lambda _what: None)
        self.result = SyncResult(dry_run=dry_run)
        self.kept = connections
        self.kimai = connections.kimai if connections else Kimai(settings)
        self.replica = connections.replica if connections else open_replica(settings)
        self.kimai.bytes_read.clear()  # a kept connection counts this run's reads only
        # index builds after first loads run beside dlt's work
        self.finisher = ThreadPoolExecutor(max_workers=BULK_WORKERS, thread_name_prefix="index")
        self.finishing: list[Future] = []
        self.layouts: list[TableLayout] = []
        self.bulk_writes: dict[str, BulkWrite] = {}
        """What the streaming COPY wrote of each table, for this run's change sets."""
        streams = isinstance(self.replica, PostgresReplica) and not dry_run
        self.bulk = BulkLoader(settings, self.check) if streams else None

    def connect(self, specs: Sequence[TableSpec]) -> None:
        """Check both databases and read the tables' layouts."""
        self.kimai.check()
        self.replica.check()
        self.layouts = self.kept.layouts(specs) if self.kept else self.kimai.layouts(specs)
        if not self.dry_run:
            # the orphan check reads the foreign-key indexes (a replica made before they
            # existed gets them here, once)
            self.check("the replica's indexes")
            self.replica.ensure_indexes(self.layouts)
            changelog.ensure(self.replica, self.layouts)
        self.synced_at = dt.datetime.now(dt.UTC)

    def plans(self, states: Callable[[], dict[str, dict[str, Any]]]) -> list[TablePlan]:
        """Stage 1: every table's plan, past the mass-delete guard, with its orphans."""
        plans = _plan(
            self.kimai,
            self.replica,
            self.layouts,
            self.options,
            states,
            self.settings.key_digests,
        )
        try:
            check_mass_delete(
                plans,
                self.settings.mass_delete_max_share,
                MASS_DELETE_MIN_ROWS,
                self.allow_mass_delete,
                self.options.sweep,
            )
        except MassDeleteRefused as exc:
            if not self.dry_run:
                raise
            # a dry run previews what the guard would stop
            self.result.guard_refusal = str(exc)
        # the plan stage's last step: rows whose parent this run deletes or that moved
        return [
            dataclasses.replace(p, orphans=find_orphans(p, plans, self.replica))
            if p.checks_references(self.options.full_refresh)
            else p
            for p in plans
        ]

    def changes(self, plans: list[TablePlan]) -> list[ChangeSet]:
        """Stage 2: one change set per table (new plans: none is written yet)."""
        self.bulk_writes = {}
        return [
            ChangeSet(
                p,
                self.kimai,
                self.replica,
                self.options,
                self.synced_at,
                self.say,
                bulk_path=self.bulk is not None,
            )
            for p in plans
        ]

    def bulk_loads(self, change_sets: list[ChangeSet]) -> None:
        """Stage 3, whole tables: the streaming COPY of those that take it (once each)."""
        if self.bulk is None:
            return
        todo = [c for c in change_sets if c.bulk_path and c.plan.name not in self.bulk_writes]
        written, finishing = bulk_loads(todo, self.bulk, self.finisher)
        self.bulk_writes.update(written)
        self.finishing += finishing

    def load(self, pipeline: Any, change_sets: list[ChangeSet]) -> list[LoadResult]:
        """Stage 3: write every change set, then keep the replica's indexes and log.

        Stage 4 of a reconciling run follows: what still differs.
        """
        self.bulk_loads(change_sets)
        loads = [TableLoad(c, self.bulk_writes.get(c.plan.name)) for c in change_sets]
        if collect_ahead(pipeline, loads):
            run_dlt(pipeline, loads, self.settings.retry, lambda: self.check("the merge"))
        for future in self.finishing:
            future.result()
        self.check("the change log's upkeep")
        self.replica.ensure_indexes(self.layouts)
        # tables created by this run's loads get their triggers (and a rewrite row)
        changelog.ensure(self.replica, self.layouts)
        changelog.prune(self.replica)
        return [LoadResult(c.plan.name, c.counts, self._unrepaired(c)) for c in change_sets]

    def _unrepaired(self, change_set: ChangeSet) -> int | None:
        """Stage 4, reconciling runs: the table's rows that still differ after the load."""
        if not self.options.reconcile:
            return None
        return unrepaired(change_set.plan, self.kimai, self.replica, self.synced_at)

    def preview(self, pipeline: Any, change_sets: list[ChangeSet]) -> list[LoadResult]:
        """A dry run's stage 3: count what each table would write."""
        for c in change_sets:
            if c.streams_through_dlt:
                c.preview_rewrite()
        collect_ahead(pipeline, [TableLoad(c) for c in change_sets], dry_run=True)
        return [LoadResult(c.plan.name, c.counts) for c in change_sets]

    def stats(self, change_sets: list[ChangeSet], loaded: list[LoadResult]) -> list[TableStats]:
        """Every table's figures, from its plan and what its load left."""
        return [
            TableStats.of(
                result,
                kimai_rows=c.plan.kimai_count,
                replica_rows_before=c.plan.replica_count,
                orphans=c.plan.orphans_reread,
                fingerprint=None if c.plan.comparer is None else c.plan.comparer.stats,
                kimai_bytes_read=self.kimai.bytes_read.get(c.plan.name, 0),
            )
            for c, result in zip(change_sets, loaded, strict=True)
        ]

    def close(self) -> None:
        """Wait for index builds, then close both connections (unless they are kept)."""
        self.finisher.shutdown(wait=True)
        if self.kept is None:
            self.kimai.close()
            self.replica.close()


def _plan(
    kimai: Kimai,
    replica: Replica,
    layouts: Sequence[TableLayout],
    options: SyncOptions,
    states: Callable[[], dict[str, dict[str, Any]]],
    digests: bool = False,
) -> list[TablePlan]:
    has_rows = {layout.spec.name: replica.has_rows(layout.spec.replica_table) for layout in layouts}

    incremental = [layout for layout in layouts if layout.sync == "incremental"]

    def windows(stored: dict[str, dict[str, Any]]) -> dict[str, Window]:
        return {
            layout.spec.name: incremental_window(
                stored.get(layout.spec.name, {}),
                options,
                has_rows[layout.spec.name],
                lambda layout=layout: replica.newest_cursor(layout),
            )
            for layout in incremental
        }

    def confirm() -> dict[str, Window]:
        # the stored cursors matter only where there are rows to compare with
        return windows(states()) if any(has_rows[lay.spec.name] for lay in incremental) else {}

    # both servers can compute range digests
    capable = supports_fingerprints(kimai, replica)
    # reconcile compares whole rows by range digests where both servers compute them
    fingerprint = {
        layout.spec.name
        for layout in layouts
        if options.reconcile
        and not options.full_refresh
        and layout.sync == "incremental"
        and len(layout.key) == 1
        and has_rows[layout.spec.name]
        and capable
    }
    empty = {name for name, rows in has_rows.items() if not rows}
    scopes = {
        name: scope
        for name, scope in (options.scopes or {}).items()
        if name not in empty and name not in fingerprint
    }
    # tables read by cursor miss Kimai's silent moves of their rows to another parent; a
    # binlog tick's moves are logged UPDATEs, its cascades derived (`sync.scope`)
    references = {
        layout.spec.name
        for layout in incremental
        if layout.spec.references
        and has_rows[layout.spec.name]
        and not options.full_refresh
        and layout.spec.name not in scopes
    }
    # the replica's newest cursor value stands in until dlt's state is read (they agree
    # unless a load was aborted): the window query need not wait for dlt
    return plan_tables(
        kimai,
        replica,
        layouts,
        windows({}),
        fingerprint,
        empty,
        confirm,
        digests=digests and capable,
        references=references,
        sweep=options.sweep,
        scopes=scopes,
    )
