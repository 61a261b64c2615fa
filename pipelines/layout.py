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

from pipelines.registry import SYNCED_AT, TableSpec

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
    nullable: bool


@dataclass(frozen=True)
class ReplicaColumn:
    """How one Kimai column is read and stored."""

    name: str
    data_type: DataType
    select_sql: str
    """Expression in Kimai's SQL dialect, aliased to the column name."""

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
    """Expression reading a DATE/DATETIME column with zero dates (and zero parts) as NULL."""
    return f"IF(MONTH({quoted}) = 0 OR DAYOFMONTH({quoted}) = 0, NULL, {quoted})"


def map_mysql_column(col: SourceColumn) -> ReplicaColumn:
    """Map a MySQL/MariaDB column to its replica type and select expression.

    DOUBLE stays a double (exact, no decimal round trip); ``TINYINT(1)`` is Kimai's boolean;
    zero dates, which MariaDB accepts outside strict date modes and no reader can represent,
    are read as NULL.
    """
    q = quote_mysql(col.name)
    base = col.data_type
    if base == "tinyint" and col.column_type.startswith("tinyint(1)"):
        return ReplicaColumn(col.name, "bool", f"{q} AS {q}")
    if base in _MYSQL_INTEGERS:
        return ReplicaColumn(col.name, "bigint", f"{q} AS {q}")
    if base in _MYSQL_FLOATS:
        return ReplicaColumn(col.name, "double", f"{q} AS {q}")
    if base in {"datetime", "timestamp"}:
        return ReplicaColumn(col.name, "timestamp", f"{mysql_valid_date(q)} AS {q}")
    if base == "date":
        return ReplicaColumn(col.name, "date", f"{mysql_valid_date(q)} AS {q}")
    if base in _MYSQL_TEXTS:
        return ReplicaColumn(col.name, "text", f"{q} AS {q}")
    # DECIMAL, TIME, BIT, binary types: exact text is the only lossless common form.
    return ReplicaColumn(col.name, "text", f"CAST({q} AS CHAR) AS {q}")


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
    return ReplicaColumn(col.name, data_type, f"{q} AS {q}")


@dataclass(frozen=True)
class TableLayout:
    """Everything the readers and the loader need to know about one replicated table."""

    spec: TableSpec
    kimai_name: str
    columns: tuple[ReplicaColumn, ...]
    dialect: str
    """Kimai's dialect: ``mysql`` or ``sqlite``."""

    @property
    def key(self) -> tuple[str, ...]:
        """Primary key columns."""
        return self.spec.primary_key

    @cached_property
    def names(self) -> list[str]:
        """Replicated Kimai column names, in Kimai's order."""
        return [c.name for c in self.columns]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """Schema of the rows handed to dlt: Kimai's columns plus ``synced_at``."""
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.name not in self.key) for c in self.columns
        ]
        fields.append(pa.field(SYNCED_AT, ARROW_TYPES["timestamp"]))
        return pa.schema(fields)

    @cached_property
    def data_schema(self) -> pa.Schema:
        """Schema of Kimai's columns only (what is compared)."""
        return pa.schema([self.arrow_schema.field(n) for n in self.names])

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
        Kimai's case-insensitive collation would match) is not on the list.
        """
        table = self.quote(self.kimai_name)
        rows = self.spec.allowed_rows
        if rows is None:
            return table
        cols = ", ".join(self.quote(n) for n in self.names)
        values = ", ".join(sql_string(v) for v in sorted(rows.values))
        column = self.quote(rows.column)
        if self.dialect == "mysql":
            column = f"BINARY {column}"
        return f"(SELECT {cols} FROM {table} WHERE {column} IN ({values})) AS {table}"

    def select_sql(self, where: str | None = None) -> str:
        """A SELECT of every replicated column (never the excluded ones)."""
        cols = ", ".join(c.select_sql for c in self.columns)
        sql = f"SELECT {cols} FROM {self.source_sql}"
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
    and joins look rows up by them); the registry's BI columns; and ``synced_at``
    (housekeeping and freshness queries).
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
