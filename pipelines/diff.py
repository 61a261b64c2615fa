"""Exact comparison of Kimai rows and replica rows, in Arrow.

Keys are compared as int64 arrays (a two-column key is packed into one int64: Kimai ids
are 32-bit), rows by joining on the key and comparing every replicated column with
NULL-safe equality. Values compare exactly: both sides were cast to the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

_ROW = "__row"
_OLD = "__old"


def packed_keys(keys: pa.Table, key: Sequence[str]) -> pa.Array:
    """One int64 per row identifying its key (pairs of 32-bit ids packed into 64 bits)."""
    if len(key) == 1:
        return pc.cast(keys.column(key[0]), pa.int64()).combine_chunks()
    if len(key) != 2:
        raise ValueError("keys of more than two columns are not supported")
    high = pc.cast(keys.column(key[0]), pa.int64())
    low = pc.cast(keys.column(key[1]), pa.int64())
    return pc.add(pc.shift_left(high, 32), low).combine_chunks()


def unpack_keys(packed: pa.Array, key: Sequence[str]) -> pa.Table:
    """Inverse of `packed_keys`."""
    if len(key) == 1:
        return pa.table({key[0]: packed})
    high = pc.shift_right(packed, 32)
    low = pc.bit_wise_and(packed, pa.scalar(0xFFFFFFFF, pa.int64()))
    return pa.table({key[0]: high, key[1]: low})


def keys_not_in(left: pa.Array, right: pa.Array) -> pa.Array:
    """Keys of `left` that `right` lacks, sorted."""
    if len(left) == 0:
        return left
    kept = pc.filter(left, pc.invert(pc.is_in(left, value_set=right)))
    return pc.take(kept, pc.sort_indices(kept))


def same_key_sets(left: pa.Array, right: pa.Array) -> bool:
    """Whether two arrays of unique keys hold the same set (sorting beats hashing here)."""
    if len(left) != len(right):
        return False
    if len(left) == 0:
        return True
    a = pc.take(left, pc.sort_indices(left))
    b = pc.take(right, pc.sort_indices(right))
    return bool(pc.all(pc.equal(a, b)).as_py())


def changed_rows(new: pa.Table, old: pa.Table, key: Sequence[str]) -> pa.Table:
    """Rows of `new` that `old` lacks or holds with different values.

    Args:
        new: Rows as Kimai has them (the layout's data schema).
        old: Rows as the replica has them (same schema); may hold other keys too.
        key: Key column names.

    Returns:
        The subset of `new` to write, in `new`'s column order.

    """
    if new.num_rows == 0 or old.num_rows == 0:
        return new
    values = [n for n in new.column_names if n not in key]
    indexed = new.append_column(_ROW, pa.array(range(new.num_rows), pa.int64()))
    renamed = old.select(list(key) + values).rename_columns(list(key) + [v + _OLD for v in values])
    renamed = renamed.append_column(_OLD, pa.array([True] * renamed.num_rows))
    joined = indexed.select(list(key) + values + [_ROW]).join(
        renamed, keys=list(key), join_type="left outer", use_threads=True
    )
    differs = pc.is_null(joined.column(_OLD))
    for name in values:
        a, b = joined.column(name), joined.column(name + _OLD)
        same = pc.or_kleene(
            pc.and_kleene(pc.is_null(a), pc.is_null(b)),
            pc.fill_null(pc.equal(a, b), False),
        )
        differs = pc.or_(differs, pc.invert(same))
    rows = pc.filter(joined.column(_ROW), differs)
    return new.take(pc.take(rows, pc.sort_indices(rows)))
