"""Find rows that differ between Kimai and the replica without moving unchanged rows.

Both databases compute, for ordered key ranges, the count and the sum of a 60-bit row hash
(MD5 of a canonical text of every replicated column). Only buckets whose (count, sum)
differ are looked at more closely: their per-row hashes are compared, and only the keys
whose hashes differ are returned. Reads on Kimai are primary-key range scans of bounded
size, each in its own ``READ ONLY`` transaction, so no long snapshot or lock is held.

The canonical text is built so that MariaDB and PostgreSQL produce the same bytes for the
same value: integers and text as they are, booleans as 0/1, instants as UTC
``YYYY-MM-DD HH:MM:SS``, NULL as a marker distinct from '', each value length-prefixed.
Doubles print as their shortest round-trip digits on both servers; they differ only in
exponent notation for magnitudes below 1e-4 (PostgreSQL ``1e-05``, MariaDB ``0.00001``),
which makes such a row look different. That costs a look at its bucket and nothing else:
the rows themselves are then compared exactly in Arrow before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa

from pipelines.layout import (
    ReplicaColumn,
    TableLayout,
    mysql_valid_date,
    quote_ansi,
    quote_mysql,
    ranges_sql,
)
from pipelines.replica import Replica
from pipelines.sqltag import Purpose, tagged
from pipelines.types import FingerprintStats

BUCKET_IDS = 64
"""Keys per fingerprint bucket (by key value, so both sides bucket alike)."""

RANGE_IDS = 131_072
"""Keys per aggregate query: bounds each read on Kimai to a short primary-key range scan."""

RANGES_PER_QUERY = 200
"""Bucket ranges per row-hash query."""

FINGERPRINT_WORKERS = 4
"""Range queries in flight (about two per server)."""


def _empty() -> pa.Array:
    return pa.array([], pa.int64())


@dataclass
class Comparison:
    """Outcome of a whole-table fingerprint comparison."""

    kimai_count: int = 0
    replica_count: int = 0
    differing: pa.Array = field(default_factory=_empty)
    """Every key whose row differs or exists on one side only."""
    only_kimai: pa.Array = field(default_factory=_empty)
    only_replica: pa.Array = field(default_factory=_empty)


def _mysql_text(col: ReplicaColumn) -> str:
    q = quote_mysql(col.name)
    if col.data_type == "bool":
        value = f"IF({q} <> 0, '1', '0')"
    elif col.data_type == "timestamp":
        value = f"DATE_FORMAT({mysql_valid_date(q)}, '%Y-%m-%d %H:%i:%s')"
    elif col.data_type == "date":
        value = f"DATE_FORMAT({mysql_valid_date(q)}, '%Y-%m-%d')"
    else:
        value = f"CAST({q} AS CHAR)"
    return f"COALESCE(CONCAT(CHAR_LENGTH({value}), ':', {value}), 'N')"


def _pg_text(col: ReplicaColumn) -> str:
    q = quote_ansi(col.name)
    if col.data_type == "bool":
        value = f"(CASE WHEN {q} THEN '1' ELSE '0' END)"
    elif col.data_type == "timestamp":
        value = f"to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
    elif col.data_type == "date":
        value = f"to_char({q}, 'YYYY-MM-DD')"
    elif col.data_type == "double":
        value = f"replace({q}::text, 'e+', 'e')"
    else:
        value = f"{q}::text"
    return f"COALESCE(length({value})::text || ':' || {value}, 'N')"


def mysql_row_hash(layout: TableLayout) -> str:
    """SQL (MariaDB) for a row's 60-bit hash as an unsigned integer."""
    text = "CONCAT(" + ", ".join(_mysql_text(c) for c in layout.columns) + ")"
    return f"CAST(CONV(LEFT(MD5({text}), 15), 16, 10) AS UNSIGNED)"


def pg_row_hash(layout: TableLayout, present: set[str]) -> str:
    """SQL (PostgreSQL) for the same hash; columns the replica lacks hash as NULL."""
    parts = [_pg_text(c) if c.name in present else "'N'" for c in layout.columns]
    text = " || ".join(parts)
    return f"('x' || lpad(left(md5({text}), 15), 16, '0'))::bit(64)::bigint"


def _ranges_sql(key: str, buckets: Sequence[int]) -> str:
    return ranges_sql(key, [(b * BUCKET_IDS, (b + 1) * BUCKET_IDS) for b in buckets])


class Fingerprinter:
    """Compares one single-key table between Kimai (MariaDB) and the replica (PostgreSQL)."""

    def __init__(self, engine: sa.Engine, replica: Replica, layout: TableLayout) -> None:
        (self.key,) = layout.key
        self.engine = engine
        self.replica = replica
        self.layout = layout
        self.stats = FingerprintStats()
        present = set(replica.table_columns(layout.spec.replica_table))
        self._kimai_hash = mysql_row_hash(layout)
        self._replica_hash = pg_row_hash(layout, present)
        self._kimai_table = quote_mysql(layout.kimai_name)
        self.differing_buckets: list[int] = []
        self._replica_table = replica.qualified(layout.spec.replica_table)

    # -- Kimai side: short READ ONLY transactions ------------------------------------------

    def _kimai_query(self, purpose: Purpose, sql: str) -> list[tuple]:
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute("START TRANSACTION READ ONLY")
            cur.execute(tagged(purpose, self.layout.kimai_name, sql))
            rows = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        self.stats.kimai_rows_returned += len(rows)
        self.stats.kimai_bytes_returned += sum(8 * len(r) for r in rows)
        return [tuple(r) for r in rows]

    def _replica_query(self, sql: str) -> list[tuple]:
        # a connection per query (ADBC), so that several ranges run at once
        table = self.replica.read_arrow(sql)
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True))

    def _kimai_buckets(self, lo: int, hi: int) -> dict[int, tuple[int, int]]:
        k = quote_mysql(self.key)
        rows = self._kimai_query(
            "fingerprint range aggregates",
            f"SELECT {k} DIV {BUCKET_IDS}, COUNT(*), SUM({self._kimai_hash})"
            f" FROM {self._kimai_table} WHERE {k} >= {lo} AND {k} < {hi}"
            f" GROUP BY {k} DIV {BUCKET_IDS}",
        )
        return {int(b): (int(n), int(s)) for b, n, s in rows}

    def _replica_buckets(self, lo: int, hi: int) -> dict[int, tuple[int, int]]:
        k = quote_ansi(self.key)
        rows = self._replica_query(
            f"SELECT {k} / {BUCKET_IDS}, count(*), sum({self._replica_hash})"
            f" FROM {self._replica_table} WHERE {k} >= {lo} AND {k} < {hi}"
            f" GROUP BY {k} / {BUCKET_IDS}"
        )
        return {int(b): (int(n), int(s)) for b, n, s in rows}

    def _kimai_row_hashes(self, buckets: Sequence[int]) -> dict[int, int]:
        k = quote_mysql(self.key)
        out: dict[int, int] = {}
        for i in range(0, len(buckets), RANGES_PER_QUERY):
            part = buckets[i : i + RANGES_PER_QUERY]
            rows = self._kimai_query(
                "fingerprint row hashes",
                f"SELECT {k}, {self._kimai_hash} FROM {self._kimai_table}"
                f" WHERE {_ranges_sql(k, part)}",
            )
            out.update((int(a), int(b)) for a, b in rows)
        return out

    def _replica_row_hashes(self, buckets: Sequence[int]) -> dict[int, int]:
        k = quote_ansi(self.key)
        out: dict[int, int] = {}
        for i in range(0, len(buckets), RANGES_PER_QUERY):
            part = buckets[i : i + RANGES_PER_QUERY]
            rows = self._replica_query(
                f"SELECT {k}, {self._replica_hash} FROM {self._replica_table}"
                f" WHERE {_ranges_sql(k, part)}"
            )
            out.update((int(a), int(b)) for a, b in rows)
        return out

    # -- comparison ----------------------------------------------------------------------------

    def recheck(self) -> pa.Array:
        """Keys whose hashes still differ in the buckets that differed (after a repair)."""
        if not self.differing_buckets:
            return pa.array([], pa.int64())
        kh = self._kimai_row_hashes(self.differing_buckets)
        rh = self._replica_row_hashes(self.differing_buckets)
        return pa.array(sorted(k for k in set(kh) | set(rh) if kh.get(k) != rh.get(k)), pa.int64())

    def _bounds(self) -> tuple[int, int] | None:
        k, r = quote_mysql(self.key), quote_ansi(self.key)
        kimai = self._kimai_query(
            "fingerprint bounds", f"SELECT MIN({k}), MAX({k}) FROM {self._kimai_table}"
        )[0]
        replica = self.replica.query(f"SELECT min({r}), max({r}) FROM {self._replica_table}")[0]
        lows = [int(v) for v in (kimai[0], replica[0]) if v is not None]
        highs = [int(v) for v in (kimai[1], replica[1]) if v is not None]
        return (min(lows), max(highs)) if lows else None

    def compare(self) -> Comparison:
        """Compare the whole table: counts per side and the keys that differ.

        Returns:
            Row counts of both sides (from the bucket counts) and the differing keys, split
            into keys on one side only and keys whose rows differ.

        """
        result = Comparison()
        bounds = self._bounds()
        if bounds is None:
            return result
        lo = bounds[0] // BUCKET_IDS * BUCKET_IDS
        hi = bounds[1] + 1
        ranges = [(s, min(s + RANGE_IDS, hi)) for s in range(lo, hi, RANGE_IDS)]
        differing: list[int] = []
        # several ranges in flight on each server: each query is a short range scan
        with ThreadPoolExecutor(max_workers=FINGERPRINT_WORKERS) as pool:
            pending = [
                (pool.submit(self._kimai_buckets, a, b), pool.submit(self._replica_buckets, a, b))
                for a, b in ranges
            ]
            for fk, fr in pending:
                kb, rb = fk.result(), fr.result()
                result.kimai_count += sum(n for n, _ in kb.values())
                result.replica_count += sum(n for n, _ in rb.values())
                self.stats.buckets += len(set(kb) | set(rb))
                differing.extend(b for b in set(kb) | set(rb) if kb.get(b) != rb.get(b))
        buckets = sorted(set(differing))
        self.differing_buckets = buckets
        self.stats.buckets_differing = len(buckets)
        if not buckets:
            return result
        with ThreadPoolExecutor(max_workers=2) as pool:
            fk = pool.submit(self._kimai_row_hashes, buckets)
            fr = pool.submit(self._replica_row_hashes, buckets)
            kh, rh = fk.result(), fr.result()
        keys = sorted(k for k in set(kh) | set(rh) if kh.get(k) != rh.get(k))
        self.stats.keys_differing = len(keys)
        result.differing = pa.array(keys, pa.int64())
        result.only_kimai = pa.array(sorted(set(kh) - set(rh)), pa.int64())
        result.only_replica = pa.array(sorted(set(rh) - set(kh)), pa.int64())
        return result
