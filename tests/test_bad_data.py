"""Bad data in Kimai is data, not an outage: each hostile value is replicated under its
documented rule, listed in vw_data_issues, and the scheduled job keeps exiting 0.

The expected replica comes from Kimai's raw rows with the rules of docs/models.md applied
by tests/replica_check.py; the expected issues are the values this test planted.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import mariadb_connect, pg_query, run_cli, sync_now
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import ANALYTICS, make_stack

INVOICE_CHARS = 1_000_123
"""An invoice text longer than the documented cut (1,000,000 characters)."""


def kimai_sql(db: str, *statements: str) -> None:
    """Run statements on Kimai the way a sloppy client could: no strict date checks."""
    conn = mariadb_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
            for sql in statements:
                cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def kimai_ids(db: str, sql: str) -> list[int]:
    conn = mariadb_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def issues(stack) -> set[tuple]:
    rows = pg_query(
        stack.atlas_db,
        "SELECT table_name, row_key, column_name, rule, raw_value, first_seen_at"
        f" FROM {ANALYTICS}.vw_data_issues",
    )
    return {tuple(r) for r in rows}


@pytest.mark.heavy
def test_hostile_values_are_replicated_under_their_rules_and_listed(tmp_path: Path, monkeypatch):
    with make_stack(tmp_path, timesheets=300, seed=26) as stack:
        db = stack.kimai_db
        ts = kimai_ids(db, "SELECT id FROM kimai2_timesheet WHERE end_time IS NOT NULL ORDER BY id")
        nul_ts, invalid_ts, negative_ts, absurd_ts, future_ts, past_ts = (
            ts[i] for i in (3, 17, 40, 41, 42, 43)
        )
        tag = kimai_ids(db, "SELECT id FROM kimai2_tags ORDER BY id")[2]
        project = kimai_ids(db, "SELECT id FROM kimai2_projects ORDER BY id")[1]
        customer = kimai_ids(db, "SELECT id FROM kimai2_customers ORDER BY id")[0]
        pair = kimai_ids(db, "SELECT timesheet_id FROM kimai2_timesheet_tags ORDER BY 1")[0]
        pair_tag = kimai_ids(
            db, f"SELECT tag_id FROM kimai2_timesheet_tags WHERE timesheet_id = {pair} ORDER BY 1"
        )[0]
        bump = "modified_at = UTC_TIMESTAMP()"
        kimai_sql(
            db,
            f"UPDATE kimai2_timesheet SET description = CONCAT('late', CHAR(0), 'night'), {bump}"
            f" WHERE id = {nul_ts}",
            f"UPDATE kimai2_tags SET name = CONCAT('x', CHAR(0), 'y') WHERE id = {tag}",
            f"UPDATE kimai2_timesheet SET end_time = '2023-02-30 10:00:00', {bump}"
            f" WHERE id = {invalid_ts}",
            f"UPDATE kimai2_projects SET order_date = '0000-00-00 00:00:00' WHERE id = {project}",
            f"UPDATE kimai2_customers SET invoice_text = REPEAT('a', {INVOICE_CHARS})"
            f" WHERE id = {customer}",
            f"UPDATE kimai2_timesheet SET duration = -600, {bump} WHERE id = {negative_ts}",
            f"UPDATE kimai2_timesheet SET duration = 40 * 86400, {bump} WHERE id = {absurd_ts}",
            f"UPDATE kimai2_timesheet SET start_time = '2031-01-06 09:00:00',"
            f" end_time = '2031-01-06 10:00:00', date_tz = '2031-01-06', {bump}"
            f" WHERE id = {future_ts}",
            f"UPDATE kimai2_timesheet SET start_time = '1001-01-06 09:00:00',"
            f" end_time = '1001-01-06 10:00:00', date_tz = '1001-01-06', {bump}"
            f" WHERE id = {past_ts}",
            # a damaged schema: the pairs lose Kimai's key, and one pair is stored twice
            "ALTER TABLE kimai2_timesheet_tags DROP PRIMARY KEY",
            f"INSERT INTO kimai2_timesheet_tags (timesheet_id, tag_id) VALUES ({pair}, {pair_tag})",
        )

        first = run_cli(env=stack.env, timeout=600)
        assert first.returncode == 0, first.stderr
        assert_replica_equals_kimai(db, stack.atlas_db)
        listed = issues(stack)
        planted = {
            ("timesheets", str(nul_ts), "description", "nul_in_text", None),
            ("tags", str(tag), "name", "nul_in_text", None),
            ("timesheets", str(invalid_ts), "end_time", "invalid_date", "2023-02-30 10:00:00"),
            ("projects", str(project), "order_date", "invalid_date", "0000-00-00 00:00:00"),
            ("customers", str(customer), "invoice_text", "oversized_text", str(INVOICE_CHARS)),
            ("timesheets", str(negative_ts), "duration", "negative_duration", "-600"),
            ("timesheets", str(absurd_ts), "duration", "absurd_duration", str(40 * 86400)),
            ("timesheets", str(future_ts), "start_time", "far_future_date", None),
            ("timesheets", str(past_ts), "start_time", "far_past_date", None),
            ("timesheet_tags", f"{pair},{pair_tag}", "timesheet_id,tag_id", "duplicate_key", "2"),
        }
        # the date checks' raw value is the instant as PostgreSQL prints it
        dated = {"far_future_date", "far_past_date"}
        assert {r[:5] if r[3] not in dated else (*r[:4], None) for r in listed} == planted
        assert all(r[5] is not None for r in listed)
        # a record from the year 1001 does not make its user's calendar start then
        [(user_days,)] = pg_query(
            stack.atlas_db,
            f"SELECT count(*) FROM {ANALYTICS}.vw_user_days WHERE user_id ="
            f" (SELECT user_id FROM {ANALYTICS}.vw_timesheet_facts WHERE timesheet_id = {past_ts})",
        )
        assert user_days <= (dt.date.today() - dt.date(1970, 1, 1)).days + 2

        status = json.loads(run_cli("status", "--json", env=stack.env).stdout)
        assert status["data_issues"] == {
            "customers": 1,
            "projects": 1,
            "tags": 1,
            "timesheet_tags": 1,
            "timesheets": 6,
        }

        # nothing new on the next run: the rows read under a rule compare equal, also
        # whole (a reconcile hashes every column of every row on both servers); the views
        # read the replica, so what they list is what the run left
        for key, value in stack.env.items():
            monkeypatch.setenv(key, value)
        reconciled = sync_now(reconcile=True)
        assert {s.table: s.written for s in reconciled.tables if s.written} == {}
        assert issues(stack) == listed

        # fixed in Kimai, the next run clears them
        kimai_sql(
            db,
            f"UPDATE kimai2_timesheet SET description = 'late night', {bump} WHERE id = {nul_ts}",
            f"UPDATE kimai2_tags SET name = 'xy' WHERE id = {tag}",
            f"UPDATE kimai2_timesheet SET end_time = '2023-02-28 10:00:00', {bump}"
            f" WHERE id = {invalid_ts}",
            f"UPDATE kimai2_projects SET order_date = NULL WHERE id = {project}",
            f"UPDATE kimai2_customers SET invoice_text = 'short' WHERE id = {customer}",
            f"UPDATE kimai2_timesheet SET duration = 600, {bump} WHERE id = {negative_ts}",
            f"UPDATE kimai2_timesheet SET duration = 4 * 3600, {bump} WHERE id = {absurd_ts}",
            f"UPDATE kimai2_timesheet SET start_time = '2025-01-06 09:00:00',"
            f" end_time = '2025-01-06 10:00:00', date_tz = '2025-01-06', {bump}"
            f" WHERE id = {future_ts}",
            f"UPDATE kimai2_timesheet SET start_time = '2025-01-07 09:00:00',"
            f" end_time = '2025-01-07 10:00:00', date_tz = '2025-01-07', {bump}"
            f" WHERE id = {past_ts}",
            f"DELETE FROM kimai2_timesheet_tags WHERE timesheet_id = {pair} AND tag_id = {pair_tag}",
            f"INSERT INTO kimai2_timesheet_tags (timesheet_id, tag_id) VALUES ({pair}, {pair_tag})",
        )
        fixed = run_cli(env=stack.env, timeout=600)
        assert fixed.returncode == 0, fixed.stderr
        assert_replica_equals_kimai(db, stack.atlas_db)
        assert issues(stack) == set()
