"""The types the stages of a run hand each other: what was asked, and what each table did."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sweep:
    """The part of each keyed table's key range one follower tick compares (`pipelines.follow`).

    Slice `index` of `slices` equal parts of the key values, from the lowest to the highest
    on either side, and every key above the replica's highest: rows Kimai added since the
    last tick are found on every tick, whatever their ``modified_at`` says.
    """

    index: int
    slices: int
    deleted_before: tuple[tuple[str, int], ...] = ()
    """Rows each table lost earlier in this sweep cycle (the mass-delete guard adds them)."""
    count: int = 1
    """Slices compared at once, from `index` on, on into the next cycle's first slices past
    the last (a tick that started late catches up)."""

    def deleted_earlier(self, table: str) -> int:
        """Rows `table` lost earlier in this cycle."""
        return dict(self.deleted_before).get(table, 0)

    def spans(
        self, low: int, high: int, replica_high: int | None, bucket: int
    ) -> list[tuple[int, int]]:
        """The half-open key ranges to compare, in order, on `bucket` boundaries.

        Args:
            low: The lowest key on either side, on a bucket boundary.
            high: One past the highest key on either side.
            replica_high: The replica's highest key (None: no rows).
            bucket: The digest bucket width: no range splits a bucket.

        """
        width = -(-(high - low) // (self.slices * bucket)) * bucket

        def part(first: int, count: int) -> tuple[int, int]:
            start = low + first * width
            end = high if first + count >= self.slices else min(high, start + count * width)
            return (start, end)

        count = min(self.count, self.slices)
        parts = [part(self.index, min(count, self.slices - self.index))]
        if self.index + count > self.slices:  # on into the next cycle's first slices
            parts.append(part(0, self.index + count - self.slices))
        tail = low if replica_high is None else max(low, (replica_high + 1) // bucket * bucket)
        parts.append((tail, high))
        spans: list[tuple[int, int]] = []
        for start, end in sorted(p for p in parts if p[0] < p[1]):
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return spans


@dataclass(frozen=True)
class Scope:
    """The rows of one table a binlog tick compares (`pipelines.sync.scope`).

    Those whose column holds one of its values, for any of the `filters`, on both sides:
    the keys Kimai's binlog named, and the rows a logged delete cascaded to.
    """

    filters: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        """How many values the filters hold."""
        return sum(len(values) for _column, values in self.filters)


@dataclass
class FingerprintStats:
    """What comparing whole rows by range digests cost (`pipelines.sync.rangediff`)."""

    kimai_rows_returned: int = 0
    buckets_differing: int = 0
    keys_differing: int = 0


@dataclass
class SyncOptions:
    """What the caller asked for."""

    full_refresh: bool = False
    since: dt.date | None = None
    overlap_seconds: int = 300
    reconcile: bool = False
    """Also compare every column of every row (fingerprints), not only the cursor window."""
    sweep: Sweep | None = None
    """Compare only this part of each keyed table's key range (a follower tick)."""
    scopes: dict[str, Scope] | None = None
    """Compare only these rows of these tables (a binlog tick); the run's other tables are
    compared whole."""


@dataclass(frozen=True)
class ChangeCounts:
    """What the change stage read and wrote of one table (`pipelines.sync.changes`).

    For a table rewritten by the streaming COPY, what that load read and wrote
    (`pipelines.sync.load`); for a dry run, what the run would write.
    """

    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    seconds: float = 0.0
    kimai_rows: int | None = None
    """Kimai's row count where the plan did not count it (first loads: no key sweep)."""


@dataclass(frozen=True)
class BulkWrite:
    """What the streaming COPY wrote of one whole table (`pipelines.sync.load`)."""

    counts: ChangeCounts
    cursor: dt.datetime | None
    """The newest cursor value it wrote (None: no cursor column, or no row)."""


@dataclass(frozen=True)
class LoadResult:
    """What the load stage leaves of one table (`pipelines.sync`).

    Its change counts as written, and what a reconciling load found after it.
    """

    table: str
    counts: ChangeCounts
    unrepaired: int | None = None
    """Rows of the reconciled ranges that still differ after the load (reconciling runs)."""


@dataclass(frozen=True)
class TableStats:
    """Counts for one table in one run, assembled from the stages' results (`of`)."""

    table: str
    kimai_rows: int = 0
    replica_rows_before: int = 0
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    seconds: float = 0.0
    kimai_bytes_read: int = 0
    orphans: int = 0
    """Rows re-read from Kimai because their reference would have dangled."""
    fingerprint: FingerprintStats | None = None
    """What comparing range fingerprints cost (reconciling runs on MariaDB → PostgreSQL)."""
    unrepaired: int | None = None
    """Rows of the reconciled ranges that still differ after the load (reconciling runs)."""

    @classmethod
    def of(
        cls,
        loaded: LoadResult,
        *,
        kimai_rows: int,
        replica_rows_before: int,
        orphans: int,
        fingerprint: FingerprintStats | None = None,
        kimai_bytes_read: int = 0,
    ) -> TableStats:
        """One table's figures, assembled once the run's stages are done.

        From what its load left, what its plan counted (Kimai's and the replica's rows,
        orphans re-read) and what the run measured around them.
        """
        changes = loaded.counts
        return cls(
            loaded.table,
            kimai_rows=kimai_rows if changes.kimai_rows is None else changes.kimai_rows,
            replica_rows_before=replica_rows_before,
            rows_read=changes.rows_read,
            inserted=changes.inserted,
            updated=changes.updated,
            deleted=changes.deleted,
            cursor_before=changes.cursor_before,
            cursor_after=changes.cursor_after,
            seconds=changes.seconds,
            kimai_bytes_read=kimai_bytes_read,
            orphans=orphans,
            fingerprint=fingerprint,
            unrepaired=loaded.unrepaired,
        )

    @property
    def written(self) -> int:
        """Rows inserted, updated or deleted."""
        return self.inserted + self.updated + self.deleted

    @property
    def replica_rows_after(self) -> int:
        """Replica row count once this run's load committed."""
        return self.replica_rows_before + self.inserted - self.deleted


@dataclass
class SyncResult:
    """Outcome of a sync run."""

    tables: list[TableStats] = field(default_factory=list)
    seconds: float = 0.0
    resumed_pending: bool = False
    """A load left by an interrupted run was completed first (a dry run: is pending)."""
    dry_run: bool = False
    guard_refusal: str | None = None
    """A dry run only: why a real run would stop at the mass-delete guard."""
