"""Per-run plan of each table: what Kimai and the replica hold, and what that implies.

Kimai hard-deletes rows (and cascades) without touching any change column, so the only
way to see deletes without binlog access is to compare the key sets. The comparison is
keys only (8 bytes a row) and streamed by key range for the big tables
(`pipelines.sync.rangediff`); the small ``full`` tables are read whole,
since every run compares all their rows anyway. A reconciling run compares whole rows by
range digests instead (they see deletes, inserts and changed rows alike, and move far
fewer bytes than the keys). All reads of all tables, on both sides, run concurrently: the
drivers release the GIL while the servers work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.adapters.kimai import Kimai, in_lists_sql, window_sql
from pipelines.adapters.layout import TableLayout, quote_ansi
from pipelines.adapters.replica import PostgresReplica, Replica
from pipelines.diff import keys_not_in, packed_keys, same_key_sets
from pipelines.errors import MassDeleteRefused
from pipelines.sync.rangediff import Comparison, RangeComparer
from pipelines.types import Scope, Sweep
from pipelines.window import Window


def _no_keys() -> pa.Array:
    return pa.array([], pa.int64())


@dataclass(frozen=True)
class TablePlan:
    """What one run knows about a table before it extracts anything.

    Frozen: the plan stage hands it on as it is; the orphan check, the plan stage's last
    step, makes a new plan with `orphans` set (`dataclasses.replace`).
    """

    layout: TableLayout
    replica_columns: list[str]
    """Columns the replica table has now (empty: no table yet)."""
    kimai_count: int
    replica_count: int
    deleted: pa.Array
    """Keys the replica has and Kimai no longer has."""
    missing: pa.Array
    """Keys Kimai has and the replica lacks."""
    kimai_rows: pa.Table | None = None
    """Whole Kimai table, for ``full`` tables."""
    replica_rows: pa.Table | None = None
    """Whole replica table, for ``full`` tables."""
    cursor: dt.datetime | None = None
    """Stored cursor of an ``incremental`` table (before this run)."""
    window: Window | None = None
    """The cursor window of an ``incremental`` table."""
    window_rows: pa.Table | None = None
    """Kimai rows in the cursor window, when at most `ROWS_AHEAD` (else None: streamed)."""
    window_count: int | None = None
    """How many Kimai rows the cursor window holds, when more than `ROWS_AHEAD`."""
    differing: pa.Array | None = None
    """Keys whose rows differ (reconciling runs on MariaDB → PostgreSQL)."""
    comparer: RangeComparer | None = None
    """What compared whole rows (reconciling runs), for the check after the repair."""
    reference_values: dict[str, pa.Array] | None = None
    """Distinct values of each foreign-key column in the replica (tables read by cursor)."""
    orphans: pa.Array | None = None
    """Keys of replica rows whose reference would dangle after this run (`sync.orphans`)."""

    @property
    def new_columns(self) -> list[str]:
        """Kimai columns the existing replica table lacks (a Kimai upgrade added them)."""
        if not self.replica_columns:
            return []
        return [n for n in self.layout.names if n not in self.replica_columns]

    @property
    def window_is_most_of_table(self) -> bool:
        """Whether the cursor window holds so much of the table that a rewrite is cheaper.

        A mass ``modified_at`` bump (a Kimai upgrade, a plugin) or ``--since`` over the whole
        history: comparing and merging that many rows costs more time and memory than
        rewriting the table the way a first load does (`REWRITE_SHARE`).
        """
        return self.window_count is not None and self.window_count >= max(
            ROWS_AHEAD, REWRITE_SHARE * self.kimai_count
        )

    @property
    def name(self) -> str:
        """Short table name."""
        return self.layout.spec.name

    @property
    def orphans_reread(self) -> int:
        """Rows re-read for a moved or deleted parent: the orphans Kimai still has."""
        return 0 if self.orphans is None else len(keys_not_in(self.orphans, self.deleted))

    def rewrites(self, full_refresh: bool) -> bool:
        """Whether every row is written: there is nothing to compare with.

        So it is for a first load, a full refresh, new Kimai columns the replica's rows do not
        hold yet, or a cursor window holding most of the table.
        """
        return (
            full_refresh
            or self.replica_count == 0
            or bool(self.new_columns)
            or self.window_is_most_of_table
        )

    def checks_references(self, full_refresh: bool) -> bool:
        """Whether this run looks for rows whose reference would dangle (`sync.orphans`).

        Only tables read by cursor need it: the others are compared whole with Kimai, and a
        table rewritten whole takes every row from Kimai anyway.
        """
        return not self.rewrites(full_refresh) and self.reference_values is not None


def _from_rows(layout: TableLayout, kimai: pa.Table, replica: pa.Table, **extra) -> TablePlan:
    kimai_keys = packed_keys(kimai, layout.key)
    replica_keys = packed_keys(replica, layout.key)
    if same_key_sets(kimai_keys, replica_keys):  # the usual case, and cheap
        deleted = missing = _no_keys()
    else:
        deleted = keys_not_in(replica_keys, kimai_keys)
        missing = keys_not_in(kimai_keys, replica_keys)
    return TablePlan(
        layout=layout,
        kimai_count=len(kimai_keys),
        replica_count=len(replica_keys),
        deleted=deleted,
        missing=missing,
        kimai_rows=kimai,
        replica_rows=replica,
        **extra,
    )


def _from_comparison(
    layout: TableLayout, found: Comparison, comparer: RangeComparer | None = None, **extra
) -> TablePlan:
    return TablePlan(
        layout=layout,
        kimai_count=found.kimai_count,
        replica_count=found.replica_count,
        deleted=found.deleted,
        missing=found.missing,
        differing=found.differing if comparer is not None else None,
        comparer=comparer,
        **extra,
    )


ROWS_AHEAD = 50_000
"""Changed rows a table may hold in memory before dlt runs; more stream through dlt.

A Kimai upgrade or plugin that bumps every timesheet's ``modified_at``, or a ``--since``
over the whole history, would otherwise hold the whole table (twice: Kimai's rows and the
replica's) in memory.
"""

REWRITE_SHARE = 0.2
"""A cursor window holding this share of a table (and over `ROWS_AHEAD` rows) rewrites it
whole: merging runs at about a fifth of the bulk path's speed (docs/benchmark.md)."""

PLAN_WORKERS = 4
"""Concurrent reads while planning (each a query on one of the two servers)."""


def plan_tables(
    kimai: Kimai,
    replica: Replica,
    layouts: Sequence[TableLayout],
    windows: Mapping[str, Window] | None = None,
    fingerprint: Collection[str] = (),
    empty: Collection[str] = (),
    confirm: Callable[[], Mapping[str, Window]] | None = None,
    digests: bool = False,
    references: Collection[str] = (),
    sweep: Sweep | None = None,
    scopes: Mapping[str, Scope] | None = None,
) -> list[TablePlan]:
    """Read what every table needs from both sides, concurrently, and compare.

    Args:
        kimai: Kimai reader.
        replica: Replica reader.
        layouts: The tables.
        windows: Per incremental table, its cursor and the Kimai rows to re-read; the
            window query (a scan of Kimai's table) runs alongside the key reads.
        confirm: Called once every read is under way; returns the stored cursors' windows
            (dlt's state, read meanwhile); one that differs from `windows` is read again.
        fingerprint: Tables compared by whole rows (range digests of every column)
            instead of by key sets; their cursor window is not read (the rows show it).
        empty: Tables whose replica holds no rows (written whole: no keys are read).
        digests: Compare key sets by bucket digests first, reading the differing buckets' keys.
        references: Tables whose foreign keys' replica values are read (`sync.orphans`).
        sweep: Compare only this part of each key set (a follower tick).
        scopes: Compare only these rows (a binlog tick; none in `empty`, `fingerprint`).

    """
    windows = dict(windows or {})
    unwindowed = {*fingerprint, *(scopes or {})}  # the rows read show what changed
    with ThreadPoolExecutor(max_workers=PLAN_WORKERS, thread_name_prefix="plan") as pool:
        columns = {
            layout.spec.name: pool.submit(replica.table_columns, layout.spec.replica_table)
            for layout in layouts
        }
        reads, comparers = _start_comparisons(
            pool, kimai, replica, layouts, fingerprint, empty, digests, sweep, scopes or {}
        )
        values = {
            layout.spec.name: pool.submit(
                replica.distinct_values, layout, [r.column for r in layout.spec.references]
            )
            for layout in layouts
            if layout.spec.name in references
        }
        window_reads: dict[str, Future] = {}

        def read_window(layout: TableLayout) -> None:
            window = windows.get(layout.spec.name)
            if layout.spec.name not in unwindowed and window is not None and window.reads_rows:
                window_reads[layout.spec.name] = pool.submit(_read_window, kimai, layout, window)

        for layout in layouts:
            read_window(layout)
        if confirm is not None:
            for name, window in confirm().items():
                if windows.get(name) != window:
                    windows[name] = window
                    window_reads.pop(name, None)
                    read_window(next(lay for lay in layouts if lay.spec.name == name))
        plans = []
        for layout in layouts:
            name = layout.spec.name
            window = windows.get(name)
            common = {
                "replica_columns": columns[name].result(),
                "cursor": window.cursor if window else None,
                "window": window,
                "reference_values": values[name].result() if name in values else None,
            }
            plans.append(
                _plan_from_reads(
                    layout, reads[name], comparers.get(name), window_reads.get(name), common
                )
            )
    return plans


def _start_comparisons(
    pool: ThreadPoolExecutor,
    kimai: Kimai,
    replica: Replica,
    layouts: Sequence[TableLayout],
    fingerprint: Collection[str],
    empty: Collection[str],
    digests: bool,
    sweep: Sweep | None,
    scopes: Mapping[str, Scope],
) -> tuple[dict[str, tuple[Future, ...]], dict[str, RangeComparer]]:
    """Start every table's comparison in `pool`: the reads, and the row comparers by table.

    Whole rows by range digests (`fingerprint`), nothing for an empty replica table (the
    whole table will be written), both sides of a small table read by `full`, the scope's
    rows on both sides (a binlog tick), or key sets.
    """
    reads: dict[str, tuple[Future, ...]] = {}
    comparers: dict[str, RangeComparer] = {}
    for layout in layouts:
        name = layout.spec.name
        if name in fingerprint:
            comparers[name] = RangeComparer(kimai, replica, layout, "rows", digests=True)
            reads[name] = (pool.submit(comparers[name].compare),)
        elif name in empty and layout.sync != "full":
            reads[name] = (pool.submit(Comparison),)
        elif name in scopes and layout.sync != "full":
            filters = dict(scopes[name].filters)
            reads[name] = (
                pool.submit(
                    kimai.read_rows, layout, in_lists_sql(layout.quote, filters), "rows by key"
                ),
                pool.submit(replica.read_rows, layout, in_lists_sql(quote_ansi, filters)),
                pool.submit(replica.count, layout.spec.replica_table),
            )
        elif layout.sync == "full":
            reads[name] = (
                pool.submit(kimai.read_rows, layout),
                pool.submit(replica.read_rows, layout),
            )
        else:
            comparer = RangeComparer(kimai, replica, layout, "keys", digests, sweep)
            reads[name] = (pool.submit(comparer.compare),)
    return reads, comparers


def _plan_from_reads(
    layout: TableLayout,
    reads: tuple[Future, ...],
    rows_comparer: RangeComparer | None,
    window_read: Future | None,
    common: dict[str, Any],
) -> TablePlan:
    """One table's plan once its reads are done (`_start_comparisons`, the window read)."""
    results = [f.result() for f in reads]
    if rows_comparer is not None:
        return _from_comparison(layout, results[0], rows_comparer, **common)
    if layout.sync == "full":
        return _from_rows(layout, results[0], results[1], **common)
    if len(results) == 3:  # a scope's rows: the guard counts the whole table
        scoped = _from_rows(layout, results[0], results[1], **common)
        whole = results[2]
        return dataclasses.replace(
            scoped,
            replica_count=whole,
            kimai_count=whole - len(scoped.deleted) + len(scoped.missing),
            window=None,
        )
    rows, count = window_read.result() if window_read is not None else (None, None)
    return _from_comparison(layout, results[0], window_rows=rows, window_count=count, **common)


def _read_window(
    kimai: Kimai, layout: TableLayout, window: Window
) -> tuple[pa.Table | None, int | None]:
    """The window's rows when they fit in `ROWS_AHEAD`, else how many there are."""
    rows = kimai.read_window(layout, window, ROWS_AHEAD)
    if rows is not None:
        return rows, None
    return None, kimai.count_rows(layout, window_sql(layout, window))


def check_mass_delete(
    plans: Sequence[TablePlan],
    max_share: float,
    min_rows: int,
    allowed: bool,
    sweep: Sweep | None = None,
) -> None:
    """Refuse a run that would delete a large share of any table.

    A Kimai pointed at an empty or wrong database, or a truncated table, looks exactly like
    a mass delete. The check runs before anything is extracted, so a refused run changes
    nothing in Atlas DB and advances no state.

    A follower tick (`sweep`) finds the deletes of one slice of the key range: what the
    tables lost earlier in the sweep's cycle counts as well, against the rows they had
    when the cycle began, so a table emptied one slice per tick trips the guard too.

    Raises:
        MassDeleteRefused: Unless `allowed`, when a table would lose more than `max_share` of
            its replica rows (and at least `min_rows` rows), or every row.

    """
    if allowed:
        return
    for p in plans:
        earlier = sweep.deleted_earlier(p.name) if sweep is not None else 0
        before = p.replica_count + earlier
        gone = len(p.deleted) + (earlier if len(p.deleted) else 0)
        if before == 0 or gone == 0:
            continue
        everything = gone == before
        if everything or (gone > max_share * before and gone >= min_rows):
            cycle = " over the follower's key sweep cycle" if earlier else ""
            raise MassDeleteRefused(
                f"refusing to delete {gone:,} of {before:,} rows ({gone / before:.0%}){cycle} of"
                f" {p.layout.spec.replica_table}: Kimai ({p.layout.kimai_name}) has"
                f" {p.kimai_count:,} rows; the limit is ATLAS_MASS_DELETE_MAX_SHARE="
                f"{max_share:g}. If Kimai really deleted them, rerun with --allow-mass-delete"
            )


def supports_fingerprints(kimai: Kimai, replica: Replica) -> bool:
    """Whether both servers can compute range digests (MariaDB/MySQL and PostgreSQL)."""
    return kimai.dialect == "mysql" and isinstance(replica, PostgresReplica)
