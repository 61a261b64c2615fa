"""One sync run: preflight, finish interrupted loads, plan, guard, extract, load, report."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from pipelines.bulk import BulkLoader
from pipelines.config import Settings
from pipelines.dberrors import classify, database_failure, pipeline_error_in, root_cause
from pipelines.diff import keys_not_in
from pipelines.kimai import Kimai
from pipelines.layout import TableLayout
from pipelines.orphans import find_orphans
from pipelines.plan import TablePlan, check_mass_delete, plan_tables
from pipelines.registry import TableSpec
from pipelines.replica import PostgresReplica, Replica, open_replica
from pipelines.retry import RetryPolicy, with_retries
from pipelines.source import (
    TableExtractor,
    kimai_source,
    supports_fingerprints,
)
from pipelines.types import SyncOptions, SyncResult, TableStats
from pipelines.window import Window, incremental_window

log = logging.getLogger("pipelines.sync")

MASS_DELETE_MIN_ROWS = 20
"""Deletes below this count never trip the guard: small tables lose rows in normal use."""


def _configure_dlt() -> None:
    # dlt reads its settings from the environment; these are the product's defaults
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")
    logging.getLogger("dlt").setLevel(logging.WARNING)


def make_pipeline(settings: Settings) -> Any:
    """The dlt pipeline writing the replica schema of the configured Atlas DB."""
    _configure_dlt()
    import dlt

    if settings.atlas_dialect == "duckdb":
        destination = dlt.destinations.duckdb(settings.atlas_url.database)
    else:
        url = settings.atlas_url
        # dlt insists on a password field; an empty one works with trust/peer auth
        creds = url.render_as_string(hide_password=False)
        if url.password is None:
            creds = creds.replace(f"{url.username}@", f"{url.username}:@", 1)
        destination = dlt.destinations.postgres(credentials=creds)
    kwargs: dict[str, Any] = {}
    if settings.state_dir is not None:
        kwargs["pipelines_dir"] = str(settings.state_dir)
    return dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=destination,
        dataset_name=settings.replica_schema,
        progress=None,
        **kwargs,
    )


def finish_pending(pipeline: Any) -> bool:
    """Load packages a killed or failed run left behind; abort them if they cannot load.

    dlt refuses new data while a package is pending. Aborting rewinds the local state to
    before the package, so no cursor ever moves past rows that were not loaded.

    Returns:
        Whether there was pending work.

    """
    if not pipeline.has_pending_data:
        return False
    log.warning("completing a load left by an interrupted run")
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as exc:
        if classify(exc) != "failure":
            raise database_failure("completing the interrupted load failed", exc) from exc
        log.warning("discarding a load package that cannot be loaded: %s", root_cause(exc))
        pipeline.abort_packages()
    return True


def sync(
    settings: Settings,
    specs: Sequence[TableSpec],
    options: SyncOptions | None = None,
    allow_mass_delete: bool = False,
    progress: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> SyncResult:
    """Make the replica of the given tables equal to Kimai.

    Args:
        settings: Runtime settings.
        specs: Registry entries to sync.
        options: Full refresh, backfill date, overlap.
        allow_mass_delete: Skip the mass-delete guard.
        progress: Called with one human line per step.
        dry_run: Plan and count what would change; write nothing, keep the state.

    Returns:
        Per-table counts.

    Raises:
        PipelineError: Bad configuration, unreachable database, guard tripped, load failed.

    """
    started = time.monotonic()
    say = progress or (lambda _line: None)
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
            replica.ensure_indexes(layouts)
        synced_at = dt.datetime.now(dt.UTC)
        streams = isinstance(replica, PostgresReplica) and not dry_run
        bulk = BulkLoader(settings) if streams else None

        def prepare(plans: list[TablePlan]) -> list[TableExtractor]:
            check_mass_delete(
                plans, settings.mass_delete_max_share, MASS_DELETE_MIN_ROWS, allow_mass_delete
            )
            result.tables = [
                TableStats(p.name, kimai_rows=p.kimai_count, replica_rows_before=p.replica_count)
                for p in plans
            ]
            extractors = [
                TableExtractor(p, kimai, replica, options, synced_at, stats, say, bulk)
                for p, stats in zip(plans, result.tables, strict=True)
            ]
            for e in extractors:
                if e.checks_references:
                    e.plan.orphans = find_orphans(e.plan, plans, replica)
                    e.stats.orphans = len(keys_not_in(e.plan.orphans, e.plan.deleted))
            return extractors

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlt") as setup:
            # importing dlt and reading its state overlaps the key sweeps ...
            prepared = setup.submit(_prepare_pipeline, settings)
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
            finishing = _bulk_loads([e for e in extractors if e.plan.replica_count == 0], finisher)
            pipeline, resumed, states = prepared.result()
        result.resumed_pending = resumed
        if resumed:
            # an interrupted load was just completed: what was read before it is stale
            extractors = prepare(
                _plan(kimai, replica, layouts, options, lambda: states, settings.key_digests)
            )

        if dry_run:
            for e in extractors:
                if e.streams_through_dlt:
                    e.preview_rewrite()
            _collect(pipeline, extractors)
        else:
            finishing += _bulk_loads(extractors, finisher)
            if _collect(pipeline, extractors):
                _run_dlt(pipeline, extractors, settings.retry)
            for future in finishing:
                future.result()
            replica.ensure_indexes(layouts)
            if options.reconcile:
                for e in extractors:
                    e.stats.unrepaired = e.unrepaired()
        for stats in result.tables:
            fp_bytes = stats.fingerprint.kimai_bytes_returned if stats.fingerprint else 0
            stats.kimai_bytes_read = kimai.bytes_read.get(stats.table, 0) + fp_bytes
    finally:
        finisher.shutdown(wait=True)
        kimai.close()
        replica.close()
    result.seconds = time.monotonic() - started
    return result


def _prepare_pipeline(settings: Settings) -> tuple[Any, bool, dict[str, dict[str, Any]]]:
    """The dlt pipeline, whether it had to complete a load, and the stored resource states."""
    pipeline = make_pipeline(settings)
    resumed = finish_pending(pipeline)
    _sync_state_from_destination(pipeline, settings.retry)
    return pipeline, resumed, _resource_states(pipeline)


def _plan(
    kimai: Kimai,
    replica: Replica,
    layouts: Sequence[TableLayout],
    options: SyncOptions,
    states: Callable[[], dict[str, dict[str, Any]]],
    digests: bool = False,
) -> list[TablePlan]:
    has_rows = {layout.spec.name: replica.has_rows(layout.spec.replica_table) for layout in layouts}

    incremental = [layout for layout in layouts if layout.spec.sync == "incremental"]

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

    # both servers can compute the range fingerprints and key digests
    capable = supports_fingerprints(kimai, replica)
    # reconcile compares every row by fingerprints where both servers can compute them
    fingerprint = {
        layout.spec.name
        for layout in layouts
        if options.reconcile
        and not options.full_refresh
        and layout.spec.sync == "incremental"
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


def _sync_state_from_destination(pipeline: Any, retry: RetryPolicy) -> None:
    try:
        with_retries(pipeline.sync_destination, "reading sync state from Atlas DB", retry)
    except Exception as exc:
        raise database_failure("reading sync state from Atlas DB failed", exc) from exc


def _resource_states(pipeline: Any) -> dict[str, dict[str, Any]]:
    """A copy of every resource's stored state (the cursors), read without extracting."""
    resources = pipeline.state.get("sources", {}).get("kimai", {}).get("resources", {})
    return copy.deepcopy(resources)


def _collect(pipeline: Any, extractors: list[TableExtractor]) -> bool:
    """Compute every change set ahead of dlt; tell whether dlt has anything to do.

    Returns:
        False when no table has rows to write, no stored state would change and no table is
        rewritten through dlt: the run can skip dlt's extract, normalize and load.

    """
    states = _resource_states(pipeline)
    work = False
    for e in extractors:
        if e.streams_through_dlt:
            work = True
            continue
        stored = states.get(e.layout.spec.name, {})
        e.collect(copy.deepcopy(stored))
        work = work or e.has_output or e.collected_state != stored
    return work


BULK_WORKERS = 2
"""Whole tables streamed at once on the bulk path (the big two are timesheets and pairs)."""


def _bulk_loads(extractors: list[TableExtractor], finisher: ThreadPoolExecutor) -> list[Future]:
    """Run the streaming COPY of every table that takes it (once), a few tables at a time.

    Returns:
        The index builds, which go on in `finisher` while the run continues.

    """
    bulk = [e for e in extractors if e.bulk is not None and not e.bulk_done]
    if not bulk:
        return []
    # biggest first, so the long table starts at once and the small ones fill in beside it
    bulk.sort(key=lambda e: e.layout.spec.sync != "incremental")
    bulk[0].bulk.ensure_schemas()
    finishing = []
    with ThreadPoolExecutor(max_workers=BULK_WORKERS, thread_name_prefix="bulk") as pool:
        loads = {pool.submit(e.bulk_load): e for e in bulk}
        # each table's indexes are built as soon as its own load has committed
        for future in as_completed(loads):
            future.result()
            e = loads[future]
            assert e.bulk is not None
            finishing.append(finisher.submit(e.bulk.finish, e.layout))
    return finishing


def _run_dlt(pipeline: Any, extractors: list[TableExtractor], retry: RetryPolicy) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    source = kimai_source(extractors)
    try:
        pipeline.extract(source, loader_file_format="parquet")
        pipeline.normalize()
        # a failed load leaves its package pending: loading again resumes the remaining jobs
        with_retries(pipeline.load, "loading into Atlas DB", retry)
    except PipelineStepFailed as exc:
        own = pipeline_error_in(exc)
        if own is not None:
            raise own from exc
        raise database_failure(f"{exc.step} step failed", exc) from exc
