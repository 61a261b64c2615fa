"""Column layout of a replicated table: Kimai column → replica type, select expression, Arrow type.

One mapping serves every reader: Kimai batches and replica reads are both cast to the
layout's Arrow schema, so they compare exactly, and the same hints create the replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.registry import DATA_ISSUES, SYNCED_AT, TableSpec

DataType = Literal["bigint", "bool", "double", "timestamp", "date", "text"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "text": pa.string(),
}

_MYSQL_INTEGERS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_MYSQL_FLOATS = {"double", "float", "real"}
_MYSQL_LONG_TEXTS = {"mediumtext", "longtext", "json"}
"""Text types that can hold more than `TEXT_MAX_CHARS` (TEXT: 65,535 bytes at most)."""
_MYSQL_TEXTS = {
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "enum",
    "set",
    "json",
}


@dataclass(frozen=True)
class SourceColumn:
    """A column as Kimai's catalog describes it."""

    name: str
    data_type: str
    """Base type name, lower case (``int``, ``tinyint``, ``datetime`` …)."""
    column_type: str
    """Full declared type, lower case (``tinyint(1)``, ``varchar(150)`` …)."""


TEXT_MAX_CHARS = 1_000_000
"""Longest text replicated (rule ``oversized_text``). Kimai's TEXT columns hold at most
65,535 bytes; only its LONGTEXT columns (invoice texts) can exceed this, and a value over
MariaDB's ``max_allowed_packet`` (16 MiB by default) could not be read at all."""

DataRule = Literal["nul_in_text", "oversized_text", "invalid_date", "duplicate_key"]
"""The rules a Kimai value is replicated under when it cannot be copied as it is."""

COPIES = "_copies"
"""Column of a table read grouped by its key: how many Kimai rows carry the key."""


@dataclass(frozen=True)
class ReplicaColumn:
    """How one Kimai column is read and stored."""

    name: str
    data_type: DataType
    value_sql: str
    """Expression in Kimai's SQL dialect reading the column under the data rules."""
    issue_sql: tuple[str, ...] = ()
    """Expressions in Kimai's dialect, each NULL or one `data issue entry` of the column."""

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type both sides are cast to."""
        return ARROW_TYPES[self.data_type]


def quote_mysql(name: str) -> str:
    """Quote an identifier for MySQL/MariaDB."""
    return "`" + name.replace("`", "``") + "`"


def quote_ansi(name: str) -> str:
    """Quote an identifier for PostgreSQL, DuckDB and SQLite."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A string literal valid in MariaDB (any sql_mode), PostgreSQL, DuckDB and SQLite.

    Only for the registry's own constants: refuses what would need escaping beyond quotes.
    """
    if "\\" in value or "\0" in value:
        raise ValueError(f"not a plain string literal: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def mysql_valid_date(quoted: str) -> str:
    """Expression reading a DATE/DATETIME column with invalid dates as NULL (``invalid_date``).

    MariaDB keeps zero dates and zero parts outside strict modes, and any day 1-31 of any
    month under ``ALLOW_INVALID_DATES`` (``2023-02-30``); no reader can represent those
    (connectorx aborts on them). Date arithmetic yields NULL for exactly these values.
    """
    return f"DATE_ADD({quoted}, INTERVAL 0 DAY)"


def _issue(rule: DataRule, column: str, condition: str, raw: str = "''") -> str:
    """A data issue entry ``rule|column|raw`` when `condition` holds, else NULL."""
    return f"IF({condition}, CONCAT('{rule}|{column}|', {raw}), NULL)"


def map_mysql_column(col: SourceColumn) -> ReplicaColumn:
    """Map a MySQL/MariaDB column to its replica type and select expression.

    DOUBLE stays a double (exact, no decimal round trip); ``TINYINT(1)`` is Kimai's boolean.
    Values no replica can hold are read under a data rule, each with its issue entry:
    invalid dates as NULL (the raw text recorded), text over `TEXT_MAX_CHARS` cut to that
    length (the original length recorded), NUL characters as U+FFFD.
    """
    q = quote_mysql(col.name)
    base = col.data_type
    if base == "tinyint" and col.column_type.startswith("tinyint(1)"):
        return ReplicaColumn(col.name, "bool", q)
    if base in _MYSQL_INTEGERS:
        return ReplicaColumn(col.name, "bigint", q)
    if base in _MYSQL_FLOATS:
        return ReplicaColumn(col.name, "double", q)
    if base in {"datetime", "timestamp", "date"}:
        # NOT NULL date columns answer IS NULL for a zero date: test the text instead, and
        # only for the rare invalid value (AND stops at the first false operand)
        invalid = f"{mysql_valid_date(q)} IS NULL AND CAST({q} AS CHAR) IS NOT NULL"
        return ReplicaColumn(
            col.name,
            "date" if base == "date" else "timestamp",
            mysql_valid_date(q),
            (_issue("invalid_date", col.name, invalid, f"CAST({q} AS CHAR)"),),
        )
    if base in _MYSQL_TEXTS:
        nul = "CHAR(0 USING utf8mb4)"
        issues = [_issue("nul_in_text", col.name, f"INSTR({q}, {nul}) > 0")]
        cut = q
        if base in _MYSQL_LONG_TEXTS:  # the other text types cannot reach the limit
            cut = f"LEFT({q}, {TEXT_MAX_CHARS})"
            issues.append(
                _issue(
                    "oversized_text",
                    col.name,
                    f"CHAR_LENGTH({q}) > {TEXT_MAX_CHARS}",
                    f"CHAR_LENGTH({q})",
                )
            )
        # PostgreSQL text cannot hold NUL: it becomes U+FFFD (X'EFBFBD' in UTF-8)
        value = f"REPLACE({cut}, {nul}, _utf8mb4 X'EFBFBD')"
        return ReplicaColumn(col.name, "text", value, tuple(issues))
    # DECIMAL, TIME, BIT, binary types: exact text is the only lossless common form.
    return ReplicaColumn(col.name, "text", f"CAST({q} AS CHAR)")


def map_sqlite_column(col: SourceColumn) -> ReplicaColumn:
    """Map a column of the embedded (SQLite) Kimai by its declared type."""
    q = quote_ansi(col.name)
    declared = col.column_type
    if declared.startswith("tinyint(1)") or declared.startswith("bool"):
        data_type: DataType = "bool"
    elif "int" in declared:
        data_type = "bigint"
    elif any(t in declared for t in ("double", "float", "real")):
        data_type = "double"
    elif declared.startswith("datetime") or declared.startswith("timestamp"):
        data_type = "timestamp"
    elif declared.startswith("date"):
        data_type = "date"
    else:
        data_type = "text"
    return ReplicaColumn(col.name, data_type, q)


@dataclass(frozen=True)
class TableLayout:
    """Everything the readers and the loader need to know about one replicated table."""

    spec: TableSpec
    kimai_name: str
    columns: tuple[ReplicaColumn, ...]
    dialect: str
    """Kimai's dialect: ``mysql`` or ``sqlite``."""
    key_unique: bool = True
    """Whether Kimai enforces the key (a unique index). Kimai's schema always does; a
    damaged one may not, and the table is then read grouped by its key (``duplicate_key``)."""

    @property
    def key(self) -> tuple[str, ...]:
        """Primary key columns."""
        return self.spec.primary_key

    @property
    def sync(self) -> str:
        """How the table is synced: the registry's mode, with one exception.

        A table of pairs whose key Kimai does not enforce is compared whole: its rows
        carry issues, which a comparison of key sets would not see.
        """
        if self.spec.sync == "pairs" and not self.key_unique:
            return "full"
        return self.spec.sync

    @cached_property
    def names(self) -> list[str]:
        """Replicated Kimai column names, in Kimai's order."""
        return [c.name for c in self.columns]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """Schema of the rows handed to dlt: `data_schema` plus ``synced_at``."""
        return self.data_schema.append(pa.field(SYNCED_AT, ARROW_TYPES["timestamp"]))

    @cached_property
    def data_schema(self) -> pa.Schema:
        """Schema of what is read and compared: Kimai's columns and ``data_issues``."""
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.name not in self.key) for c in self.columns
        ]
        fields.append(pa.field(DATA_ISSUES, ARROW_TYPES["text"]))
        return pa.schema(fields)

    def quote(self, name: str) -> str:
        """Quote an identifier in Kimai's dialect."""
        return quote_mysql(name) if self.dialect == "mysql" else quote_ansi(name)

    @cached_property
    def source_sql(self) -> str:
        """What every query on Kimai reads the table from (the FROM item).

        The table itself, or for a table with a row allow-list a derived table of the
        allowed rows under the table's own name, so that no query (rows, keys, counts,
        digests) can see another row. MariaDB merges it into the outer query: the table's
        indexes still serve. Names compare as bytes: a name differing only in case (which
        Kimai's case-insensitive collation would match) is not on the list. A table whose
        key Kimai does not enforce is read grouped by the key: one row per key, the
        greatest value of each other column, and the number of copies.
        """
        table = self.quote(self.kimai_name)
        rows = self.spec.allowed_rows
        source = table
        if rows is not None:
            cols = ", ".join(self.quote(n) for n in self.names)
            values = ", ".join(sql_string(v) for v in sorted(rows.values))
            column = self.quote(rows.column)
            if self.dialect == "mysql":
                column = f"BINARY {column}"
            source = f"(SELECT {cols} FROM {table} WHERE {column} IN ({values})) AS {table}"
        if self.key_unique:
            return source
        keys = ", ".join(self.quote(k) for k in self.key)
        values = [
            f"MAX({self.quote(n)}) AS {self.quote(n)}" for n in self.names if n not in self.key
        ]
        cols = ", ".join([keys, *values, f"COUNT(*) AS {self.quote(COPIES)}"])
        return f"(SELECT {cols} FROM {source} GROUP BY {keys}) AS {table}"

    @cached_property
    def issues_sql(self) -> str:
        """MariaDB expression of the row's ``data_issues``.

        Its issue entries, one per line, or NULL.
        """
        entries = [sql for c in self.columns for sql in c.issue_sql]
        if not self.key_unique:
            key = ",".join(self.key)
            copies = self.quote(COPIES)
            entries.append(f"IF({copies} > 1, CONCAT('duplicate_key|{key}|', {copies}), NULL)")
        if not entries:
            return "CAST(NULL AS CHAR)"
        return f"NULLIF(CONCAT_WS(CHAR(10), {', '.join(entries)}), '')"

    def select_sql(self, where: str | None = None) -> str:
        """A SELECT of every replicated column (never the excluded ones) and the issues."""
        cols = [f"{c.value_sql} AS {self.quote(c.name)}" for c in self.columns]
        if self.dialect == "mysql":
            # the embedded SQLite Kimai is the product's own: read as it is (no issues)
            cols.append(f"{self.issues_sql} AS {self.quote(DATA_ISSUES)}")
        sql = f"SELECT {', '.join(cols)} FROM {self.source_sql}"
        return f"{sql} WHERE {where}" if where else sql

    def key_select_sql(self) -> str:
        """A SELECT of the key columns only."""
        cols = ", ".join(self.quote(k) for k in self.key)
        return f"SELECT {cols} FROM {self.source_sql}"

    def dlt_columns(self) -> dict[str, dict[str, Any]]:
        """Column hints for dlt: types, keys; every non-key column nullable.

        Non-key columns stay nullable in the replica so that delete markers (rows that
        carry only a key) can pass through dlt's staging table.
        """
        hints: dict[str, dict[str, Any]] = {}
        for c in self.columns:
            hint: dict[str, Any] = {"name": c.name, "data_type": c.data_type, "nullable": True}
            if c.name in self.key:
                hint.update(nullable=False, primary_key=True)
            if c.data_type == "timestamp":
                hint["timezone"] = True
            hints[c.name] = hint
        hints[DATA_ISSUES] = {"name": DATA_ISSUES, "data_type": "text", "nullable": True}
        hints[SYNCED_AT] = {
            "name": SYNCED_AT,
            "data_type": "timestamp",
            "timezone": True,
            "nullable": True,
        }
        return hints


def conform(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a batch read from either database to `schema` (by column name).

    Integers become booleans where the schema says so (0 → false, NULL stays NULL), naive
    timestamps are taken as UTC (Kimai stores UTC), and columns the batch lacks are NULL.
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    arrays = []
    for field in schema:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type == field.type:
            arrays.append(col)
        elif pa.types.is_boolean(field.type) and not pa.types.is_boolean(col.type):
            arrays.append(pc.not_equal(col, pa.scalar(0, col.type)))
        else:
            # Arrow keeps timestamps as UTC epochs: casting naive to UTC-aware only labels them.
            arrays.append(pc.cast(col, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def key_columns_only(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Project a table to its key columns, as int64."""
    return pa.table({k: pc.cast(table.column(k), pa.int64()) for k in key})


def ranges_sql(column: str, ranges: Sequence[tuple[int, int]]) -> str:
    """SQL predicate: the (quoted) `column` lies in one of the half-open `ranges`."""
    return " OR ".join(f"({column} >= {int(a)} AND {column} < {int(b)})" for a, b in ranges)


def index_ddl(schema: str, layout: TableLayout) -> dict[str, str]:
    """PostgreSQL indexes of a replica table, by index name.

    The unique key (made the PRIMARY KEY by `primary_key_ddl`); the cursor, if the table has
    one; every foreign-key column that no key index already leads with (the orphan check
    and joins look rows up by them); the registry's BI columns; ``synced_at``
    (housekeeping and freshness queries); and the rows with data issues (a partial index).
    """
    table = layout.spec.replica_table
    qualified = f"{quote_ansi(schema)}.{quote_ansi(table)}"
    keys = ", ".join(quote_ansi(k) for k in layout.key)
    ddl = {
        key_index_name(layout): f"CREATE UNIQUE INDEX IF NOT EXISTS"
        f" {quote_ansi(key_index_name(layout))} ON {qualified} ({keys})"
    }
    columns = {f"{table}_cursor": layout.spec.cursor} if layout.spec.cursor else {}
    for ref in layout.spec.references:
        if ref.column != layout.key[0]:
            columns[f"{table}_{ref.column}"] = ref.column
    for column in (*layout.spec.bi_indexes, SYNCED_AT):
        columns[f"{table}_{column}"] = column
    for name, column in columns.items():
        ddl[name] = (
            f"CREATE INDEX IF NOT EXISTS {quote_ansi(name)} ON {qualified} ({quote_ansi(column)})"
        )
    # BI lists the rows read under a data rule: few, found without a scan of the table
    ddl[f"{table}_{DATA_ISSUES}"] = (
        f"CREATE INDEX IF NOT EXISTS {quote_ansi(f'{table}_{DATA_ISSUES}')} ON {qualified}"
        f" ({keys}) WHERE {quote_ansi(DATA_ISSUES)} IS NOT NULL"
    )
    return ddl


def key_index_name(layout: TableLayout) -> str:
    """Name of the unique key index, which is also the PRIMARY KEY constraint's name."""
    return f"{layout.spec.replica_table}_key"


def primary_key_ddl(schema: str, layout: TableLayout) -> str:
    """Make the key index the table's PRIMARY KEY, unless the table has one already.

    ``USING INDEX`` turns the existing unique index into the constraint without a rebuild
    (the key columns are NOT NULL already). Metabase marks primary keys as entity keys.
    """
    table = f"{quote_ansi(schema)}.{quote_ansi(layout.spec.replica_table)}"
    name = quote_ansi(key_index_name(layout))
    literal = table.replace("'", "''")
    return (
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint"
        f" WHERE conrelid = '{literal}'::regclass AND contype = 'p') THEN"
        f" ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name};"
        " END IF; END $$"
    )
