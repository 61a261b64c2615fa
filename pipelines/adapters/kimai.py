"""Read access to Kimai: catalog reflection (SQLAlchemy) and bulk reads (connectorx → Arrow).

The product never writes to Kimai. Reflection reads ``information_schema`` rather than
``SHOW CREATE TABLE`` so that a login with column-level grants (no access to the secret
columns of the users table) works: MariaDB lists only the columns a login may read.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from pipelines.adapters.layout import (
    SourceColumn,
    TableLayout,
    conform,
    key_columns_only,
    map_mysql_column,
    map_sqlite_column,
    ranges_sql,
)
from pipelines.config import Settings
from pipelines.dberrors import classify, database_failure, describe, is_fatal_signal
from pipelines.errors import DatabaseError, KimaiSchemaError, RunTimedOut
from pipelines.registry import TableSpec
from pipelines.retry import with_retries
from pipelines.sqltag import Purpose, tagged
from pipelines.window import Window

log = logging.getLogger("pipelines.adapters.kimai")

BATCH_ROWS = 25_000
"""Rows per Arrow batch on the bulk path: bounds memory whatever the table size."""

KEYS_PER_QUERY = 10_000
"""Keys per ``IN (…)`` list when rows are fetched by key."""


def connectorx() -> Any:
    """The connectorx module, its Rust logger silenced unless RUST_LOG says otherwise.

    connectorx's connection pool logs every failed connection attempt to stderr at ERROR
    level when RUST_LOG is unset: Kimai restarting mid-read printed eight such lines before
    the run's own one-line error. The run reports the failure itself, once.
    """
    os.environ.setdefault("RUST_LOG", "off")
    import connectorx as cx

    return cx


class Kimai:
    """A read-only connection to Kimai."""

    def __init__(self, settings: Settings, keep_connections: bool = False) -> None:
        """Connect lazily.

        Args:
            settings: Runtime settings.
            keep_connections: Keep the catalog and small-query connections open until
                `close` (the follower, between ticks); a connection is checked before
                each use and replaced if Kimai closed it. Otherwise each use connects.

        """
        self.settings = settings
        self.keep_connections = keep_connections
        self.dialect = "sqlite" if settings.kimai_dialect == "sqlite" else "mysql"
        self._engine: sa.Engine | None = None
        self._cx_url = settings.kimai_connectorx_url()
        self._mariadb: bool | None = None
        """MariaDB or MySQL (their limits have different names); known after a connection."""
        self.bytes_read: dict[str, int] = {}
        """Arrow bytes received from Kimai per table short name (what the network carried)."""

    @property
    def engine(self) -> sa.Engine:
        """SQLAlchemy engine for catalog and small queries."""
        if self._engine is None:
            args: dict[str, Any] = {}
            tls = self.settings.kimai_tls
            if self.dialect == "mysql":
                args = {"connect_timeout": 10, "read_timeout": 600}
                args.update(tls.pymysql_args() if tls is not None else {})
            # planning reads from a few threads at once: a connection each, kept
            pool: dict[str, Any] = (
                {"pool_size": 4, "max_overflow": 4, "pool_pre_ping": True}
                if self.keep_connections
                else {"poolclass": sa.pool.NullPool}
            )
            self._engine = sa.create_engine(self.settings.kimai_url, connect_args=args, **pool)
            if tls is not None and tls.required:
                sa.event.listen(self._engine, "connect", _require_tls)
            if self.dialect == "mysql":
                # on every checkout: the limits are capped by what is left of the run's
                # deadline, and a kept connection serves many runs
                sa.event.listen(self._engine, "checkout", self._limit_session)
        return self._engine

    def _limit_session(self, dbapi_connection: Any, *_records: Any) -> None:
        """Set Kimai's statement and lock wait limits on a PyMySQL connection taken for use."""
        self._mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
        with dbapi_connection.cursor() as cur:
            for sql in self.settings.limits.kimai_session_sql(self._mariadb):
                cur.execute(sql)

    def _session_sql(self) -> list[str] | None:
        """The limits for a connectorx read, run on its connection before the query.

        connectorx opens a connection per read; its ``pre_execution_query`` runs on that
        same connection, so every bulk read carries the limits (capped by what is left of
        the run's deadline when it starts).
        """
        if self.dialect != "mysql":
            return None
        if self._mariadb is None:
            with self.engine.connect():
                pass  # `_limit_session` learns which server this is
        return self.settings.limits.kimai_session_sql(bool(self._mariadb)) or None

    def close(self) -> None:
        """Release the engine."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def check(self) -> None:
        """Connect once, turning driver errors into one-line `DatabaseError`s."""
        self.settings.require_kimai_file()

        def ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(sa.text(tagged("ping", "", "SELECT 1")))

        try:
            with_retries(ping, "connecting to Kimai", self.settings.retry)
        except sa.exc.SQLAlchemyError as exc:
            raise database_failure(
                f"cannot connect to Kimai at {self.settings.describe_kimai()}", exc
            ) from exc

    # -- catalog ---------------------------------------------------------------------------

    def unindexed_rows(self, spec: TableSpec, column: str) -> int | None:
        """InnoDB's row estimate of `spec`'s table when no index begins with `column`.

        None when one does, or on SQLite. Catalog reads only (``information_schema``).
        """
        if self.dialect != "mysql":
            return None
        table = self.settings.kimai_table_prefix + spec.kimai_table
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    tagged(
                        "catalog",
                        spec.name,
                        "SELECT t.table_rows, EXISTS (SELECT 1 FROM information_schema.statistics s"
                        " WHERE s.table_schema = t.table_schema AND s.table_name = t.table_name"
                        " AND s.column_name = :c AND s.seq_in_index = 1)"
                        " FROM information_schema.tables t"
                        " WHERE t.table_schema = DATABASE() AND t.table_name = :t",
                    )
                ),
                {"t": table, "c": column},
            ).first()
        if row is None or row[1]:
            return None
        return int(row[0] or 0)

    def _source_columns(
        self, tables: Sequence[str]
    ) -> tuple[dict[str, list[SourceColumn]], dict[str, list[frozenset[str]]] | None]:
        """Catalog columns of `tables` and their unique indexes, over one connection.

        Columns come in Kimai's order; each unique index (the primary key included) as its
        set of columns (None for SQLite, whose embedded schema is the product's own).
        """
        out: dict[str, list[SourceColumn]] = {t: [] for t in tables}
        with self.engine.connect() as conn:
            if self.dialect == "mysql":
                rows = conn.execute(
                    sa.text(
                        tagged(
                            "catalog",
                            "",
                            "SELECT table_name, column_name, data_type, column_type"
                            " FROM information_schema.columns"
                            " WHERE table_schema = DATABASE() AND table_name IN :t"
                            " ORDER BY table_name, ordinal_position",
                        )
                    ).bindparams(sa.bindparam("t", expanding=True)),
                    {"t": list(tables)},
                ).fetchall()
                for r in rows:
                    out[r[0]].append(SourceColumn(r[1], r[2].lower(), r[3].lower()))
                return out, self._unique_keys(conn, tables)
            for table in tables:
                pragma = conn.execute(sa.text(f'PRAGMA table_info("{table}")')).fetchall()
                out[table] = [
                    SourceColumn(r[1], (r[2] or "").lower(), (r[2] or "").lower()) for r in pragma
                ]
            return out, None

    @staticmethod
    def _unique_keys(conn: sa.Connection, tables: Sequence[str]) -> dict[str, list[frozenset[str]]]:
        """Column sets of the unique indexes (the primary key included) of `tables`."""
        rows = conn.execute(
            sa.text(
                tagged(
                    "catalog",
                    "",
                    "SELECT table_name, index_name, column_name FROM information_schema.statistics"
                    " WHERE table_schema = DATABASE() AND table_name IN :t AND non_unique = 0",
                )
            ).bindparams(sa.bindparam("t", expanding=True)),
            {"t": list(tables)},
        ).fetchall()
        indexes: dict[tuple[str, str], set[str]] = {}
        for table, index, column in rows:
            indexes.setdefault((table, index), set()).add(column)
        out: dict[str, list[frozenset[str]]] = {t: [] for t in tables}
        for (table, _index), columns in indexes.items():
            out[table].append(frozenset(columns))
        return out

    def layouts(self, specs: Sequence[TableSpec]) -> list[TableLayout]:
        """Reflect registry tables into their replica layouts (one catalog query).

        Raises:
            KimaiSchemaError: A table, its key or its cursor is missing (or not readable).

        """
        names = [spec.kimai_name(self.settings.kimai_table_prefix) for spec in specs]
        try:
            found = with_retries(
                lambda: self._source_columns(names), "reading Kimai's catalog", self.settings.retry
            )
        except sa.exc.SQLAlchemyError as exc:
            raise database_failure("cannot read Kimai's catalog", exc) from exc
        columns, unique = found
        return [
            self._layout(spec, name, columns[name], None if unique is None else unique[name])
            for spec, name in zip(specs, names, strict=True)
        ]

    def layout(self, spec: TableSpec) -> TableLayout:
        """Reflect one registry table into its replica layout (see `layouts`)."""
        return self.layouts([spec])[0]

    def _layout(
        self,
        spec: TableSpec,
        name: str,
        source: list[SourceColumn],
        unique: list[frozenset[str]] | None,
    ) -> TableLayout:
        if not source:
            raise KimaiSchemaError(
                f"Kimai table {name} not found (or not readable) in"
                f" {self.settings.describe_kimai()}; check KIMAI_DB_DATABASE, KIMAI_TABLE_PREFIX"
                " and the login's SELECT grants"
            )
        mapper = map_mysql_column if self.dialect == "mysql" else map_sqlite_column
        allowed = spec.allowed_columns
        unlisted = [
            c.name
            for c in source
            if allowed is not None and c.name not in allowed and c.name not in spec.excluded_columns
        ]
        if unlisted:
            log.warning(
                "Kimai table %s has column(s) %s that the registry does not list: not"
                " replicated (add them to pipelines/registry.py once they are known to be safe)",
                name,
                ", ".join(unlisted),
            )
        columns = tuple(
            mapper(c)
            for c in source
            if c.name not in spec.excluded_columns and (allowed is None or c.name in allowed)
        )
        present = {c.name for c in columns}
        needed = set(spec.primary_key) | ({spec.cursor} if spec.cursor else set())
        if spec.allowed_rows is not None:
            needed.add(spec.allowed_rows.column)
        if missing := sorted(needed - present):
            raise KimaiSchemaError(f"Kimai table {name} lacks column(s) {', '.join(missing)}")
        # a unique index on (a subset of) the key columns makes the key unique
        key_unique = unique is None or any(cols <= set(spec.primary_key) for cols in unique)
        if not key_unique:
            log.warning(
                "Kimai table %s has no unique index on its key (%s): it is read grouped by"
                " the key, and rows with copies are listed in vw_data_issues (duplicate_key)",
                name,
                ", ".join(spec.primary_key),
            )
        return TableLayout(
            spec=spec, kimai_name=name, columns=columns, dialect=self.dialect, key_unique=key_unique
        )

    # -- bulk reads ------------------------------------------------------------------------

    def _count(self, layout: TableLayout, data: pa.Table | pa.RecordBatch) -> None:
        name = layout.spec.name
        self.bytes_read[name] = self.bytes_read.get(name, 0) + data.nbytes

    def _read(self, layout: TableLayout, purpose: Purpose, sql: str) -> pa.Table:
        cx = connectorx()

        sql = tagged(purpose, layout.kimai_name, sql)

        try:
            table = with_retries(
                lambda: cx.read_sql(
                    self._cx_url,
                    sql,
                    return_type="arrow",
                    pre_execution_query=self._session_sql(),
                ),
                f"reading {layout.kimai_name}",
                self.settings.retry,
            )
        except BaseException as exc:  # connectorx raises RuntimeErrors and panics
            if is_fatal_signal(exc) or isinstance(exc, RunTimedOut):
                raise
            raise database_failure("reading Kimai failed", exc) from exc
        self._count(layout, table)
        return table

    def stream_rows(self, layout: TableLayout, where: str | None = None) -> Iterator[pa.Table]:
        """Stream the rows matching `where` in key order, in bounded batches.

        For a consumer that keeps up with Kimai (the bulk path's COPY): the stream has no
        back-pressure (see `page_rows`). A transient failure (Kimai restarting, a killed
        connection) resumes after the last key received instead of starting the table over.
        """
        cx = connectorx()

        key = layout.key
        order = ", ".join(layout.quote(k) for k in key)
        last: tuple[int, ...] | None = None
        failures = 0
        while True:
            resume = _after_key(layout, last) if last is not None else None
            cond = " AND ".join(f"({c})" for c in (where, resume) if c) or None
            sql = tagged(
                "ordered stream", layout.kimai_name, f"{layout.select_sql(cond)} ORDER BY {order}"
            )
            try:
                reader = cx.read_sql(
                    self._cx_url,
                    sql,
                    return_type="arrow_stream",
                    batch_size=BATCH_ROWS,
                    pre_execution_query=self._session_sql(),
                )
                for batch in reader:
                    if not batch.num_rows:
                        continue
                    self._count(layout, batch)
                    table = conform(batch, layout.data_schema)
                    last = tuple(int(table.column(k)[-1].as_py()) for k in key)
                    failures = 0
                    yield table
                return
            except BaseException as exc:  # connectorx panics are BaseExceptions
                if is_fatal_signal(exc) or isinstance(exc, RunTimedOut):
                    raise
                failures += 1
                if failures >= self.settings.retry.attempts or classify(exc) != "transient":
                    raise database_failure(f"reading {layout.kimai_name} failed", exc) from exc
                delay = self.settings.retry.backoff(failures)
                log.warning(
                    "reading %s failed after key %s (%s); resuming in %.1f s",
                    layout.kimai_name,
                    last,
                    describe(exc),
                    delay,
                )
                time.sleep(delay)

    def page_rows(self, layout: TableLayout, where: str | None = None) -> Iterator[pa.Table]:
        """Read the rows matching `where` in key order, one page of `BATCH_ROWS` per query.

        For consumers slower than Kimai (dlt's extract and load): connectorx's stream has
        no back-pressure, so a stream read faster than it is used queues the rest of the
        result in memory. Pages hold at most two pages at a time, the next one being read
        while the caller works on the current one.
        """
        order = ", ".join(layout.quote(k) for k in layout.key)

        def page(last: tuple[int, ...] | None) -> pa.Table:
            resume = _after_key(layout, last) if last is not None else None
            cond = " AND ".join(f"({c})" for c in (where, resume) if c) or None
            sql = f"{layout.select_sql(cond)} ORDER BY {order} LIMIT {BATCH_ROWS}"
            return conform(self._read(layout, "ordered pages", sql), layout.data_schema)

        with ThreadPoolExecutor(1, thread_name_prefix="kimai-page") as reader:
            ahead = reader.submit(page, None)
            while True:
                table = ahead.result()
                if table.num_rows == BATCH_ROWS:
                    last = tuple(int(table.column(k)[-1].as_py()) for k in layout.key)
                    ahead = reader.submit(page, last)
                if table.num_rows:
                    yield table
                if table.num_rows < BATCH_ROWS:
                    return

    def read_rows(
        self, layout: TableLayout, where: str | None = None, purpose: Purpose = "whole table"
    ) -> pa.Table:
        """Read the replicated columns of the rows matching `where` (small results)."""
        return conform(self._read(layout, purpose, layout.select_sql(where)), layout.data_schema)

    def key_bounds(self, layout: TableLayout) -> tuple[int, int] | None:
        """Lowest and highest value of the (first) key column; None for an empty table."""
        k = layout.quote(layout.key[0])
        row = self._read(
            layout,
            "key bounds",
            f"SELECT MIN({k}) AS lo, MAX({k}) AS hi FROM {layout.source_sql}",
        )
        lo, hi = row.column("lo")[0].as_py(), row.column("hi")[0].as_py()
        return None if lo is None else (int(lo), int(hi))

    def count_rows(self, layout: TableLayout, where: str | None = None) -> int:
        """How many rows the table holds (those matching `where`, when given)."""
        sql = f"SELECT COUNT(*) AS n FROM {layout.source_sql}"
        table = self._read(layout, "row count", f"{sql} WHERE {where}" if where else sql)
        return int(table.column("n")[0].as_py())

    def read_key_ranges(self, layout: TableLayout, ranges: Sequence[tuple[int, int]]) -> pa.Table:
        """Keys (as int64) whose first key column is in one of the half-open `ranges`."""
        where = ranges_sql(layout.quote(layout.key[0]), ranges)
        return key_columns_only(
            self._read(layout, "key ranges", f"{layout.key_select_sql()} WHERE {where}"),
            layout.key,
        )

    def read_window(self, layout: TableLayout, window: Window, limit: int) -> pa.Table | None:
        """The rows in an incremental table's cursor window (see `window_sql`).

        Returns:
            The rows, or None when more than `limit` match: the run then streams them
            (`page_rows`) instead of holding them.

        """
        sql = f"{layout.select_sql(window_sql(layout, window))} LIMIT {int(limit) + 1}"
        rows = conform(self._read(layout, "cursor window", sql), layout.data_schema)
        return None if rows.num_rows > limit else rows

    def read_query(self, layout: TableLayout, purpose: Purpose, sql: str) -> pa.Table:
        """Run a read-only query on `layout`'s table (e.g. aggregates) and return Arrow."""
        return self._read(layout, purpose, sql)

    def read_by_keys(self, layout: TableLayout, keys: pa.Array) -> Iterator[pa.Table]:
        """Read the rows with the given single-column keys, in chunks."""
        (key,) = layout.key
        for chunk in chunks(keys.to_pylist(), KEYS_PER_QUERY):
            where = f"{layout.quote(key)} IN ({', '.join(str(int(k)) for k in chunk)})"
            table = self.read_rows(layout, where, "rows by key")
            if table.num_rows:
                yield table


def _require_tls(dbapi_connection: Any, _record: Any) -> None:
    """Refuse a PyMySQL connection that went on without TLS.

    PyMySQL asked for TLS carries on in plaintext when the server does not offer it (or
    something in between strips the offer); connectorx's reader refuses by itself.
    """
    import ssl

    if not isinstance(getattr(dbapi_connection, "_sock", None), ssl.SSLSocket):
        dbapi_connection.close()
        raise DatabaseError(
            "Kimai's server did not agree to TLS, and KIMAI_DB_SSL_MODE requires it"
        )


def window_sql(layout: TableLayout, window: Window) -> str:
    """SQL predicate selecting the rows of a cursor window (`Window.reads_rows` must hold)."""
    clauses = []
    if window.changed_since is not None:
        since = window.changed_since.astimezone(dt.UTC).strftime("'%Y-%m-%d %H:%M:%S'")
        clauses.append(f"{layout.quote(layout.spec.cursor or '')} >= {since}")
    if window.local_days_from is not None:
        clauses.append(f"{layout.quote('date_tz')} >= '{window.local_days_from.isoformat()}'")
    if not clauses:
        raise ValueError("the window selects no rows")
    return " OR ".join(clauses)


def _after_key(layout: TableLayout, last: tuple[int, ...]) -> str:
    """Predicate for keys after `last` in key order, written so an index range scan fits."""
    clauses = []
    for i, k in enumerate(layout.key):
        equal = [f"{layout.quote(p)} = {v}" for p, v in zip(layout.key[:i], last, strict=False)]
        clauses.append(" AND ".join([*equal, f"{layout.quote(k)} > {last[i]}"]))
    return " OR ".join(f"({c})" for c in clauses)


def chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Split `values` into consecutive slices of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def in_lists_sql(quote: Callable[[str], str], values: Mapping[str, Sequence[int]]) -> str:
    """SQL predicate: a column holds one of its `values`, for any column.

    Column names are quoted by `quote` (each server's own); lists hold at most
    `KEYS_PER_QUERY` values each.
    """
    return " OR ".join(
        f"{quote(column)} IN ({', '.join(str(int(v)) for v in chunk)})"
        for column, ids in values.items()
        for chunk in chunks(ids, KEYS_PER_QUERY)
    )
