"""Stage 3 of a run: load the change sets into the replica.

Through dlt: one resource per table yields the table's change set, and dlt merges it in one
transaction per table. The merge (``delete-insert``) deletes every replica row whose key is
staged and inserts the staged rows whose ``synced_at`` is set, so a delete marker removes
its row and leaves no trace: the replica keeps Kimai's columns plus ``synced_at`` and
nothing else. The timesheet cursor lives in dlt's resource state, which dlt commits
together with the load package: it advances only when the rows it covers are loaded, and
a package a crashed run left behind is completed (or aborted, rewinding the state) before
anything new is read.

Whole-table rewrites stream by COPY instead (`pipelines.sync.bulk`), a few tables at a time.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

import pyarrow as pa

from pipelines.adapters.layout import quote_ansi
from pipelines.config import Settings
from pipelines.dberrors import classify, database_failure, pipeline_error_in, root_cause
from pipelines.paths import dlt_pipelines_dir
from pipelines.registry import SYNCED_AT
from pipelines.retry import RetryPolicy, with_retries
from pipelines.sync.bulk import BulkLoader
from pipelines.sync.changes import ChangeSet
from pipelines.types import BulkWrite, ChangeCounts
from pipelines.window import format_cursor, max_cursor

log = logging.getLogger("pipelines.sync.load")


def _configure_dlt() -> None:
    # dlt reads its settings from the environment; these are the product's defaults
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")
    # SIGTERM/SIGINT stay the process's: dlt's normalize and load steps otherwise swap in
    # a handler that records the first signal and drops it when the step ends, so a
    # follower stopped during a tick's load never saw its SIGTERM (its thread dump, CI)
    os.environ.setdefault("RUNTIME__INTERCEPT_SIGNALS", "false")
    logging.getLogger("dlt").setLevel(logging.WARNING)


def make_pipeline(settings: Settings) -> Any:
    """The dlt pipeline writing the replica schema of the configured Atlas DB."""
    _configure_dlt()
    import dlt

    if settings.atlas_dialect == "duckdb":
        destination = dlt.destinations.duckdb(settings.atlas_url.database)
    else:
        # with the session limits: dlt passes the query's options to psycopg2 and to ADBC
        url = settings.atlas_session_url()
        # dlt insists on a password field; an empty one works with trust/peer auth
        creds = url.render_as_string(hide_password=False)
        if url.password is None:
            creds = creds.replace(f"{url.username}@", f"{url.username}:@", 1)
        destination = dlt.destinations.postgres(credentials=creds)
    return dlt.pipeline(
        pipeline_name=settings.pipeline_name,
        destination=destination,
        dataset_name=settings.replica_schema,
        progress=None,
        pipelines_dir=str(dlt_pipelines_dir(settings)),
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


def prepare_pipeline(
    settings: Settings, dry_run: bool = False
) -> tuple[Any, bool, dict[str, dict[str, Any]]]:
    """The dlt pipeline, whether it had (a dry run: has) a load to complete, and the states.

    A dry run writes nothing: a pending load is reported, not completed.
    """
    pipeline = make_pipeline(settings)
    resumed = pipeline.has_pending_data if dry_run else finish_pending(pipeline)
    _sync_state_from_destination(pipeline, settings.retry)
    return pipeline, resumed, stored_states(pipeline)


def _sync_state_from_destination(pipeline: Any, retry: RetryPolicy) -> None:
    try:
        with_retries(pipeline.sync_destination, "reading sync state from Atlas DB", retry)
    except Exception as exc:
        raise database_failure("reading sync state from Atlas DB failed", exc) from exc


def stored_states(pipeline: Any) -> dict[str, dict[str, Any]]:
    """A copy of every resource's stored state (the cursors), read without extracting."""
    resources = pipeline.state.get("sources", {}).get("kimai", {}).get("resources", {})
    return copy.deepcopy(resources)


class TableLoad:
    """The load stage's work on one table's change set.

    A change set bounded by what changed is computed ahead of dlt (`collect_ahead`), so a
    run knows before importing dlt's machinery whether there is anything to write; a big one
    (`ChangeSet.chunked`) is one stream that successive load packages share.
    """

    def __init__(self, changes: ChangeSet, bulk: BulkWrite | None = None) -> None:
        self.changes = changes
        self.bulk = bulk
        """What the streaming COPY wrote of the table (only its cursor is left to store)."""
        self.collected: list[pa.Table] | None = None
        self.collected_state: dict[str, Any] = {}
        self._stream: Iterator[pa.Table] | None = None
        self.stream_state: dict[str, Any] = {}
        self.stream_done = False

    def collect(self, state: dict[str, Any]) -> None:
        """Compute the change set ahead of dlt, into `collected` (`state`: a copy)."""
        self.collected = [t for t in self.changes.rows(state, self.bulk) if t.num_rows]
        self.collected_state = state

    def stream(self, state: dict[str, Any]) -> Iterator[pa.Table]:
        """The change set as one iterator that successive load packages share.

        Rows are computed against a copy of the first package's state; `stream_state`
        holds the new cursor once the iterator is exhausted.
        """
        if self._stream is None:
            self.stream_state = copy.deepcopy(state)
            self._stream = self.changes.rows(self.stream_state, self.bulk)
        return self._stream


def collect_ahead(pipeline: Any, loads: list[TableLoad], dry_run: bool = False) -> bool:
    """Compute every change set ahead of dlt; tell whether dlt has anything to do.

    Large change sets (`ChangeSet.chunked`) are not held: dlt streams them, and a dry run
    counts them without keeping the rows.

    Returns:
        False when no table has rows to write, no stored state would change and no table is
        rewritten through dlt: the run can skip dlt's extract, normalize and load.

    """
    states = stored_states(pipeline)
    work = False
    for load in loads:
        changes = load.changes
        stored = states.get(changes.layout.spec.name, {})
        if changes.chunked and dry_run:
            for _ in changes.rows(copy.deepcopy(stored)):
                pass  # counted, not kept: memory stays bounded
            continue
        if changes.streams_through_dlt or changes.chunked:
            work = True
            continue
        load.collect(copy.deepcopy(stored))
        work = work or bool(load.collected) or load.collected_state != stored
    return work


def make_resource(load: TableLoad) -> Any:
    """Wrap one table's change set as a dlt resource merging into its replica table."""
    import dlt

    changes = load.changes
    layout = changes.layout
    key_cols = ", ".join(quote_ansi(k) for k in layout.key)
    key_list = ", ".join(f"s.{quote_ansi(k)}" for k in layout.key)
    write_disposition = {
        "disposition": "merge",
        "strategy": "delete-insert",
        # delete every replica row whose key is staged (updated rows and delete markers) ...
        "destination_scope": f"({key_cols}) IN (SELECT {key_list} FROM {{staging_table}} s)",
        # ... and insert only real rows: markers carry no synced_at
        "source_filter": f"{quote_ansi(SYNCED_AT)} IS NOT NULL",
    }

    def rows() -> Iterator[pa.Table]:
        live = dlt.current.resource_state()
        if load.collected is not None:
            live.update(load.collected_state)
            yield from load.collected
        elif changes.chunked:
            written = 0
            for table in load.stream(live):
                yield table
                written += table.num_rows
                if written >= ROWS_PER_PACKAGE:
                    return  # the next package goes on from here (`run_dlt`)
            # the stored cursor moves with the last package only
            live.update(load.stream_state)
            load.stream_done = True
        else:
            yield from changes.rows(live, load.bulk)

    return dlt.resource(
        rows(),
        name=layout.spec.name,
        table_name=layout.spec.replica_table,
        write_disposition=write_disposition,
        primary_key=list(layout.key),
        columns=layout.dlt_columns(),
        file_format="parquet",
        max_table_nesting=0,
    )


def kimai_source(loads: list[TableLoad]) -> Any:
    """The dlt source holding one resource per planned table."""
    import dlt

    @dlt.source(name="kimai", max_table_nesting=0, root_key=False)
    def kimai() -> list[Any]:
        return [make_resource(load) for load in loads]

    return kimai()


BULK_WORKERS = 2
"""Whole tables streamed at once on the bulk path (the big two are timesheets and pairs)."""


def bulk_loads(
    change_sets: list[ChangeSet], loader: BulkLoader, finisher: ThreadPoolExecutor
) -> tuple[dict[str, BulkWrite], list[Future]]:
    """Run the streaming COPY of every given table, a few tables at a time.

    Returns:
        What each table's COPY wrote, by table, and the index builds, which go on in
        `finisher` while the run continues.

    """
    if not change_sets:
        return {}, []
    # biggest first, so the long table starts at once and the small ones fill in beside it
    bulk = sorted(change_sets, key=lambda c: c.layout.sync != "incremental")
    loader.ensure_schemas()
    written: dict[str, BulkWrite] = {}
    finishing = []
    with ThreadPoolExecutor(max_workers=BULK_WORKERS, thread_name_prefix="bulk") as pool:
        loads = {pool.submit(_bulk_load, c, loader): c for c in bulk}
        # each table's indexes are built as soon as its own load has committed
        for future in as_completed(loads):
            done = loads[future]
            written[done.plan.name] = future.result()
            finishing.append(finisher.submit(loader.finish, done.layout))
    return written, finishing


def _bulk_load(e: ChangeSet, loader: BulkLoader) -> BulkWrite:
    """Write one whole table by streaming COPY (first loads, full refreshes).

    Runs before dlt's extract, several tables at a time; the new cursor is stored into
    dlt's state when the table's resource runs (`ChangeSet.rows`).
    """
    started = time.monotonic()
    layout, plan = e.layout, e.plan
    cursor_col = layout.spec.cursor
    newest: list[dt.datetime | None] = [None]
    read = [0]

    def source() -> Iterator[pa.Table]:
        for table in e.kimai.stream_rows(layout):
            read[0] += table.num_rows
            if cursor_col:
                newest[0] = max_cursor(newest[0], table.column(cursor_col))
            yield e.stamp(table)

    replace = plan.replica_count > 0
    written = loader.load(layout, source(), replace=replace)
    counts = ChangeCounts(
        rows_read=read[0],
        inserted=len(plan.missing) if replace else written,
        updated=written - len(plan.missing) if replace else 0,
        deleted=len(plan.deleted) if replace else 0,
        cursor_before=format_cursor(plan.cursor),
        seconds=time.monotonic() - started,
    )
    return BulkWrite(counts, newest[0])


ROWS_PER_PACKAGE = 200_000
"""Rows of a big streamed change set per dlt load package.

dlt's parquet/ADBC load holds each load file whole (about 250 MiB per million rows), so a
change set of millions of rows (every ``modified_at`` bumped) goes in several packages.
Each commits on its own; the cursor is stored with the last, so a run that stops between
them leaves a replica the next run's window re-reads and repairs.
"""


def run_dlt(
    pipeline: Any,
    loads: list[TableLoad],
    retry: RetryPolicy,
    before_package: Callable[[], None] | None = None,
) -> None:
    """Extract, normalize and load the change sets through dlt (a pending load resumes).

    Big change sets (`ChangeSet.chunked`) go in several load packages.

    Args:
        pipeline: The dlt pipeline.
        loads: The tables to load.
        retry: Retry policy of the load step.
        before_package: Called before each package (the run lock's check).

    Raises:
        PipelineError: The product's own error raised inside dlt, or the failed step.

    """
    pending = loads
    while pending:
        if before_package is not None:
            before_package()
        _run_package(pipeline, pending, retry)
        pending = [load for load in loads if load.changes.chunked and not load.stream_done]


def _run_package(pipeline: Any, loads: list[TableLoad], retry: RetryPolicy) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    source = kimai_source(loads)
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
