"""One sync run, stage by stage.

1. plan: key sets, cursor windows, the guard (`pipelines.sync.plan`, `pipelines.window`,
   `pipelines.sync.orphans`);
2. change sets per table (`pipelines.sync.changes`);
3. load: the dlt merge or the bulk path (`pipelines.sync.load`, `pipelines.sync.bulk`);
4. record: the runner writes the audit (`pipelines.runner`, `pipelines.record.audit`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.layout import TableLayout
from pipelines.adapters.replica import PostgresReplica, Replica, open_replica
from pipelines.config import Settings
from pipelines.errors import MassDeleteRefused
from pipelines.record import changelog
from pipelines.registry import TableSpec
from pipelines.sync.bulk import BulkLoader
from pipelines.sync.changes import TableExtractor
from pipelines.sync.load import BULK_WORKERS, bulk_loads, prepare_pipeline, run_dlt, stored_states
from pipelines.sync.orphans import find_orphans
from pipelines.sync.plan import TablePlan, check_mass_delete, plan_tables, supports_fingerprints
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

    Returns:
        Per-table counts.

    Raises:
        PipelineError: Bad configuration, unreachable database, guard tripped, load failed.

    """
    started = time.monotonic()
    options = options or SyncOptions(overlap_seconds=settings.overlap_seconds)
    run = _Run(settings, options, dry_run, allow_mass_delete, progress, before_write)
    try:
        run.connect(specs)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlt") as setup:
            # importing dlt and reading its state overlaps the key sweeps ...
            prepared = setup.submit(prepare_pipeline, settings, dry_run)
            extractors = run.changes(run.plans(lambda: prepared.result()[2]))
            # ... and the first loads of empty tables, which no pending dlt package touches
            run.bulk_loads([e for e in extractors if e.plan.replica_count == 0])
            pipeline, resumed, states = prepared.result()
        run.result.resumed_pending = resumed
        if resumed and not dry_run:
            # an interrupted load was just completed: what was read before it is stale
            extractors = run.changes(run.plans(lambda: states))
        loaded = run.preview(pipeline, extractors) if dry_run else run.load(pipeline, extractors)
        run.result.tables = run.stats(extractors, loaded)
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
    ) -> None:
        self.settings = settings
        self.options = options
        self.dry_run = dry_run
        self.allow_mass_delete = allow_mass_delete
        self.say = progress or (lambda _line: None)
        self.check = before_write or (lambda _what: None)
        self.result = SyncResult(dry_run=dry_run)
        self.kimai = Kimai(settings)
        self.replica = open_replica(settings)
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
        self.layouts = self.kimai.layouts(specs)
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

    def changes(self, plans: list[TablePlan]) -> list[TableExtractor]:
        """Stage 2: one change set maker per table (new plans: none is written yet)."""
        self.bulk_writes = {}
        return [
            TableExtractor(
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

    def bulk_loads(self, extractors: list[TableExtractor]) -> None:
        """Stage 3, whole tables: the streaming COPY of those that take it (once each)."""
        if self.bulk is None:
            return
        todo = [e for e in extractors if e.bulk_path and e.plan.name not in self.bulk_writes]
        written, finishing = bulk_loads(todo, self.bulk, self.finisher)
        self.bulk_writes.update(written)
        self.finishing += finishing

    def load(self, pipeline: Any, extractors: list[TableExtractor]) -> list[LoadResult]:
        """Stage 3: write every change set, then keep the replica's indexes and log."""
        self.bulk_loads(extractors)
        if _collect(pipeline, extractors, self.bulk_writes):
            run_dlt(pipeline, extractors, self.settings.retry, lambda: self.check("the merge"))
        for future in self.finishing:
            future.result()
        self.check("the change log's upkeep")
        self.replica.ensure_indexes(self.layouts)
        # tables created by this run's loads get their triggers (and a rewrite row)
        changelog.ensure(self.replica, self.layouts)
        changelog.prune(self.replica)
        return [
            LoadResult(e.plan.name, e.counts, e.unrepaired() if self.options.reconcile else None)
            for e in extractors
        ]

    def preview(self, pipeline: Any, extractors: list[TableExtractor]) -> list[LoadResult]:
        """A dry run's stage 3: count what each table would write."""
        for e in extractors:
            if e.streams_through_dlt:
                e.preview_rewrite()
        _collect(pipeline, extractors, dry_run=True)
        return [LoadResult(e.plan.name, e.counts) for e in extractors]

    def stats(self, extractors: list[TableExtractor], loaded: list[LoadResult]) -> list[TableStats]:
        """Every table's figures, from its plan and what its load left."""
        return [
            TableStats.of(
                result,
                kimai_rows=e.plan.kimai_count,
                replica_rows_before=e.plan.replica_count,
                orphans=e.plan.orphans_reread,
                fingerprint=None if e.plan.comparer is None else e.plan.comparer.stats,
                kimai_bytes_read=self.kimai.bytes_read.get(e.plan.name, 0),
            )
            for e, result in zip(extractors, loaded, strict=True)
        ]

    def close(self) -> None:
        """Wait for index builds, then close both connections."""
        self.finisher.shutdown(wait=True)
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
    # tables read by cursor miss Kimai's silent moves of their rows to another parent
    references = {
        layout.spec.name
        for layout in incremental
        if layout.spec.references and has_rows[layout.spec.name] and not options.full_refresh
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
    )


def _collect(
    pipeline: Any,
    extractors: list[TableExtractor],
    bulk_writes: dict[str, BulkWrite] | None = None,
    dry_run: bool = False,
) -> bool:
    """Compute every change set ahead of dlt; tell whether dlt has anything to do.

    Large change sets (`TableExtractor.chunked`) are not held: dlt streams them, and a dry
    run counts them without keeping the rows. A table the streaming COPY wrote
    (`bulk_writes`) has only its cursor left to store.

    Returns:
        False when no table has rows to write, no stored state would change and no table is
        rewritten through dlt: the run can skip dlt's extract, normalize and load.

    """
    states = stored_states(pipeline)
    work = False
    for e in extractors:
        stored = states.get(e.layout.spec.name, {})
        if e.chunked and dry_run:
            for _ in e.rows(copy.deepcopy(stored)):
                pass  # counted, not kept: memory stays bounded
            continue
        if e.streams_through_dlt or e.chunked:
            work = True
            continue
        e.collect(copy.deepcopy(stored), (bulk_writes or {}).get(e.plan.name))
        work = work or e.has_output or e.collected_state != stored
    return work
