"""The replica's change log: which keys each load wrote or deleted, for dbt to read.

``sync_change_log`` (in the replica schema) gets one row per key a statement inserted,
updated or deleted in a replica table, written by statement-level triggers with transition
tables, so in the same transaction as the write itself: dlt's merge, the deletes of a
repair, a resumed load package. A rolled-back load logs nothing; a committed one cannot
miss its log. The incremental facts model (models/intermediate/
int_timesheet_facts_materialized.sql) reads the rows after the position it stored and
recomputes only the timesheets they affect.

A ``rewrite`` row says "anything in this table may have changed" and makes the model
recompute every row. It is written:

* by the bulk path, which rewrites a whole table with the triggers switched off for its
  transaction (one row instead of one per key of a million-row COPY);
* when the triggers are installed on an existing table (a table dlt or the bulk path has
  just created, a replica older than the log), since its earlier writes were not logged;
* when the log itself is created, under table name ``*``;
* by ``TRUNCATE``.

Positions (``change_id``) only ever grow: the identity starts at the creation time in
microseconds, so a dropped and recreated log continues above every position a model has
stored. Writers and dbt builds never overlap (both run under the run lock), so a build
never sees a position whose earlier rows are still uncommitted.

Rows older than `RETENTION` are pruned at the end of each run; ``sync_change_log_pruned``
records the last pruned position, and a model whose stored position is older recomputes
every row.

Why triggers rather than the loaders writing the log: dlt's merge runs its own SQL in its
own transaction, and the triggers catch every other write (repairs, resumed packages) the
same way. The embedded DuckDB demo has no triggers: its log tables exist but stay empty,
and the model there recomputes every row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from pipelines.adapters.layout import TableLayout, quote_ansi, sql_string
from pipelines.adapters.replica import PostgresReplica, Replica

log = logging.getLogger("pipelines.record.changelog")

LOG_TABLE = "sync_change_log"
PRUNED_TABLE = "sync_change_log_pruned"
FUNCTION = "sync_log_change"
SWITCH = "atlas_sync.change_log"
"""Setting that switches the triggers off for one transaction (``SET LOCAL … = 'off'``)."""

RETENTION = dt.timedelta(days=7)
"""How long log rows are kept: a facts build older than this recomputes every row."""

EVENTS: dict[str, str] = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
    "truncate": "",
}
"""The triggers of each replica table, by event, with their transition tables."""

_FUNCTION_BODY = f"""
BEGIN
    IF coalesce(current_setting('{SWITCH}', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('INSERT INTO %I.{LOG_TABLE} (table_name, change) VALUES (%L, %L)',
            TG_TABLE_SCHEMA, TG_ARGV[0], 'rewrite');
    ELSE
        EXECUTE format(
            'INSERT INTO %I.{LOG_TABLE} (table_name, key_1, key_2, change)'
            ' SELECT DISTINCT %L, CAST(%s AS bigint), CAST(%s AS bigint), %L FROM %s',
            TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], lower(TG_OP),
            CASE TG_OP
                WHEN 'INSERT' THEN 'new_rows'
                WHEN 'DELETE' THEN 'old_rows'
                ELSE '(SELECT * FROM new_rows UNION ALL SELECT * FROM old_rows) AS both_rows'
            END);
    END IF;
    RETURN NULL;
END
"""


def log_ddl(schema: str, created_at: dt.datetime) -> list[str]:
    """Statements creating the log, its pruning record and the trigger function.

    Args:
        schema: The replica schema.
        created_at: Now: the identity starts at this time in microseconds.

    """
    q = quote_ansi(schema)
    start = int(created_at.timestamp() * 1_000_000)
    return [
        f"CREATE TABLE IF NOT EXISTS {q}.{LOG_TABLE} ("
        f" change_id bigint GENERATED ALWAYS AS IDENTITY (START WITH {start}) PRIMARY KEY,"
        " table_name varchar NOT NULL, key_1 bigint, key_2 bigint,"
        " change varchar NOT NULL, logged_at timestamp with time zone NOT NULL DEFAULT now())",
        f"CREATE INDEX IF NOT EXISTS {LOG_TABLE}_logged_at ON {q}.{LOG_TABLE} (logged_at)",
        f"CREATE TABLE IF NOT EXISTS {q}.{PRUNED_TABLE} ("
        " pruned_through bigint NOT NULL, pruned_at timestamp with time zone NOT NULL)",
        f"CREATE OR REPLACE FUNCTION {q}.{FUNCTION}() RETURNS trigger"
        f" LANGUAGE plpgsql AS $body${_FUNCTION_BODY}$body$",
    ]


def trigger_ddl(schema: str, layout: TableLayout) -> list[str]:
    """The ``CREATE OR REPLACE TRIGGER`` statements of one replica table."""
    q = quote_ansi(schema)
    table = f"{q}.{quote_ansi(layout.spec.replica_table)}"
    keys = [quote_ansi(k) for k in layout.key] + ["NULL"]
    args = ", ".join(sql_string(a) for a in (layout.spec.name, keys[0], keys[1]))
    return [
        f"CREATE OR REPLACE TRIGGER {trigger_name(event)} AFTER {event.upper()} ON {table}"
        f" {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {q}.{FUNCTION}({args})"
        for event, referencing in EVENTS.items()
    ]


def trigger_name(event: str) -> str:
    """Name of the log trigger for one event (the same on every table)."""
    return f"{LOG_TABLE}_{event}"


def rewrite_sql(schema: str, table: str) -> str:
    """INSERT of one ``rewrite`` row for `table` (a registry short name, or ``*``)."""
    return (
        f"INSERT INTO {quote_ansi(schema)}.{LOG_TABLE} (table_name, change)"
        f" VALUES ({sql_string(table)}, 'rewrite')"
    )


def ensure(replica: Replica, layouts: Sequence[TableLayout]) -> None:
    """Create the log and install the triggers on every existing replica table lacking them.

    One catalog query when all is in place. A table that gets its triggers now gets a
    ``rewrite`` row in the same transaction, and a new log a ``*`` one.
    """
    if not isinstance(replica, PostgresReplica):
        # the demo's DuckDB: the tables only, for dbt's sources (no triggers there)
        q = quote_ansi(replica.schema)
        replica.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        replica.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.{LOG_TABLE} (change_id bigint, table_name varchar,"
            " key_1 bigint, key_2 bigint, change varchar, logged_at timestamp with time zone)"
        )
        replica.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.{PRUNED_TABLE} ("
            " pruned_through bigint, pruned_at timestamp with time zone)"
        )
        return
    schema = replica.schema
    tables = {layout.spec.replica_table: layout for layout in layouts}
    found = replica.query(
        "SELECT c.relname, count(t.tgname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = ANY(%s)"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)"
        " GROUP BY c.relname",
        ([trigger_name(e) for e in EVENTS], schema, [LOG_TABLE, *tables]),
    )
    triggers = dict(found)
    missing = [t for t, n in triggers.items() if t in tables and n < len(EVENTS)]
    if LOG_TABLE in triggers and not missing:
        return
    statements: list[tuple[str, Any]] = []
    if LOG_TABLE not in triggers:
        statements += [(ddl, None) for ddl in log_ddl(schema, dt.datetime.now(dt.UTC))]
        statements.append((rewrite_sql(schema, "*"), None))
    for table in missing:
        statements += [(ddl, None) for ddl in trigger_ddl(schema, tables[table])]
        statements.append((rewrite_sql(schema, tables[table].spec.name), None))
    replica.execute_all(statements)
    if missing:
        log.info("change log triggers installed on %s", ", ".join(sorted(missing)))


def prune(replica: Replica, now: dt.datetime | None = None) -> int:
    """Delete log rows older than `RETENTION`, recording the last pruned position.

    Returns:
        Rows deleted.

    """
    if not isinstance(replica, PostgresReplica):
        return 0
    q = quote_ansi(replica.schema)
    cutoff = (now or dt.datetime.now(dt.UTC)) - RETENTION
    rows = replica.query(
        f"WITH gone AS (DELETE FROM {q}.{LOG_TABLE} WHERE logged_at < %s RETURNING change_id),"
        " horizon AS (SELECT max(change_id) AS through, count(*) AS n FROM gone),"
        # only the newest horizon matters
        f" cleared AS (DELETE FROM {q}.{PRUNED_TABLE}"
        " WHERE pruned_through < (SELECT through FROM horizon)),"
        f" recorded AS (INSERT INTO {q}.{PRUNED_TABLE} (pruned_through, pruned_at)"
        " SELECT through, now() FROM horizon WHERE n > 0 RETURNING 1)"
        " SELECT n FROM horizon",
        (cutoff,),
    )
    return int(rows[0][0]) if rows else 0
