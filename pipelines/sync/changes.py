"""Stage 2 of a run: per table, the change set (rows to upsert, keys to delete, the new cursor).

`ChangeSet` turns a table's plan into what the load writes, computed as the load takes it
(a million-row change set is never held whole):

* rows to upsert (``synced_at`` set): new rows and rows whose values differ from the replica;
* delete markers (only the key; ``synced_at`` NULL): keys Kimai no longer has.

Comparing with the replica first keeps a no-change run from writing anything. Tables with
nothing to compare with (first loads, full refreshes, new Kimai columns) are rewritten
whole, by the streaming bulk path where it exists: the load stage runs that COPY
(`pipelines.sync.load.bulk_loads`), and this stage only says which tables take it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.adapters.kimai import BATCH_ROWS, Kimai, window_sql
from pipelines.adapters.layout import TableLayout, conform
from pipelines.adapters.replica import Replica
from pipelines.diff import changed_rows, keys_not_in, packed_keys, unpack_keys
from pipelines.registry import SYNCED_AT
from pipelines.sync.plan import ROWS_AHEAD, TablePlan
from pipelines.types import BulkWrite, ChangeCounts, SyncOptions
from pipelines.window import format_cursor, max_cursor


class ChangeSet:
    """One table's change set: the Arrow tables its load writes, computed from its plan.

    Computes only: the load stage (`pipelines.sync.load`) decides when the rows are
    computed and writes them; `counts` is final once they are all out.
    """

    def __init__(
        self,
        plan: TablePlan,
        kimai: Kimai,
        replica: Replica,
        options: SyncOptions,
        synced_at: dt.datetime,
        say: Callable[[str], None] | None = None,
        bulk_path: bool = False,
    ) -> None:
        self.plan = plan
        self.layout: TableLayout = plan.layout
        self.kimai = kimai
        self.replica = replica
        self.options = options
        self.synced_at = synced_at
        self._counts = ChangeCounts()
        self.say = say or (lambda _line: None)
        self.rewrite = plan.rewrites(options.full_refresh)
        # a whole-table write streams straight into PostgreSQL where the run can (bulk_path)
        self.bulk_path = bulk_path and self.rewrite
        self._written_keys: list[pa.Array] = []
        self._stamps: pa.Array | None = None

    @property
    def counts(self) -> ChangeCounts:
        """What this table's change set read and wrote so far (final once its rows are out)."""
        return self._counts

    def _count(self, **added: int) -> None:
        c = self._counts
        self._counts = dataclasses.replace(c, **{k: getattr(c, k) + n for k, n in added.items()})

    def _note(self, **values: Any) -> None:
        self._counts = dataclasses.replace(self._counts, **values)

    # -- output helpers ----------------------------------------------------------------------

    def stamp(self, rows: pa.Table) -> pa.Table:
        """Rows as the replica holds them: with this run's ``synced_at``."""
        field = self.layout.arrow_schema.field(SYNCED_AT)
        if self._stamps is None or len(self._stamps) < rows.num_rows:
            # built once per batch size and sliced: a Python list per batch costs real time
            self._stamps = pa.array([self.synced_at] * max(rows.num_rows, BATCH_ROWS), field.type)
        return rows.append_column(field, self._stamps.slice(0, rows.num_rows))

    def _upserts(self, rows: pa.Table) -> Iterator[pa.Table]:
        if rows.num_rows == 0:
            return
        keys = packed_keys(rows, self.layout.key)
        self._written_keys.append(keys)
        if self.plan.replica_count == 0:
            new = rows.num_rows
        else:
            new = int(pc.sum(pc.is_in(keys, value_set=self.plan.missing)).as_py() or 0)
        self._count(inserted=new, updated=rows.num_rows - new)
        yield self.stamp(rows)

    def _delete_markers(self) -> Iterator[pa.Table]:
        deleted = self.plan.deleted
        if self._written_keys and len(deleted):
            # a key re-read after the key sets were taken exists now: keep the row
            deleted = keys_not_in(deleted, pa.concat_arrays(self._written_keys))
        if len(deleted) == 0:
            return
        self._count(deleted=len(deleted))
        keys = unpack_keys(deleted, self.layout.key)
        markers = pa.Table.from_arrays(
            [
                keys.column(f.name) if f.name in self.layout.key else pa.nulls(len(deleted), f.type)
                for f in self.layout.arrow_schema
            ],
            schema=self.layout.arrow_schema,
        )
        yield markers

    # -- per sync mode -----------------------------------------------------------------------

    def rows(self, state: dict[str, Any], bulk: BulkWrite | None = None) -> Iterator[pa.Table]:
        """Everything this table's resource yields in this run.

        Args:
            state: The resource's persisted state (dlt's, or a copy for a dry run); the
                timesheet cursor is read from and written to it.
            bulk: What the streaming COPY wrote of this table, on the bulk path: the load
                stage ran it before dlt's extract, and only its cursor is left to store.

        """
        started = time.monotonic()
        mode = self.layout.sync
        if self.bulk_path:
            if bulk is not None:
                if bulk.cursor is not None:
                    state["cursor"] = format_cursor(bulk.cursor)
                self._counts = bulk.counts
                started -= bulk.counts.seconds
            self._note(cursor_after=state.get("cursor"))
        elif self.scoped:
            yield from self._scoped(state)
        elif mode == "pairs":
            yield from self._pairs()
        elif mode == "full":
            yield from self._full()
        else:
            yield from self._incremental(state)
        if not self.bulk_path:
            yield from self._delete_markers()
        if self.plan.replica_count == 0 and mode != "full":
            # planning skipped the key sweep: every row was read
            self._note(kimai_rows=self._counts.rows_read)
        self._note(seconds=time.monotonic() - started)
        c, orphans = self._counts, self.plan.orphans_reread
        rate = c.rows_read / c.seconds if c.seconds > 0 else 0.0
        moved = f" ({orphans:,} re-read for a moved or deleted parent)" if orphans else ""
        self.say(
            f"{self.plan.name}: read {c.rows_read:,} rows ({rate:,.0f}/s), {c.inserted:,} new,"
            f" {c.updated:,} changed, {c.deleted:,} deleted{moved}"
        )

    @property
    def streams_through_dlt(self) -> bool:
        """Whether every row is written through dlt (a rewrite without the bulk path)."""
        return self.rewrite and not self.bulk_path

    def preview_rewrite(self) -> None:
        """Count what a whole-table rewrite would write, without reading the rows (dry runs).

        A first load inserts every Kimai row; a full refresh rewrites every row, of which
        the keys the replica lacks are new, and deletes the keys Kimai no longer has.
        """
        plan = self.plan
        if plan.replica_count == 0:
            # planning skips the key sweep of a first load: count Kimai's rows instead
            rows = plan.kimai_count or self.kimai.count_rows(self.layout)
            self._note(kimai_rows=rows, inserted=rows)
            return
        self._note(
            inserted=len(plan.missing),
            updated=plan.kimai_count - len(plan.missing),
            deleted=len(plan.deleted),
        )

    def _pairs(self) -> Iterator[pa.Table]:
        if self.rewrite:
            for batch in self.kimai.page_rows(self.layout):
                self._count(rows_read=batch.num_rows)
                yield from self._upserts(batch)
            return
        # every column is key: the key diff is the whole comparison, and a new pair's key,
        # read from Kimai while planning, is its whole row: those are this table's rows read
        self._count(rows_read=len(self.plan.missing))
        rows = conform(unpack_keys(self.plan.missing, self.layout.key), self.layout.data_schema)
        yield from self._upserts(rows)

    @property
    def scoped(self) -> bool:
        """Whether planning read the rows of a binlog tick's scope (`sync.scope`), not keys."""
        return self.layout.sync != "full" and self.plan.kimai_rows is not None and not self.rewrite

    def _scoped(self, state: dict[str, Any]) -> Iterator[pa.Table]:
        # planning read the scope's rows on both sides; a cursor table's cursor still moves
        new, old = self.plan.kimai_rows, self.plan.replica_rows
        assert new is not None and old is not None
        self._count(rows_read=new.num_rows)
        cursor_col = self.layout.spec.cursor
        if cursor_col is not None:
            cursor = self.plan.cursor
            newest = max_cursor(cursor, new.column(cursor_col))
            if newest is not None and newest != cursor:
                state["cursor"] = format_cursor(newest)
            self._note(cursor_before=format_cursor(cursor), cursor_after=format_cursor(newest))
        yield from self._upserts(changed_rows(new, old, self.layout.key))

    def _full(self) -> Iterator[pa.Table]:
        # planning read both whole tables already
        new, old = self.plan.kimai_rows, self.plan.replica_rows
        assert new is not None and old is not None
        self._count(rows_read=new.num_rows)
        if not self.rewrite:
            new = changed_rows(new, old, self.layout.key)
        yield from self._upserts(new)

    def _incremental(self, state: dict[str, Any]) -> Iterator[pa.Table]:
        cursor_col = self.layout.spec.cursor
        assert cursor_col is not None
        cursor = self.plan.cursor
        self._note(cursor_before=format_cursor(cursor))
        newest = cursor

        if self.rewrite:
            # nothing to compare with: stream the whole table in bounded batches
            for batch in self.kimai.page_rows(self.layout):
                self._count(rows_read=batch.num_rows)
                newest = max_cursor(newest, batch.column(cursor_col))
                yield from self._upserts(batch)
        else:
            for candidates, old in self._candidates():
                self._count(rows_read=candidates.num_rows)
                newest = max_cursor(newest, candidates.column(cursor_col))
                yield from self._upserts(changed_rows(candidates, old, self.layout.key))

        if newest is not None and newest != cursor:
            state["cursor"] = format_cursor(newest)
        self._note(cursor_after=format_cursor(newest))

    def _candidates(self) -> Iterator[tuple[pa.Table, pa.Table]]:
        """Kimai rows that may differ from the replica, with the replica rows of their keys.

        Candidates are the rows in the cursor window, every key the replica lacks, every row
        whose reference would dangle (a silent "move records to") and, when reconciling,
        every key whose rows differ. They come in bounded batches: a window too big to hold
        (`pipelines.sync.plan.ROWS_AHEAD`) is streamed from Kimai in key order.
        """
        layout, plan = self.layout, self.plan
        if self.options.reconcile and plan.comparer is None:
            # embedded databases (the demo) cannot compare digests and are small: compare all
            yield self.kimai.read_rows(layout), self.replica.read_rows(layout)
            return
        if plan.window_rows is not None:
            window: Iterable[pa.Table] = [plan.window_rows]
        elif plan.window is not None and plan.window.reads_rows and plan.comparer is None:
            window = self.kimai.page_rows(layout, window_sql(layout, plan.window))
        else:
            window = []  # compared whole rows (reconcile) already, or no window
        seen = [pa.array([], pa.int64())]
        for batch in window:
            keys = packed_keys(batch, layout.key)
            seen.append(keys)
            yield batch, self.replica.read_by_keys(layout, keys)
        extra = [k for k in (plan.differing, plan.orphans) if k is not None]
        wanted = keys_not_in(
            pa.concat_arrays([plan.missing, *extra]).unique(), pa.concat_arrays(seen)
        )
        for batch in self.kimai.read_by_keys(layout, wanted):
            yield batch, self.replica.read_by_keys(layout, packed_keys(batch, layout.key))

    @property
    def chunked(self) -> bool:
        """Whether the change set is computed while dlt loads it, in packages.

        So it is when it may be too big to compute ahead of dlt.
        """
        plan = self.plan
        if self.rewrite:
            return False  # the bulk path streams it, or dlt takes it whole (embedded demo)
        if plan.window is not None and plan.window.reads_rows and plan.window_rows is None:
            return plan.comparer is None  # the window did not fit: it streams
        keys = [k for k in (plan.missing, plan.differing, plan.orphans) if k is not None]
        return sum(len(k) for k in keys) > ROWS_AHEAD
