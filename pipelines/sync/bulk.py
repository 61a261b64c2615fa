"""Streaming bulk load into PostgreSQL: Kimai → Arrow batches → binary COPY, one transaction.

Used for initial loads and ``--full-refresh``, where every row is written anyway. dlt's
own parquet/ADBC path first writes the whole table to a file, then copies it into a staging
table and merges: three passes, and memory that grows with the table (docs/benchmark.md).
This path overlaps reading and writing (a reader thread feeds a bounded queue that ADBC
drains), holds at most a few batches in memory whatever the table size, and commits once,
so readers see either the old replica or the complete new one — never an empty or partial
table. Incremental merges stay with dlt.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from pipelines.adapters.layout import TableLayout, index_ddl, primary_key_ddl, quote_ansi
from pipelines.config import Settings
from pipelines.dberrors import database_failure
from pipelines.errors import PipelineError
from pipelines.record import changelog
from pipelines.registry import DATA_ISSUES, SYNCED_AT

QUEUE_BATCHES = 2
"""Batches buffered between the Kimai reader and the COPY writer."""

_PG_TYPES = {
    "bigint": "bigint",
    "bool": "boolean",
    "double": "double precision",
    "timestamp": "timestamp with time zone",
    "date": "date",
    "text": "varchar",
}

_DONE = object()


def replica_table_ddl(qualified_table: str, layout: TableLayout) -> str:
    """CREATE TABLE for a replica table, with the types dlt gives the same columns."""
    cols = [
        f"{quote_ansi(c.name)} {_PG_TYPES[c.data_type]}"
        + (" NOT NULL" if c.name in layout.key else "")
        for c in layout.columns
    ]
    cols.append(f"{quote_ansi(DATA_ISSUES)} varchar")
    cols.append(f"{quote_ansi(SYNCED_AT)} timestamp with time zone")
    return f"CREATE TABLE IF NOT EXISTS {qualified_table} (\n  " + ",\n  ".join(cols) + "\n)"


def missing_columns_ddl(
    qualified_table: str, layout: TableLayout, existing: Iterable[str]
) -> list[str]:
    """ALTER TABLE statements adding the layout's columns an existing table lacks."""
    have = set(existing)
    wanted = [(c.name, c.data_type) for c in layout.columns] + [(DATA_ISSUES, "text")]
    return [
        f"ALTER TABLE {qualified_table} ADD COLUMN IF NOT EXISTS"
        f" {quote_ansi(name)} {_PG_TYPES[data_type]}"
        for name, data_type in wanted
        if name not in have
    ]


class _Prefetcher:
    """Iterates batches from a reader thread, a bounded number of batches ahead.

    A failure of the reader is kept in `error`: it crosses ADBC's C stream interface only
    as a generic error, so the caller re-raises the original from here.
    """

    def __init__(self, batches: Iterable[pa.Table]) -> None:
        self.batches = batches
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from _prefetched(self.batches)
        except BaseException as exc:
            self.error = exc
            raise


def _prefetched(batches: Iterable[pa.Table]) -> Iterator[pa.RecordBatch]:
    buffer: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_BATCHES)
    stop = threading.Event()

    def read() -> None:
        try:
            for table in batches:
                if stop.is_set():
                    return
                for batch in table.to_batches():
                    buffer.put(batch)
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)

    thread = threading.Thread(target=read, name="kimai-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # unblock a reader waiting on a full queue so the thread can end
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


class BulkLoader:
    """Writes whole tables into the replica schema of a PostgreSQL Atlas DB."""

    def __init__(
        self, settings: Settings, before_write: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.before_write = before_write or (lambda _what: None)
        self.schema = settings.replica_schema
        self._uri = settings.atlas_connectorx_url()

    def finish(self, layout: TableLayout) -> None:
        """Build the key index of a newly filled table and its planner statistics.

        Run after the load committed, beside the rest of the run: the index build is the
        slowest part of a first load, and without statistics the first reconcile's range
        queries plan as full scans. A run killed before this leaves only work that the
        next run's index check redoes.
        """
        from adbc_driver_postgresql import dbapi

        table = layout.spec.replica_table
        self.before_write(f"indexing {table}")
        try:
            with dbapi.connect(self._uri) as conn, conn.cursor() as cur:
                for ddl in index_ddl(self.schema, layout).values():
                    cur.execute(ddl)
                cur.execute(primary_key_ddl(self.schema, layout))
                cur.execute(f"ANALYZE {quote_ansi(self.schema)}.{quote_ansi(table)}")
                conn.commit()
        except Exception as exc:
            raise database_failure(f"indexing {table} failed", exc) from exc

    def ensure_schemas(self) -> None:
        """Create the replica and staging schemas (once, before loads run side by side).

        ``CREATE SCHEMA IF NOT EXISTS`` is not safe against itself in concurrent sessions.
        """
        from adbc_driver_postgresql import dbapi

        try:
            with dbapi.connect(self._uri) as conn, conn.cursor() as cur:
                for schema in (self.schema, f"{self.schema}_staging"):
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ansi(schema)}")
                conn.commit()
        except Exception as exc:
            raise database_failure("cannot create the replica schemas", exc) from exc

    def load(self, layout: TableLayout, batches: Iterable[pa.Table], replace: bool) -> int:
        """Write `batches` (the layout's full Arrow schema) as the table's new content.

        Args:
            layout: The table.
            batches: Every row the table must hold, ``synced_at`` set.
            replace: The table may hold rows: swap its whole content in one transaction.
                Otherwise the table is new or empty and is filled directly.

        Returns:
            Rows written.

        """
        from adbc_driver_postgresql import dbapi

        table = layout.spec.replica_table
        self.before_write(f"loading {table}")
        source: _Prefetcher | None = None
        qualified = f"{quote_ansi(self.schema)}.{quote_ansi(table)}"
        try:
            conn = dbapi.connect(self._uri)
        except Exception as exc:
            raise database_failure("cannot connect to Atlas DB for the bulk load", exc) from exc
        try:
            with conn.cursor() as cur:
                # one rewrite row in the change log instead of one row per key
                cur.execute(f"SET LOCAL {changelog.SWITCH} = 'off'")
                cur.execute(replica_table_ddl(qualified, layout))
                cur.execute(
                    "SELECT column_name FROM information_schema.columns"
                    f" WHERE table_schema = '{self.schema}' AND table_name = '{table}'"
                )
                existing = [r[0] for r in cur.fetchall()]
                for ddl in missing_columns_ddl(qualified, layout, existing):
                    cur.execute(ddl)
                target_schema, target = self.schema, table
                if replace:
                    target_schema, target = f"{self.schema}_staging", f"{table}__bulk"
                    staged = f"{quote_ansi(target_schema)}.{quote_ansi(target)}"
                    cur.execute(f"DROP TABLE IF EXISTS {staged}")
                    cur.execute(f"CREATE UNLOGGED TABLE {staged} (LIKE {qualified})")
                source = _Prefetcher(batches)
                reader = pa.RecordBatchReader.from_batches(layout.arrow_schema, iter(source))
                rows = cur.adbc_ingest(target, reader, mode="append", db_schema_name=target_schema)
                if replace:
                    cur.execute(f"DELETE FROM {qualified}")
                    cur.execute(f"INSERT INTO {qualified} SELECT * FROM {staged}")
                    cur.execute(f"DROP TABLE {staged}")
                if replace:
                    for ddl in index_ddl(self.schema, layout).values():
                        cur.execute(ddl)
                    cur.execute(primary_key_ddl(self.schema, layout))
                cur.execute(changelog.rewrite_sql(self.schema, layout.spec.name))
            conn.commit()
            return int(rows)
        except Exception as exc:
            # the connection may be gone, and its transaction with it
            with contextlib.suppress(Exception):
                conn.rollback()
            if source is not None and source.error is not None:
                # the reader failed (Kimai): ADBC only saw a broken stream
                if isinstance(source.error, PipelineError):
                    raise source.error  # noqa: B904 - keeps the reader's own cause chain
                raise database_failure(f"reading for {table} failed", source.error) from exc
            raise database_failure(f"bulk load of {table} failed", exc) from exc
        finally:
            conn.close()
