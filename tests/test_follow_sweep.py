"""The follower's sweep: its slices cover every key once per cycle; its cycle's deletes add up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.adapters.binlog import BinlogPosition
from pipelines.follow import sweep_slices
from pipelines.record.follower import Position
from pipelines.types import Sweep

pytestmark = pytest.mark.unit


@given(
    low_bucket=st.integers(0, 50),
    size=st.integers(1, 5000),
    slices=st.integers(1, 12),
    bucket=st.sampled_from([1, 4, 64]),
)
def test_a_cycle_compares_every_key_and_each_tick_the_keys_above_the_replica(
    low_bucket: int, size: int, slices: int, bucket: int
) -> None:
    low = low_bucket * bucket
    high = low + size
    replica_high = low + size // 2
    seen: list[int] = []
    for index in range(slices):
        spans = Sweep(index, slices).spans(low, high, replica_high, bucket)
        keys = [k for a, b in spans for k in range(a, b)]
        assert keys == sorted(set(keys)), "spans overlap or are out of order"
        assert all(a % bucket == 0 for a, _ in spans), "a span splits a bucket"
        # the keys above the replica's highest, on every tick
        assert set(range(replica_high + 1, high)) <= set(keys)
        seen += keys
    assert set(seen) == set(range(low, high))


def test_slices_leave_one_interval_for_the_tick_itself() -> None:
    assert sweep_slices(30, 300) == 9  # 9 ticks of 30 s: every range within 270 s + a tick
    assert sweep_slices(0.5, 2.5) == 4
    assert sweep_slices(30, 30) == 1 and sweep_slices(60, 30) == 1


def test_a_cycle_adds_up_its_deletes_and_the_next_starts_from_nothing() -> None:
    p = Position(0, 3)
    p = p.advanced({"timesheets": 5, "tags": 0}, 3)
    assert p == Position(1, 3, {"timesheets": 5})
    p = p.advanced({"timesheets": 2, "tags": 1}, 3)
    assert p == Position(2, 3, {"timesheets": 7, "tags": 1})
    assert p.advanced({"timesheets": 9}, 3) == Position(0, 3)
    assert p.advanced({}, 4) == Position(0, 4)  # other settings: a new cycle
    assert Position.from_json(p.to_json()) == p
    assert Position.from_json("not json") == Position()
    assert Sweep(2, 3, tuple(p.cycle_deleted.items())).deleted_earlier("timesheets") == 7


def test_the_binlog_position_is_kept_with_the_heartbeat() -> None:
    p = Position(0, 1, {}, BinlogPosition("binlog.000042", 1234))
    assert Position.from_json(p.to_json()) == p
    assert Position.from_json(Position().to_json()).binlog is None
    # a stored position in a shape this version cannot read: none (a resync), not a crash
    assert Position.from_json('{"slice": 0, "slices": 1, "binlog": {"file": 1}}').binlog is None
