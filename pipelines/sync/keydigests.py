"""The replica side of the follower's key sweep, kept from the change log.

A poll-feed tick compares one slice of every keyed table's key range by bucket digests
(`pipelines.sync.rangediff`): per bucket of the first key column, the row count and two
sums of key hashes. Kimai's side is computed by Kimai on every tick. The replica's side is
stored in ``sync_key_digests`` and kept up to date from the change log instead of being
aggregated again over millions of replica rows each tick: a key digest depends on the key
set only, so only the log's ``insert`` and ``delete`` rows move it (every writer writes by
key; an ``update`` never changes a key).

Before a tick compares a table, `refresh` applies the log rows after the stored position,
in one transaction with the new position. The stored digests are rebuilt from the table
itself when there is no position yet, when the log says ``rewrite`` for the table (or
``*``) after it, or when rows after it were pruned. Writers never run beside a tick (both
hold the run lock), so the log's newest position read first is complete.

A stored bucket that differs from Kimai's makes the tick read that bucket's keys from both
sides, the replica's from the table itself. If they agree, the stored bucket was wrong: it
is recomputed from the table (`heal`) and a warning says so. Scheduled runs and
``reconcile`` never use the stored digests: they compare the table itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.adapters.layout import TableLayout, quote_ansi, ranges_sql, sql_string
from pipelines.adapters.replica import PostgresReplica
from pipelines.record.changelog import LOG_TABLE, PRUNED_TABLE

log = logging.getLogger("pipelines.sync.keydigests")

DIGESTS = "sync_key_digests"
POSITIONS = "sync_key_digests_at"

_MODULUS = 1 << 60
_LOWEST, _HIGHEST = -(1 << 62), 1 << 62


def ddl(schema: str) -> list[str]:
    """The two tables (in the replica schema; the BI role gets no grant on them)."""
    q = quote_ansi(schema)
    return [
        f"CREATE TABLE IF NOT EXISTS {q}.{DIGESTS} (table_name varchar NOT NULL,"
        " bucket bigint NOT NULL, n bigint NOT NULL, h0 bigint NOT NULL, h1 bigint NOT NULL,"
        " PRIMARY KEY (table_name, bucket))",
        f"CREATE TABLE IF NOT EXISTS {q}.{POSITIONS} (table_name varchar PRIMARY KEY,"
        " change_id bigint NOT NULL)",
    ]


@dataclass(frozen=True)
class StoredDigests:
    """One table's stored digests, current as of the change log's newest position."""

    schema: str
    table: str
    """The registry's short name (the change log's ``table_name``)."""
    count: int
    """The replica table's row count (the buckets' counts added up)."""
    table_sql: str
    """`rangediff.digest_sql` of the replica table: what a bucket is recomputed from."""

    def sql(self, low: int, high: int) -> str:
        """The stored buckets in ``[low, high)``, as `rangediff.digest_sql` returns them."""
        return (
            f"SELECT bucket, n, h0, h1 FROM {quote_ansi(self.schema)}.{DIGESTS}"
            f" WHERE table_name = {sql_string(self.table)} AND bucket >= {int(low)}"
            f" AND bucket < {int(high)}"
        )


def refresh(
    replica: PostgresReplica, layout: TableLayout, bucket: int, table_digest_sql: str
) -> StoredDigests:
    """Bring one table's stored digests up to the change log's newest position.

    Args:
        replica: The replica (PostgreSQL: the demo's DuckDB has no change log).
        layout: The table.
        bucket: First-key values per bucket (the sweep's ``keys`` buckets).
        table_digest_sql: `rangediff.digest_sql` of the replica table (``{low}``/``{high}``
            placeholders): what a rebuild stores.

    Returns:
        The stored digests and the table's row count.

    """
    q = quote_ansi(replica.schema)
    name = layout.spec.name
    replica.execute_all([(sql, None) for sql in ddl(replica.schema)])
    stored, newest, rewritten, pruned = replica.query(
        f"WITH at AS (SELECT change_id FROM {q}.{POSITIONS} WHERE table_name = %(t)s)"
        " SELECT (SELECT change_id FROM at),"
        f" (SELECT coalesce(max(change_id), 0) FROM {q}.{LOG_TABLE}),"
        f" EXISTS (SELECT 1 FROM {q}.{LOG_TABLE} WHERE change = 'rewrite'"
        "  AND table_name IN (%(t)s, '*') AND change_id > (SELECT change_id FROM at)),"
        f" (SELECT max(pruned_through) FROM {q}.{PRUNED_TABLE})",
        {"t": name},
    )[0]
    rebuild = stored is None or rewritten or (pruned is not None and pruned > stored)
    position = {"t": name, "p": stored, "newest": newest}
    moved = (
        f"INSERT INTO {q}.{POSITIONS} (table_name, change_id) VALUES (%(t)s, %(newest)s)"
        " ON CONFLICT (table_name) DO UPDATE SET change_id = excluded.change_id"
    )
    if rebuild:
        statements = [
            (f"DELETE FROM {q}.{DIGESTS} WHERE table_name = %(t)s", position),
            (
                f"INSERT INTO {q}.{DIGESTS} (table_name, bucket, n, h0, h1)"
                f" SELECT %(t)s, bucket, n, h0, h1 FROM ({_unformatted(table_digest_sql)}) d",
                position,
            ),
        ]
    elif newest != stored:
        emptied = f"DELETE FROM {q}.{DIGESTS} WHERE table_name = %(t)s AND n = 0"
        statements = [(_apply_sql(q, layout, bucket), position), (emptied, position)]
    else:
        statements = []
    if statements:
        replica.execute_all([*statements, (moved, position)])
    count = replica.query(
        f"SELECT coalesce(sum(n), 0) FROM {q}.{DIGESTS} WHERE table_name = %s", (name,)
    )[0][0]
    if rebuild:
        log.info("key digests of %s stored from the replica table", name)
    return StoredDigests(replica.schema, name, int(count), table_digest_sql)


def heal(
    replica: PostgresReplica, stored: StoredDigests, ranges: Sequence[tuple[int, int]]
) -> None:
    """Recompute the stored buckets of `ranges` from the replica table (they were wrong)."""
    if not ranges:
        return
    q = quote_ansi(replica.schema)
    params = {"t": stored.table}
    # each range is whole buckets: the table's digest of exactly those rows
    digests = " UNION ALL ".join(
        _escaped(stored.table_sql).format(low=int(a), high=int(b)) for a, b in ranges
    )
    replica.execute_all(
        [
            (
                f"DELETE FROM {q}.{DIGESTS} WHERE table_name = %(t)s"
                f" AND ({_escaped(ranges_sql('bucket', ranges))})",
                params,
            ),
            (
                f"INSERT INTO {q}.{DIGESTS} (table_name, bucket, n, h0, h1)"
                f" SELECT %(t)s, bucket, n, h0, h1 FROM ({digests}) d",
                params,
            ),
        ]
    )
    log.warning(
        "the stored key digests of %s differed from the replica table in %d bucket(s);"
        " recomputed from the table",
        stored.table,
        len(ranges),
    )


def _apply_sql(q: str, layout: TableLayout, bucket: int) -> str:
    """Add the log's inserted keys to their buckets and take its deleted keys away."""
    from pipelines.sync.rangediff import POSTGRES

    # the log's key columns stand in for the table's: the same hashes, the same buckets
    hashes = [_escaped(h) for h in POSTGRES.key_hashes(["key_1", "key_2"][: len(layout.key)])]
    sums = ", ".join(f"sum(sign * ({h})) AS h{i}" for i, h in enumerate(hashes))
    folded = ", ".join(f"mod(mod(d.h{i}, {_MODULUS}) + {_MODULUS}, {_MODULUS})" for i in (0, 1))
    return (
        f"WITH delta AS (SELECT key_1 - key_1 %% {bucket} AS bucket, sum(sign) AS n, {sums}"
        f" FROM (SELECT key_1, key_2, CASE change WHEN 'insert' THEN 1 ELSE -1 END AS sign"
        f" FROM {q}.{LOG_TABLE} WHERE table_name = %(t)s AND change IN ('insert', 'delete')"
        " AND change_id > %(p)s AND change_id <= %(newest)s) l GROUP BY 1)"
        f" INSERT INTO {q}.{DIGESTS} AS s (table_name, bucket, n, h0, h1)"
        f" SELECT %(t)s, d.bucket, d.n, {folded} FROM delta d"
        " ON CONFLICT (table_name, bucket) DO UPDATE SET n = s.n + excluded.n,"
        f" h0 = mod(s.h0 + excluded.h0, {_MODULUS}), h1 = mod(s.h1 + excluded.h1, {_MODULUS})"
    )


def _unformatted(table_digest_sql: str) -> str:
    """The whole table's digest query (its range placeholders opened to every key)."""
    return _escaped(table_digest_sql).format(low=_LOWEST, high=_HIGHEST)


def _escaped(sql: str) -> str:
    """`sql` with its modulo operators kept through psycopg2's parameter substitution."""
    return sql.replace("%", "%%")
