import datetime as dt

import pyarrow as pa
import pytest

from pipelines.diff import changed_rows, keys_not_in, packed_keys, unpack_keys

pytestmark = pytest.mark.unit

UTC = dt.UTC


def _t(rows):
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "amount": pa.array([r[1] for r in rows], pa.float64()),
            "text": pa.array([r[2] for r in rows], pa.string()),
            "at": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )


def test_changed_rows_sees_every_kind_of_difference_and_nothing_else():
    t0 = dt.datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    old = _t(
        [
            (1, 1.5, "same", t0),
            (2, None, None, None),
            (3, 0.1 + 0.2, "x", t0),
            (4, 1.0, None, t0),
            (5, 1.0, "a", t0),
            (6, 2.0, "gone from new", t0),
        ]
    )
    new = _t(
        [
            (1, 1.5, "same", t0),  # unchanged
            (2, None, None, None),  # unchanged, all NULL
            (3, 0.3, "x", t0),  # 0.30000000000000004 vs 0.3: different doubles
            (4, 1.0, "", t0),  # NULL -> ''
            (5, 1.0, "a", t0 + dt.timedelta(microseconds=1)),
            (7, 3.0, "new", None),  # not in old
        ]
    )
    out = changed_rows(new, old, ["id"])
    assert out.column("id").to_pylist() == [3, 4, 5, 7]
    assert out.schema == new.schema


def test_changed_rows_against_empty_replica_returns_everything():
    new = _t([(1, 1.0, "a", None)])
    assert changed_rows(new, new.schema.empty_table(), ["id"]).num_rows == 1


def test_pair_keys_pack_and_unpack_exactly():
    keys = pa.table({"timesheet_id": [1, 2_147_483_647, 5], "tag_id": [2_147_483_647, 1, 0]})
    packed = packed_keys(keys, ["timesheet_id", "tag_id"])
    assert len(set(packed.to_pylist())) == 3
    assert unpack_keys(packed, ["timesheet_id", "tag_id"]).to_pylist() == keys.to_pylist()


def test_keys_not_in_is_a_sorted_set_difference():
    assert keys_not_in(pa.array([9, 3, 5, 1]), pa.array([5, 7])).to_pylist() == [1, 3, 9]
    assert keys_not_in(pa.array([], pa.int64()), pa.array([1])).to_pylist() == []
