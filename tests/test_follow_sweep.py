"""The follower's sweep: its slices cover every key once per cycle; its cycle's deletes add up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.adapters.binlog import BinlogPosition
from pipelines.follow import slices_due, sweep_slices
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


@given(
    size=st.integers(1, 5000),
    slices=st.integers(1, 12),
    index=st.integers(0, 11),
    count=st.integers(1, 12),
)
def test_several_slices_at_once_are_those_slices_together(
    size: int, slices: int, index: int, count: int
) -> None:
    index, count = index % slices, min(count, slices)
    alone = {
        k
        for i in range(index, index + count)
        for a, b in Sweep(i % slices, slices).spans(0, size, size, 4)
        for k in range(a, b)
    }
    spans = Sweep(index, slices, (), count).spans(0, size, size, 4)
    together = [k for a, b in spans for k in range(a, b)]
    assert together == sorted(alone)  # the same keys, in order, none twice


@pytest.mark.parametrize(
    ("period", "took"),
    [(30.2, 3), (30.5, 29.5), (40, 40), (55, 55), (90, 90), (140, 140), (250, 250), (400, 400)],
)
def test_late_ticks_compare_more_slices_so_each_comes_round_within_the_lag(
    period: float, took: float
) -> None:
    interval, lag = 30.0, 300.0
    slices = sweep_slices(interval, lag)
    count = slices_due(slices, period, took, lag)
    last_seen: dict[int, float] = {}
    gaps: list[float] = []
    position, now = Position(0, slices), 0.0
    for _ in range(200):
        for s in (i % slices for i in range(position.slice, position.slice + count)):
            if s in last_seen:
                gaps.append(now - last_seen[s])
            last_seen[s] = now
        position = position.advanced({}, slices, count)
        now += period
    assert set(last_seen) == set(range(slices))
    # compared again, and that tick ended, within the lag; unless a tick alone is longer,
    # when every tick compares everything
    assert max(gaps) + took <= lag or count == slices
    if period < interval + 1 and took < interval / 2:
        assert count == 1  # on time, quiet: one slice per tick


def test_a_tick_into_the_next_cycle_starts_its_count_with_its_deletes() -> None:
    p = Position(7, 9, {"timesheets": 4})
    assert p.advanced({"timesheets": 3}, 9, 2) == Position(0, 9)
    assert p.advanced({"timesheets": 3, "tags": 0}, 9, 4) == Position(2, 9, {"timesheets": 3})


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
