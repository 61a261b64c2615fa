"""One range-digest comparer of a table in Kimai and in the replica: key sets and whole rows.

Deletes and cascades leave no trace in Kimai except a missing key, and plugins change rows
without bumping ``modified_at``, so the sync compares what both sides hold. It does so by
ranges of the (first) key column, one range at a time, so memory stays flat whatever the
table size:

1. **Digests** (where both servers compute them: MariaDB/MySQL and PostgreSQL): each server
   sums, per bucket of key values, the row count and a per-row hash. Buckets whose sums
   agree (the usual case) are done; nothing else of them crosses the network.
2. **Rows**: for the buckets that differ (or the whole range when there are many, or when
   digests are off), each server returns the packed key of every row and, when whole rows
   are compared, its row hash. Keys on one side only, and keys whose hashes differ, are the
   result.

What a "row hash" is makes the two uses:

- ``keys``: two 32-bit multiplicative hashes of the key (plain integer arithmetic, identical
  on both servers). A bucket that lost one key and gained another looks equal only if both
  hash sums collide as well (about 2^-64). Rows are read as keys only.
- ``rows`` (reconcile): a 60-bit MD5 of a canonical text of every replicated column. The
  text is built so that MariaDB and PostgreSQL produce the same bytes for the same value:
  integers and text as they are, booleans as 0/1, instants as UTC ``YYYY-MM-DD HH:MM:SS``,
  NULL as a marker distinct from '', each value length-prefixed. Doubles print as their
  shortest round-trip digits on both servers; they differ only in exponent notation below
  1e-4, which makes such a row look different: it is then compared exactly in Arrow before
  anything is written, so that costs a read and nothing else.

Sums are taken modulo 2^60 so both servers return them as 64-bit integers. Each Kimai
read is one short autocommit range scan of the primary key: no long snapshot or lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.layout import (
    ReplicaColumn,
    TableLayout,
    quote_ansi,
    quote_mysql,
    ranges_sql,
)
from pipelines.adapters.replica import PostgresReplica, Replica
from pipelines.diff import keys_not_in, packed_keys
from pipelines.record.changelog import LOG_TABLE
from pipelines.sync import keydigests
from pipelines.types import FingerprintStats, Sweep

Mode = Literal["keys", "rows"]

TARGET_KEYS = 250_000
"""Keys per range the sweep aims for (the range width adapts to the key density)."""

MIN_WIDTH, MAX_WIDTH = 1 << 10, 1 << 30

BUCKET = {"keys": 256, "rows": 64}
"""First-key values per digest bucket: a differing bucket costs at most this many rows read.

Rows use smaller buckets: a changed row is the usual reason a bucket differs there, and
reconcile exists to find a few such rows in millions.
"""

SPLIT = 2
"""Digest queries per server per range, run at once (each a shorter primary-key scan)."""

MAX_BUCKET_READS = 16
"""Key sets: differing buckets of one range read in one query (ORed ranges); more read the
range's keys whole (an index-only scan, cheaper than many intervals).

Kept small: each ORed interval is planned and probed separately. Measured at 1M after 10k
random updates and 1k random deletes: 16 cost MariaDB 1.8 CPU-s against 2.4 s with 512, for
~0.3 s more wall time.
"""

RANGES_PER_QUERY = 200
"""Rows: differing buckets per row-hash query. Never the whole range: hashing every row
again would double what reconcile costs Kimai."""

_KEY_HASHES = ((2654435761, 2246822519), (3266489917, 668265263))
"""Odd multipliers per hash, one per key column (Kimai ids are below 2^31: no overflow)."""

_SUM_MODULUS = 1 << 60


def _empty() -> pa.Array:
    return pa.array([], pa.int64())


@dataclass
class Comparison:
    """Counts on both sides and the keys that differ (packed int64, sorted)."""

    kimai_count: int = 0
    replica_count: int = 0
    deleted: pa.Array = field(default_factory=_empty)
    """Keys the replica has and Kimai no longer has."""
    missing: pa.Array = field(default_factory=_empty)
    """Keys Kimai has and the replica lacks."""
    changed: pa.Array = field(default_factory=_empty)
    """Keys on both sides whose row hashes differ (``rows`` mode only)."""

    @property
    def differing(self) -> pa.Array:
        """Every key whose row differs or exists on one side only."""
        keys = pa.concat_arrays([self.deleted, self.missing, self.changed])
        return pc.take(keys, pc.sort_indices(keys))


@dataclass(frozen=True)
class Dialect:
    """How one server spells what the comparison needs."""

    quote: Callable[[str], str]
    integer: str
    """64-bit integer type for CAST."""
    text: Callable[[ReplicaColumn], str]
    """A column's canonical text (length-prefixed; NULL as ``N``)."""
    concat: Callable[[Sequence[str]], str]
    """Text concatenation."""
    hash60: Callable[[str], str]
    """A text's 60-bit MD5 prefix as a 64-bit integer."""

    def key_hashes(self, key: Sequence[str]) -> list[str]:
        """The two multiplicative hashes of a row's key."""
        cols = [self.quote(k) for k in key]
        return [
            "("
            + " + ".join(f"({c} * {m}) % 4294967296" for c, m in zip(cols, mult, strict=False))
            + ") % 4294967296"
            for mult in _KEY_HASHES
        ]

    def row_hash(self, columns: Sequence[ReplicaColumn], present: Callable[[str], bool]) -> str:
        """The 60-bit hash of every replicated column (columns not `present` hash as NULL)."""
        parts = [self.text(c) if present(c.name) else "'N'" for c in columns]
        return self.hash60(self.concat(parts))


def _mysql_text(col: ReplicaColumn) -> str:
    # the value as replicated, data rules applied: a row read under a rule hashes equal
    q = col.value_sql
    if col.data_type == "bool":
        value = f"IF({q} <> 0, '1', '0')"
    elif col.data_type == "timestamp":
        value = f"DATE_FORMAT({q}, '%Y-%m-%d %H:%i:%s')"
    elif col.data_type == "date":
        value = f"DATE_FORMAT({q}, '%Y-%m-%d')"
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


MARIADB = Dialect(
    quote=quote_mysql,
    integer="SIGNED",
    text=_mysql_text,
    concat=lambda parts: "CONCAT(" + ", ".join(parts) + ")",
    hash60=lambda text: f"CAST(CONV(LEFT(MD5({text}), 15), 16, 10) AS SIGNED)",
)
POSTGRES = Dialect(
    quote=quote_ansi,
    integer="BIGINT",
    text=_pg_text,
    concat=" || ".join,
    hash60=lambda text: f"('x' || lpad(left(md5({text}), 15), 16, '0'))::bit(64)::bigint",
)


@dataclass(frozen=True)
class Side:
    """One server's copy of the table: its dialect, its table name and how it reads."""

    dialect: Dialect
    table: str
    """The quoted (qualified) table name."""
    columns: Callable[[str], bool]
    """Whether a replicated column exists on this side (a Kimai upgrade may add one)."""
    read: Callable[[str, str], pa.Table]
    """Runs ``(purpose, sql)`` and returns Arrow."""


def digest_sql(side: Side, layout: TableLayout, mode: Mode) -> str:
    """Per bucket of the first key column: bucket start, row count and the hash sums.

    Returns:
        SQL with the placeholders ``{low}`` and ``{high}`` (range of the first key column).

    """
    d = side.dialect
    first = d.quote(layout.key[0])
    hashes = d.key_hashes(layout.key) if mode == "keys" else [_row_hash(side, layout)]
    sums = [f"CAST(SUM({h}) % {_SUM_MODULUS} AS {d.integer}) AS h{i}" for i, h in enumerate(hashes)]
    return (
        f"SELECT CAST({first} - {first} % {BUCKET[mode]} AS {d.integer}) AS bucket,"
        f" CAST(COUNT(*) AS {d.integer}) AS n, {', '.join(sums)}"
        f" FROM {side.table} WHERE {first} >= {{low}} AND {first} < {{high}} GROUP BY 1"
    )


def rows_sql(side: Side, layout: TableLayout, mode: Mode, ranges: Sequence[tuple[int, int]]) -> str:
    """The key columns (and, for ``rows``, the row hash ``h``) of the rows in `ranges`."""
    d = side.dialect
    cols = [d.quote(k) for k in layout.key]
    if mode == "rows":
        cols.append(f"{_row_hash(side, layout)} AS h")
    where = ranges_sql(d.quote(layout.key[0]), ranges)
    return f"SELECT {', '.join(cols)} FROM {side.table} WHERE {where}"


def _row_hash(side: Side, layout: TableLayout) -> str:
    return side.dialect.row_hash(layout.columns, side.columns)


def differing_buckets(
    theirs: pa.Table, ours: pa.Table, low: int, high: int, bucket: int
) -> list[tuple[int, int]]:
    """The key ranges (clipped to ``[low, high)``) of the buckets whose digests differ."""

    def by_bucket(t: pa.Table) -> dict[int, tuple[int, ...]]:
        rows = zip(*(c.to_pylist() for c in t.columns), strict=True)
        return {int(r[0]): tuple(int(v) for v in r[1:]) for r in rows}

    a, b = by_bucket(theirs), by_bucket(ours)
    starts = sorted(s for s in a.keys() | b.keys() if a.get(s) != b.get(s))
    return [(max(s, low), min(s + bucket, high)) for s in starts]


def key_digests(keyed: pa.Table, key_columns: int) -> pa.Table:
    """`digest_sql`'s ``keys`` digests of packed keys, computed in Arrow.

    Args:
        keyed: Packed keys (column ``k``, as `_keyed` returns them).
        key_columns: How many columns the key has (one or two).

    Returns:
        Columns bucket, n, h0, h1, as the servers return them.

    """
    packed = keyed.column("k").combine_chunks()
    first = _first_keys(packed, key_columns)
    columns = [first]
    if key_columns > 1:
        columns.append(pc.bit_wise_and(packed, 0xFFFFFFFF))
    low32 = 0xFFFFFFFF
    hashes = {}
    for i, mult in enumerate(_KEY_HASHES):
        # each product stays below 2^63: Kimai ids are below 2^31, multipliers below 2^32
        parts = [
            pc.bit_wise_and(pc.multiply(c, m), low32) for c, m in zip(columns, mult, strict=False)
        ]
        total = parts[0] if len(parts) == 1 else pc.add(parts[0], parts[1])
        hashes[f"h{i}"] = pc.bit_wise_and(total, low32)
    grouped = (
        pa.table({"bucket": _bucket_starts(first), **hashes})
        .group_by("bucket")
        .aggregate([("h0", "count"), ("h0", "sum"), ("h1", "sum")])
    )
    # a bucket's sums stay below 2^40 (256 hashes below 2^32): no modulus needed
    return pa.table(
        {
            "bucket": grouped.column("bucket"),
            "n": grouped.column("h0_count"),
            "h0": grouped.column("h0_sum"),
            "h1": grouped.column("h1_sum"),
        }
    )


def _first_keys(packed: pa.Array, key_columns: int) -> pa.Array:
    """The first key column's values of packed keys."""
    return pc.shift_right(packed, 32) if key_columns > 1 else packed


def _bucket_starts(values: pa.Array) -> pa.Array:
    """The start of each (first-key) value's ``keys`` bucket."""
    return pc.subtract(values, pc.bit_wise_and(values, BUCKET["keys"] - 1))


def _within(values: pa.Array, ranges: Sequence[tuple[int, int]]) -> pa.Array:
    """Whether each value lies in one of the half-open `ranges`."""
    masks = [pc.and_(pc.greater_equal(values, a), pc.less(values, b)) for a, b in ranges]
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_(mask, other)
    return mask


def _counts(digests: pa.Table) -> int:
    return int(pc.sum(digests.column("n")).as_py() or 0)


def _keyed(table: pa.Table, layout: TableLayout, mode: Mode) -> pa.Table:
    out = {"k": packed_keys(table, layout.key)}
    if mode == "rows":
        out["h"] = pc.cast(table.column("h"), pa.int64()).combine_chunks()
    return pa.table(out)


@dataclass
class _Found:
    deleted: list[pa.Array] = field(default_factory=list)
    missing: list[pa.Array] = field(default_factory=list)
    changed: list[pa.Array] = field(default_factory=list)

    def add(self, kimai: pa.Table, replica: pa.Table) -> None:
        k, r = kimai.column("k").combine_chunks(), replica.column("k").combine_chunks()
        self.deleted.append(keys_not_in(r, k))
        self.missing.append(keys_not_in(k, r))
        if "h" in kimai.column_names and kimai.num_rows and replica.num_rows:
            both = kimai.join(replica, "k", join_type="inner", right_suffix="_r")
            changed = pc.filter(
                both.column("k"), pc.not_equal(both.column("h"), both.column("h_r"))
            )
            self.changed.append(changed.combine_chunks())

    @staticmethod
    def _sorted(parts: list[pa.Array]) -> pa.Array:
        keys = pa.concat_arrays([_empty(), *parts])
        return pc.take(keys, pc.sort_indices(keys))


class RangeComparer:
    """Compares one table between Kimai and the replica, by key sets or by whole rows.

    Args:
        kimai: Kimai reader.
        replica: Replica reader.
        layout: The table.
        mode: ``keys`` (key sets) or ``rows`` (every replicated column; reconcile).
        digests: Compare per-bucket digests first; both servers must compute them
            (MariaDB/MySQL and PostgreSQL). ``rows`` needs them.
        sweep: Compare only this part of the key range (``keys`` mode; a follower tick).
            The replica's digests then come from `keydigests` (kept from the change log),
            not from the table.

    """

    def __init__(
        self,
        kimai: Kimai,
        replica: Replica,
        layout: TableLayout,
        mode: Mode,
        digests: bool,
        sweep: Sweep | None = None,
    ) -> None:
        if mode == "rows" and not digests:
            raise ValueError("comparing whole rows needs server-side digests")
        self.kimai, self.replica, self.layout, self.mode = kimai, replica, layout, mode
        self.sweep = sweep if mode == "keys" else None
        self.digests = digests and replica.exists(layout.spec.replica_table)
        self.stats = FingerprintStats()
        self.differing_ranges: list[tuple[int, int]] = []
        """Key ranges of the buckets that differed (``rows``: what `recheck` reads again)."""
        self.stored: keydigests.StoredDigests | None = None
        present = set(replica.table_columns(layout.spec.replica_table)) if self.digests else set()
        self.sides = (
            Side(MARIADB, layout.source_sql, lambda _c: True, self._read_kimai),
            Side(
                POSTGRES,
                replica.qualified(layout.spec.replica_table),
                present.__contains__,
                lambda _purpose, sql: replica.read_arrow(sql),
            ),
        )

    def _read_kimai(self, purpose: str, sql: str) -> pa.Table:
        table = self.kimai.read_query(self.layout, purpose, sql)  # type: ignore[arg-type]
        self.stats.kimai_rows_returned += table.num_rows
        return table

    def _both(
        self, pool: ThreadPoolExecutor, purpose: str, sql: Callable[[Side], list[str]]
    ) -> tuple[pa.Table, pa.Table]:
        futures: list[list[Future]] = [
            [pool.submit(side.read, purpose, q) for q in sql(side)] for side in self.sides
        ]
        kimai, replica = ([f.result() for f in fs] for fs in futures)
        return pa.concat_tables(kimai), pa.concat_tables(replica)

    def _rows(
        self, pool: ThreadPoolExecutor, ranges: Sequence[tuple[int, int]]
    ) -> tuple[pa.Table, pa.Table]:
        purpose = "row hashes" if self.mode == "rows" else "key ranges"
        if not self.digests:  # the replica table may not exist yet
            k = self.kimai.read_key_ranges(self.layout, ranges)
            r = self.replica.read_key_ranges(self.layout, ranges)
            self.stats.kimai_rows_returned += k.num_rows
            return _keyed(k, self.layout, "keys"), _keyed(r, self.layout, "keys")
        kimai, replica = self._both(
            pool, purpose, lambda side: [rows_sql(side, self.layout, self.mode, ranges)]
        )
        return _keyed(kimai, self.layout, self.mode), _keyed(replica, self.layout, self.mode)

    def _digests(self, pool: ThreadPoolExecutor, low: int, high: int) -> tuple[pa.Table, pa.Table]:
        bucket = BUCKET[self.mode]
        step = max(bucket, -(-(high - low) // SPLIT // bucket) * bucket)
        cuts = [*range(low, high, step), high]

        def queries(side: Side) -> list[str]:
            if self.stored is not None and side is self.sides[1]:
                return [self.stored.sql(low, high)]
            sql = digest_sql(side, self.layout, self.mode)
            return [sql.format(low=a, high=b) for a, b in zip(cuts, cuts[1:], strict=False)]

        return self._both(pool, "range digests", queries)

    def _reads(
        self, ranges: list[tuple[int, int]], start: int, end: int
    ) -> list[list[tuple[int, int]]]:
        if self.mode == "rows":
            return [
                ranges[i : i + RANGES_PER_QUERY] for i in range(0, len(ranges), RANGES_PER_QUERY)
            ]
        if len(ranges) > MAX_BUCKET_READS:
            return [[(start, end)]]
        return [ranges] if ranges else []

    def compare(self) -> Comparison:
        """Compare the whole table (or the sweep's part of it), one key range at a time.

        A sweep's counts are the whole table's all the same: the replica's is counted, and
        Kimai's is the replica's corrected by the keys that differ in the compared part.
        """
        result = Comparison()
        found = _Found()
        self.stored = self._stored_digests()
        replica_bounds = self.replica.key_bounds(self.layout)
        bounds = [b for b in (self.kimai.key_bounds(self.layout), replica_bounds) if b]
        if not bounds:
            return result
        bucket = BUCKET[self.mode]
        low = min(b[0] for b in bounds) // bucket * bucket
        high = max(b[1] for b in bounds) + 1
        spans = [(low, high)]
        if self.sweep is not None:
            replica_high = replica_bounds[1] if replica_bounds else None
            spans = self.sweep.spans(low, high, replica_high, bucket)
        width = TARGET_KEYS // bucket * bucket
        with ThreadPoolExecutor(max_workers=2 * SPLIT, thread_name_prefix="compare") as pool:
            for start, span_end in spans:
                width = self._compare_span(pool, start, span_end, width, result, found)
        result.deleted = _Found._sorted(found.deleted)
        result.missing = _Found._sorted(found.missing)
        result.changed = _Found._sorted(found.changed)
        self.stats.keys_differing = len(result.differing)
        if self.stored is not None:
            self._heal(result)
        if self.sweep is not None:
            result.replica_count = (
                self.stored.count
                if self.stored is not None
                else self.replica.count(self.layout.spec.replica_table)
            )
            result.kimai_count = result.replica_count - len(result.deleted) + len(result.missing)
        return result

    def _stored_digests(self) -> keydigests.StoredDigests | None:
        """The replica's stored digests, for a sweep over a replica with a change log."""
        replica = self.replica
        if self.sweep is None or not isinstance(replica, PostgresReplica):
            return None
        if not (replica.exists(LOG_TABLE) and replica.exists(self.layout.spec.replica_table)):
            return None
        table_sql = digest_sql(self.sides[1], self.layout, "keys")
        return keydigests.refresh(replica, self.layout, BUCKET["keys"], table_sql)

    def _heal(self, result: Comparison) -> None:
        """Recompute the stored buckets that differed from Kimai's while their keys agree."""
        assert self.stored is not None and isinstance(self.replica, PostgresReplica)
        bucket = BUCKET["keys"]
        keys = _first_keys(pa.concat_arrays([result.deleted, result.missing]), len(self.layout.key))
        differing = set(_bucket_starts(keys).to_pylist())
        stale = [r for r in self.differing_ranges if r[0] - r[0] % bucket not in differing]
        keydigests.heal(self.replica, self.stored, stale)

    def _against_stored(
        self, pool: ThreadPoolExecutor, start: int, end: int, found: _Found
    ) -> tuple[int, int]:
        """Kimai's keys of ``[start, end)`` against the replica's stored digests.

        Kimai sends its keys as without digests; their digests are computed here, and only
        the buckets that differ from the stored ones are read from the replica table.

        Returns:
            The row counts of the range in Kimai and in the replica.

        """
        assert self.stored is not None
        stored = pool.submit(self.replica.read_arrow, self.stored.sql(start, end))
        kimai = _keyed(self.kimai.read_key_ranges(self.layout, [(start, end)]), self.layout, "keys")
        self.stats.kimai_rows_returned += kimai.num_rows
        ours = stored.result()
        bucket = BUCKET["keys"]
        theirs = key_digests(kimai, len(self.layout.key))
        ranges = differing_buckets(theirs, ours, start, end, bucket)
        self.stats.buckets_differing += len(ranges)
        self.differing_ranges.extend(ranges)
        firsts = _first_keys(kimai.column("k").combine_chunks(), len(self.layout.key))
        for part in self._reads(ranges, start, end):
            # both sides' keys of exactly the ranges read (Kimai's were all sent)
            replica = self.replica.read_key_ranges(self.layout, part)
            found.add(kimai.filter(_within(firsts, part)), _keyed(replica, self.layout, "keys"))
        return kimai.num_rows, _counts(ours)

    def _compare_span(
        self,
        pool: ThreadPoolExecutor,
        start: int,
        high: int,
        width: int,
        result: Comparison,
        found: _Found,
    ) -> int:
        """Compare the keys in [start, high), adding to `result` and `found`.

        Returns:
            The range width the next span starts with (adapted to the key density).

        """
        bucket = BUCKET[self.mode]
        while start < high:
            end = min(start + width, high)
            ranges = [(start, end)]
            counts: tuple[int, int] | None = None
            if self.stored is not None and not self.digests:
                counts = self._against_stored(pool, start, end, found)
                ranges = []
            elif self.digests:
                theirs, ours = self._digests(pool, start, end)
                counts = (_counts(theirs), _counts(ours))
                ranges = differing_buckets(theirs, ours, start, end, bucket)
                self.stats.buckets_differing += len(ranges)
                self.differing_ranges.extend(ranges)
            for part in self._reads(ranges, start, end):
                kimai_rows, replica_rows = self._rows(pool, part)
                counts = counts or (kimai_rows.num_rows, replica_rows.num_rows)
                found.add(kimai_rows, replica_rows)
            assert counts is not None
            result.kimai_count += counts[0]
            result.replica_count += counts[1]
            width = min(MAX_WIDTH, max(MIN_WIDTH, int(width * TARGET_KEYS / max(*counts, 1))))
            # ranges start on bucket boundaries: a bucket is never split between queries
            width = max(bucket, width // bucket * bucket)
            start = end
        return width

    def recheck(self) -> pa.Array:
        """Keys that still differ in the buckets that differed (after a repair)."""
        found = _Found()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="recheck") as pool:
            for i in range(0, len(self.differing_ranges), RANGES_PER_QUERY):
                found.add(*self._rows(pool, self.differing_ranges[i : i + RANGES_PER_QUERY]))
        keys = pa.concat_arrays([_empty(), *found.deleted, *found.missing, *found.changed])
        return pc.take(keys, pc.sort_indices(keys))
