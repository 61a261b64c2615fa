"""Change sets too big to hold in memory stream from Kimai through dlt in bounded batches.

A Kimai upgrade (or a plugin) that bumps every timesheet's ``modified_at``, or ``--since``
over the whole history, makes the cursor window the whole table. The limit is lowered here
so that 3,000 timesheets behave as millions would.
"""

from __future__ import annotations

import pytest

from pipelines import changes, kimai, load, plan
from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_exec, kimai_query, kimai_url, pg_query, sync_now
from tests.replica_check import assert_replica_equals_kimai

LIMIT = 200


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lower the in-memory limit and Kimai's batch size; record every streamed batch."""
    monkeypatch.setattr(plan, "ROWS_AHEAD", LIMIT)
    monkeypatch.setattr(changes, "ROWS_AHEAD", LIMIT)
    monkeypatch.setattr(kimai, "BATCH_ROWS", 250)
    monkeypatch.setattr(load, "ROWS_PER_PACKAGE", 700)
    batches: list[int] = []
    stream_rows = kimai.Kimai.stream_rows

    def recorded(self, layout, where=None):
        for batch in stream_rows(self, layout, where):
            if where is not None:  # window streams, not whole-table loads
                batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(kimai.Kimai, "stream_rows", recorded)
    return batches


def _timesheets(result):
    return next(s for s in result.tables if s.table == "timesheets")


def test_a_bump_of_every_timesheet_and_a_since_over_all_history_stream_in_batches(
    env, small_limits
):
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=31, timesheets=3_000)
    sync_now()
    small_limits.clear()
    # an upgrade migration touches every row (modified_at is replicated: all change)
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET modified_at = UTC_TIMESTAMP()",
        "UPDATE kimai2_timesheet SET description = CONCAT('migrated ', id) WHERE id % 75 = 0",
    )
    changed = 3_000

    dry = _timesheets(sync_now(dry_run=True))
    assert (dry.rows_read, dry.updated, dry.inserted) == (3_000, changed, 0)
    assert len(small_limits) == 12 and max(small_limits) == 250  # streamed, in batches
    small_limits.clear()

    atlas = env["ATLAS_DB_DATABASE"]

    def packages() -> int:
        return pg_query(atlas, "SELECT count(*) FROM kimai_replica._dlt_loads")[0][0]

    before = packages()
    ts = _timesheets(sync_now())
    assert (ts.rows_read, ts.updated, ts.inserted, ts.deleted) == (3_000, changed, 0, 0)
    assert len(small_limits) == 12
    # 3,000 changed rows in packages of at least 700 (whole 250-row batches): 4 + 1 more
    # for the rest and the cursor
    assert packages() - before == 5
    assert_replica_equals_kimai(db, atlas)

    # the whole history again by --since: read in batches, and nothing differs any more
    small_limits.clear()
    again = _timesheets(
        sync_now(since=kimai_query(db, "SELECT MIN(date_tz) FROM kimai2_timesheet")[0][0])
    )
    assert (again.rows_read, again.updated, again.inserted) == (3_000, 0, 0)
    assert sum(small_limits) == 3_000
