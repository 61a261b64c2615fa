"""Data Kimai should not hold but real databases do, and Kimai upgrades that change columns."""

from __future__ import annotations

import pymysql
import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import (
    kimai_exec,
    kimai_query,
    kimai_url,
    mariadb_connect,
    pg_query,
    run_cli,
    sync_now,
)
from tests.replica_check import assert_replica_equals_kimai

BIG = "€" * 10_000 + "😀" * 8_000 + "x" * 3_535  # 30,000 + 32,000 + 3,535 = 65,535 bytes


@pytest.fixture
def kimai(env):
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=5, timesheets=400)
    return env["KIMAI_DB_DATABASE"]


@pytest.mark.parametrize("first_load", [True, False], ids=["first-load", "incremental"])
def test_zero_dates_nulls_huge_text_and_emoji_load_faithfully(kimai, env, first_load):
    if not first_load:
        sync_now()
    ids = [r[0] for r in kimai_query(kimai, "SELECT id FROM kimai2_timesheet ORDER BY id LIMIT 4")]
    # MariaDB accepts zero dates outside strict date modes (legacy imports do this)
    kimai_exec(
        kimai,
        f"UPDATE kimai2_timesheet SET end_time = '0000-00-00 00:00:00', date_tz = '0000-00-00',"
        f" modified_at = UTC_TIMESTAMP() WHERE id = {ids[0]}",
        f"UPDATE kimai2_timesheet SET billable = NULL, modified_at = UTC_TIMESTAMP() WHERE id = {ids[1]}",
        "UPDATE kimai2_tags SET visible = NULL WHERE id = (SELECT MIN(id) FROM kimai2_tags)",
        sql_mode="",
    )
    conn = mariadb_connect(kimai)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE kimai2_timesheet SET description = %s, modified_at = UTC_TIMESTAMP() WHERE id = %s",
            (BIG, ids[2]),
        )
        cur.execute(
            "UPDATE kimai2_timesheet SET description = %s, modified_at = UTC_TIMESTAMP() WHERE id = %s",
            ("tab\there\nnew line \\N back\\slash 'quote' \"dq\" 👩‍👩‍👧 𝔘𝔫𝔦", ids[3]),
        )
    conn.close()
    sync_now()
    db = env["ATLAS_DB_DATABASE"]
    rows = dict(
        (r[0], r[1:])
        for r in pg_query(
            db,
            "SELECT id, end_time, date_tz, billable, description, octet_length(description)"
            f" FROM kimai_replica.replica_kimai_timesheets WHERE id IN {tuple(ids)}",
        )
    )
    assert rows[ids[0]][0] is None and rows[ids[0]][1] is None  # zero date → NULL
    assert rows[ids[1]][2] is None  # NULL boolean stays NULL
    assert rows[ids[2]][3] == BIG and rows[ids[2]][4] == 65_535
    assert rows[ids[3]][3].startswith("tab\there\nnew line \\N")
    assert (
        pg_query(db, "SELECT count(*) FROM kimai_replica.replica_kimai_tags WHERE visible IS NULL")[
            0
        ][0]
        == 1
    )
    # everything else equal, the zero dates compared as NULL
    assert_replica_equals_kimai(kimai, db)
    # and reconcile agrees (its fingerprints treat zero dates the same way)
    result = sync_now(reconcile=True)
    assert next(s for s in result.tables if s.table == "timesheets").written == 0


def test_dst_edges_keep_utc_and_the_local_day_kimai_stored(kimai, env):
    sync_now()
    # the fixture plants records starting right at DST transitions in their zone
    edge = kimai_query(
        kimai,
        "SELECT id, start_time, date_tz, timezone FROM kimai2_timesheet"
        " WHERE timezone = 'Europe/Berlin' AND MONTH(start_time) IN (3, 10)"
        " AND DAYOFWEEK(start_time) = 1 AND HOUR(start_time) BETWEEN 0 AND 2",
    )
    assert edge, "fixture has DST-edge rows"
    got = dict(
        (r[0], r[1:])
        for r in pg_query(
            env["ATLAS_DB_DATABASE"],
            "SELECT id, start_time AT TIME ZONE 'UTC', date_tz FROM kimai_replica.replica_kimai_timesheets",
        )
    )
    for row_id, start, date_tz, _ in edge:
        assert got[row_id] == (start, date_tz)


def test_kimai_adds_and_drops_columns(kimai, env):
    sync_now()
    # a Kimai upgrade adds a column (with a default every existing row takes) ...
    kimai_exec(
        kimai,
        "ALTER TABLE kimai2_timesheet ADD COLUMN approval VARCHAR(20) NOT NULL DEFAULT 'open'",
        "ALTER TABLE kimai2_projects ADD COLUMN priority INT NULL",
        "UPDATE kimai2_projects SET priority = id % 3",
    )
    out = run_cli("sync", env=env)
    assert out.returncode == 0, out.stderr
    assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"])
    # ... and a later one drops a column: the run goes on, the replica keeps the column
    kimai_exec(kimai, "ALTER TABLE kimai2_projects DROP COLUMN color")
    kimai_exec(kimai, "UPDATE kimai2_projects SET name = CONCAT(name, ' *') WHERE id % 4 = 0")
    out = run_cli("sync", env=env)
    assert out.returncode == 0, out.stderr
    assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"])
    cols = [
        r[0]
        for r in pg_query(
            env["ATLAS_DB_DATABASE"],
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'kimai_replica'"
            " AND table_name = 'replica_kimai_projects'",
        )
    ]
    assert "color" in cols and "priority" in cols


def test_missing_kimai_table_is_a_config_error(kimai, env):
    kimai_exec(kimai, "DROP TABLE kimai2_timesheet_tags")
    out = run_cli("sync", env=env)
    assert out.returncode == 2
    assert "kimai2_timesheet_tags not found" in out.stderr
    with pytest.raises(pymysql.err.ProgrammingError):
        kimai_query(kimai, "SELECT 1 FROM kimai2_timesheet_tags")
