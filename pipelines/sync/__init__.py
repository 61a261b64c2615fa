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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.layout import TableLayout
from pipelines.adapters.replica import PostgresReplica, Replica, open_replica
from pipelines.config import Settings
from pipelines.diff import keys_not_in
from pipelines.errors import MassDeleteRefused
from pipelines.record import changelog
from pipelines.registry import TableSpec
from pipelines.sync.bulk import BulkLoader
from pipelines.sync.changes import TableExtractor
from pipelines.sync.load import BULK_WORKERS, bulk_loads, prepare_pipeline, run_dlt, stored_states
from pipelines.sync.orphans import find_orphans
from pipelines.sync.plan import TablePlan, check_mass_delete, plan_tables, supports_fingerprints
from pipelines.types import SyncOptions, SyncResult, TableStats
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
    say = progress or (lambda _line: None)
    check = before_write or (lambda _what: None)
    options = options or SyncOptions(overlap_seconds=settings.overlap_seconds)
    result = SyncResult(dry_run=dry_run)
    kimai = Kimai(settings)
    replica = open_replica(settings)
    # index builds after first loads run beside dlt's work
    finisher = ThreadPoolExecutor(max_workers=BULK_WORKERS, thread_name_prefix="index")
    try:
        kimai.check()
        replica.check()
        layouts = kimai.layouts(specs)
        if not dry_run:
            # the orphan check reads the foreign-key indexes (a replica made before they
            # existed gets them here, once)
            check("the replica's indexes")
            replica.ensure_indexes(layouts)
            changelog.ensure(replica, layouts)
        synced_at = dt.datetime.now(dt.UTC)
        streams = isinstance(replica, PostgresReplica) and not dry_run
        bulk = BulkLoader(settings, check) if streams else None

        def prepare(plans: list[TablePlan]) -> list[TableExtractor]:
            try:
                check_mass_delete(
                    plans, settings.mass_delete_max_share, MASS_DELETE_MIN_ROWS, allow_mass_delete
                )
            except MassDeleteRefused as exc:
                if not dry_run:
                    raise
                # a dry run previews what the guard would stop
                result.guard_refusal = str(exc)
            # the plan stage's last step: rows whose parent this run deletes or that moved
            plans = [
                dataclasses.replace(p, orphans=find_orphans(p, plans, replica))
                if p.checks_references(options.full_refresh)
                else p
                for p in plans
            ]
            result.tables = [
                TableStats(
                    p.name,
                    kimai_rows=p.kimai_count,
                    replica_rows_before=p.replica_count,
                    orphans=0 if p.orphans is None else len(keys_not_in(p.orphans, p.deleted)),
                )
                for p in plans
            ]
            return [
                TableExtractor(p, kimai, replica, options, synced_at, stats, say, bulk is not None)
                for p, stats in zip(plans, result.tables, strict=True)
            ]

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlt") as setup:
            # importing dlt and reading its state overlaps the key sweeps ...
            prepared = setup.submit(prepare_pipeline, settings, dry_run)
            extractors = prepare(
                _plan(
                    kimai,
                    replica,
                    layouts,
                    options,
                    lambda: prepared.result()[2],
                    settings.key_digests,
                )
            )
            # ... and the first loads of empty tables, which no pending dlt package touches
            finishing = (
                bulk_loads([e for e in extractors if e.plan.replica_count == 0], bulk, finisher)
                if bulk is not None
                else []
            )
            pipeline, resumed, states = prepared.result()
        result.resumed_pending = resumed
        if resumed and not dry_run:
            # an interrupted load was just completed: what was read before it is stale
            extractors = prepare(
                _plan(kimai, replica, layouts, options, lambda: states, settings.key_digests)
            )

        if dry_run:
            for e in extractors:
                if e.streams_through_dlt:
                    e.preview_rewrite()
            _collect(pipeline, extractors, dry_run=True)
        else:
            if bulk is not None:
                finishing += bulk_loads(extractors, bulk, finisher)
            if _collect(pipeline, extractors):
                run_dlt(pipeline, extractors, settings.retry, lambda: check("the merge"))
            for future in finishing:
                future.result()
            check("the change log's upkeep")
            replica.ensure_indexes(layouts)
            # tables created by this run's loads get their triggers (and a rewrite row)
            changelog.ensure(replica, layouts)
            changelog.prune(replica)
            if options.reconcile:
                for e in extractors:
                    e.stats.unrepaired = e.unrepaired()
        for stats in result.tables:
            stats.kimai_bytes_read = kimai.bytes_read.get(stats.table, 0)
    finally:
        finisher.shutdown(wait=True)
        kimai.close()
        replica.close()
    result.seconds = time.monotonic() - started
    return result


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


def _collect(pipeline: Any, extractors: list[TableExtractor], dry_run: bool = False) -> bool:
    """Compute every change set ahead of dlt; tell whether dlt has anything to do.

    Large change sets (`TableExtractor.chunked`) are not held: dlt streams them, and a dry
    run counts them without keeping the rows.

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
        e.collect(copy.deepcopy(stored))
        work = work or e.has_output or e.collected_state != stored
    return work
