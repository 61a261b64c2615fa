"""Change sets too big to hold in memory: paged from Kimai and loaded by dlt in packages, or,
when the cursor window holds most of the table, rewritten by the bulk path.

A Kimai upgrade (or a plugin) that bumps every timesheet's ``modified_at``, or ``--since``
over the whole history, makes the cursor window the whole table. The limits are lowered
here so that 3,000 timesheets behave as millions would.
"""

from __future__ import annotations

import pytest

from pipelines.adapters import kimai
from pipelines.demo.kimai_data import build_kimai
from pipelines.sync import changes, load, plan
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
    page_rows = kimai.Kimai.page_rows

    def recorded(self, layout, where=None):
        for batch in page_rows(self, layout, where):
            if where is not None:  # window pages, not whole-table rewrites
                batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(kimai.Kimai, "page_rows", recorded)
    return batches


def _timesheets(result):
    return next(s for s in result.tables if s.table == "timesheets")


def _count(atlas: str, sql: str) -> int:
    return pg_query(atlas, sql)[0][0]


def test_a_window_over_the_limit_streams_in_pages_and_load_packages(env, small_limits, monkeypatch):
    monkeypatch.setattr(load, "ROWS_PER_PACKAGE", 200)
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=31, timesheets=3_000)
    sync_now()
    small_limits.clear()
    top = kimai_query(db, "SELECT MAX(modified_at) FROM kimai2_timesheet")[0][0]
    # 500 changed rows: over the in-memory limit (200), under a fifth of the table (600)
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET modified_at = UTC_TIMESTAMP() WHERE id % 6 = 0",
        "UPDATE kimai2_timesheet SET description = CONCAT('migrated ', id) WHERE id % 12 = 0",
    )
    changed = kimai_query(db, "SELECT COUNT(*) FROM kimai2_timesheet WHERE id % 6 = 0")[0][0]
    # the window also re-reads the overlap (300 s) before the stored cursor
    window = kimai_query(
        db,
        "SELECT COUNT(*) FROM kimai2_timesheet WHERE modified_at >= %s - INTERVAL 300 SECOND",
        (top,),
    )[0][0]
    assert 200 < changed <= window < 600

    dry = _timesheets(sync_now(dry_run=True))
    assert (dry.rows_read, dry.updated, dry.inserted) == (window, changed, 0)
    assert small_limits == [250, 250, window - 500]  # paged, never held whole
    small_limits.clear()

    before = _count(atlas, "SELECT count(*) FROM kimai_replica._dlt_loads")
    ts = _timesheets(sync_now())
    assert (ts.rows_read, ts.updated, ts.inserted, ts.deleted) == (window, changed, 0, 0)
    assert small_limits == [250, 250, window - 500]
    # packages of at least 200 rows, in whole pages: 250, 250, then the rest and the cursor
    assert _count(atlas, "SELECT count(*) FROM kimai_replica._dlt_loads") - before == 3
    assert_replica_equals_kimai(db, atlas)


def test_a_window_over_most_of_the_table_rewrites_it_like_a_first_load(
    env, small_limits, monkeypatch
):
    """A bump of every timesheet's modified_at (a Kimai upgrade migration), or --since over
    the whole history, rewrites the table by the bulk path instead of merging it."""
    monkeypatch.setattr(load, "ROWS_PER_PACKAGE", 200)
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=32, timesheets=3_000)
    sync_now()
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET modified_at = UTC_TIMESTAMP()",
        "UPDATE kimai2_timesheet SET description = CONCAT('migrated ', id) WHERE id % 75 = 0",
        "DELETE FROM kimai2_timesheet WHERE id % 500 = 0",
    )
    kimai_rows = kimai_query(db, "SELECT COUNT(*) FROM kimai2_timesheet")[0][0]
    gone = 3_000 - kimai_rows
    small_limits.clear()

    dry = _timesheets(sync_now(dry_run=True))
    assert (dry.inserted, dry.updated, dry.deleted) == (0, kimai_rows, gone)

    def rewrites() -> int:
        return _count(
            atlas,
            "SELECT count(*) FROM kimai_replica.sync_change_log"
            " WHERE table_name = 'timesheets' AND change = 'rewrite'",
        )

    loads, rewritten = _count(atlas, "SELECT count(*) FROM kimai_replica._dlt_loads"), rewrites()
    ts = _timesheets(sync_now())
    assert (ts.rows_read, ts.inserted, ts.updated, ts.deleted) == (kimai_rows, 0, kimai_rows, gone)
    assert small_limits == []  # nothing compared in pages: the bulk path read the table
    assert rewrites() == rewritten + 1  # the change log says so to the incremental models
    # dlt stored only the new cursor: one package, however small its packages
    assert _count(atlas, "SELECT count(*) FROM kimai_replica._dlt_loads") - loads == 1
    assert_replica_equals_kimai(db, atlas)

    # the whole history again by --since: rewritten again, still equal
    again = _timesheets(
        sync_now(since=kimai_query(db, "SELECT MIN(date_tz) FROM kimai2_timesheet")[0][0])
    )
    assert (again.rows_read, again.deleted) == (kimai_rows, 0)
    assert rewrites() == rewritten + 2
    assert_replica_equals_kimai(db, atlas)
