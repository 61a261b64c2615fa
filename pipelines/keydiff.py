"""Exact comparison of a table's key sets in Kimai and in the replica, streamed by key range.

Deletes and cascades leave no trace in Kimai except a missing key, so every run compares
the whole key sets. They are read keys only, in ranges of the (first) key column, from
both servers at the same time; each range is compared and dropped before the next one is
read, so memory stays flat whatever the table size. Equal ranges (the usual case) are
recognised by comparing the sorted arrays; only ranges that differ are diffed as sets.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.diff import keys_not_in, packed_keys
from pipelines.kimai import Kimai
from pipelines.layout import TableLayout
from pipelines.replica import Replica

TARGET_KEYS = 250_000
"""Keys per range the sweep aims for (the range width adapts to the key density)."""

MIN_WIDTH, MAX_WIDTH = 1 << 10, 1 << 30


@dataclass
class KeyDiff:
    """Counts on both sides and the keys present on one side only (packed int64)."""

    kimai_count: int = 0
    replica_count: int = 0
    deleted_parts: list[pa.Array] = field(default_factory=list)
    missing_parts: list[pa.Array] = field(default_factory=list)

    @property
    def deleted(self) -> pa.Array:
        """Keys the replica has and Kimai no longer has."""
        return pa.concat_arrays([pa.array([], pa.int64()), *self.deleted_parts])

    @property
    def missing(self) -> pa.Array:
        """Keys Kimai has and the replica lacks."""
        return pa.concat_arrays([pa.array([], pa.int64()), *self.missing_parts])


def _sorted(keys: pa.Array) -> pa.Array:
    return pc.take(keys, pc.sort_indices(keys))


def compare_key_sets(kimai: Kimai, replica: Replica, layout: TableLayout) -> KeyDiff:
    """Compare every key of the table on both sides, one key range at a time."""
    diff = KeyDiff()
    bounds = [b for b in (kimai.key_bounds(layout), replica.key_bounds(layout)) if b]
    if not bounds:
        return diff
    low = min(b[0] for b in bounds)
    high = max(b[1] for b in bounds) + 1
    start, width = low, TARGET_KEYS
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="keys") as pool:
        while start < high:
            end = min(start + width, high)
            k = pool.submit(kimai.read_key_range, layout, start, end)
            r = pool.submit(replica.read_key_range, layout, start, end)
            kimai_keys = _sorted(packed_keys(k.result(), layout.key))
            replica_keys = _sorted(packed_keys(r.result(), layout.key))
            diff.kimai_count += len(kimai_keys)
            diff.replica_count += len(replica_keys)
            same = len(kimai_keys) == len(replica_keys) and (
                len(kimai_keys) == 0 or pc.all(pc.equal(kimai_keys, replica_keys)).as_py()
            )
            if not same:
                diff.deleted_parts.append(keys_not_in(replica_keys, kimai_keys))
                diff.missing_parts.append(keys_not_in(kimai_keys, replica_keys))
            rows = max(len(kimai_keys), len(replica_keys), 1)
            width = min(MAX_WIDTH, max(MIN_WIDTH, int(width * TARGET_KEYS / rows)))
            start = end
    return diff
