"""Every silent change in Kimai reaches the replica, applied exactly as Kimai applies it
(bulk updates, cascades, deletes with a replacement), and a wrong Kimai cannot wipe the replica."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as kimai_do
from pipelines.demo.kimai_data import build_kimai
from pipelines.registry import TABLES_BY_NAME
from tests.conftest import kimai_url, pg_connect, pg_query, run_cli, sync_now
from tests.replica_check import assert_replica_equals_kimai

NOW = "2026-11-21 09:00:00"


@pytest.fixture
def kimai(env):
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=21, timesheets=2500)
    sync_now()
    engine = sa.create_engine(kimai_url(env["KIMAI_DB_DATABASE"]))
    yield engine
    engine.dispose()


def one(engine: sa.Engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def column(engine: sa.Engine, sql: str) -> list:
    """The first column of a query's rows, on a connection closed before returning: a
    connection left to the garbage collector rolls back on a server that may be gone."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql)).scalars())


def apply(engine: sa.Engine, change: Callable[[sa.Connection], object]) -> None:
    with engine.connect() as conn:
        change(conn)


def stats(result, table: str):
    return next(s for s in result.tables if s.table == table)


def test_deleted_timesheets_disappear(kimai, env):
    ids = [
        one(kimai, f"SELECT id FROM kimai2_timesheet ORDER BY id LIMIT 1 OFFSET {n}")
        for n in (5, 50, 500)
    ]
    apply(kimai, lambda c: [kimai_do.delete_timesheet(c, i) for i in ids])
    result = sync_now()
    assert stats(result, "timesheets").deleted == 3
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_customer_delete_cascades_through_everything(kimai, env):
    customer = one(
        kimai,
        "SELECT p.customer_id FROM kimai2_projects p JOIN kimai2_timesheet t ON t.project_id = p.id"
        " JOIN kimai2_timesheet_tags x ON x.timesheet_id = t.id GROUP BY p.customer_id"
        " ORDER BY COUNT(*) LIMIT 1",
    )
    before = one(kimai, "SELECT COUNT(*) FROM kimai2_timesheet")
    apply(kimai, lambda c: kimai_do.delete_customer(c, customer))
    gone = before - one(kimai, "SELECT COUNT(*) FROM kimai2_timesheet")
    assert gone > 0
    result = sync_now()
    assert stats(result, "timesheets").deleted == gone
    assert stats(result, "projects").deleted > 0 and stats(result, "timesheet_tags").deleted > 0
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_project_deleted_with_move_to_another_project(kimai, env):
    project, target = (
        one(
            kimai,
            "SELECT project_id FROM kimai2_timesheet GROUP BY project_id ORDER BY COUNT(*) DESC LIMIT 1",
        ),
        one(
            kimai,
            "SELECT project_id FROM kimai2_timesheet GROUP BY project_id ORDER BY COUNT(*) LIMIT 1",
        ),
    )
    moved = one(kimai, f"SELECT COUNT(*) FROM kimai2_timesheet WHERE project_id = {project}")
    apply(kimai, lambda c: kimai_do.delete_project(c, project, move_to=target))
    # the move is a bulk UPDATE without a modified_at bump: invisible to the cursor (except
    # for rows that happen to sit in its overlap window) ...
    seen = stats(sync_now(), "timesheets").updated
    # ... and exactly what reconcile is for
    result = sync_now(reconcile=True)
    assert seen + stats(result, "timesheets").updated == moved > 0
    assert stats(result, "timesheets").unrepaired == 0
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_bulk_export_flag_and_raw_sql_edit(kimai, env):
    ids = column(kimai, "SELECT id FROM kimai2_timesheet WHERE exported = 0 ORDER BY id LIMIT 40")
    edited = one(kimai, "SELECT MAX(id) FROM kimai2_timesheet")
    apply(kimai, lambda c: kimai_do.mark_exported(c, ids))
    apply(kimai, lambda c: kimai_do.raw_sql_set_description(c, edited, "changed by a plugin 🔧"))
    assert stats(sync_now(), "timesheets").written == 0  # the cursor cannot see them
    result = sync_now(reconcile=True)
    ts = stats(result, "timesheets")
    assert ts.updated == 41 and ts.unrepaired == 0
    fp = ts.fingerprint
    assert fp.keys_differing == 41
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])
    # a second reconcile finds nothing
    again = stats(sync_now(reconcile=True), "timesheets")
    assert again.written == 0 and again.fingerprint.buckets_differing == 0


def test_deleted_tag_removes_its_pairs(kimai, env):
    # a tag in use, though not so widely that its pairs exceed the mass-delete share
    tag = one(
        kimai, "SELECT tag_id FROM kimai2_timesheet_tags GROUP BY tag_id ORDER BY COUNT(*) LIMIT 1"
    )
    pairs = one(kimai, f"SELECT COUNT(*) FROM kimai2_timesheet_tags WHERE tag_id = {tag}")
    apply(kimai, lambda c: kimai_do.delete_tag(c, tag))
    result = sync_now()
    assert stats(result, "timesheet_tags").deleted == pairs
    assert stats(result, "tags").deleted == 1
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_user_and_activity_deleted_with_move_to(kimai, env):
    users = column(
        kimai, "SELECT user FROM kimai2_timesheet GROUP BY user ORDER BY COUNT(*) DESC LIMIT 2"
    )
    activity = one(
        kimai,
        "SELECT activity_id FROM kimai2_timesheet t JOIN kimai2_activities a"
        " ON a.id = t.activity_id WHERE a.project_id IS NULL GROUP BY activity_id LIMIT 1",
    )
    other = one(
        kimai,
        f"SELECT id FROM kimai2_activities WHERE project_id IS NULL AND id <> {activity} LIMIT 1",
    )
    apply(kimai, lambda c: kimai_do.delete_user(c, users[0], move_to=users[1]))
    apply(kimai, lambda c: kimai_do.delete_activity(c, activity, move_to=other))
    result = sync_now(reconcile=True)
    assert stats(result, "users").deleted == 1
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_rows_changing_while_reconcile_runs_are_settled_by_the_next_run(kimai, env):
    ids = column(kimai, "SELECT id FROM kimai2_timesheet ORDER BY id")
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        n = 0
        try:
            with kimai.connect() as conn:
                while not stop.is_set():
                    n += 1
                    target = ids[(n * 37) % len(ids)]
                    if n % 2:
                        kimai_do.raw_sql_set_description(conn, target, f"busy {n}")
                    else:
                        kimai_do.mark_exported(conn, [target])
                    time.sleep(0.005)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2):
            out = run_cli("reconcile", env=env)
            assert out.returncode == 0, out.stderr
    finally:
        stop.set()
        thread.join()
    assert not errors
    final = sync_now(reconcile=True)
    assert stats(final, "timesheets").unrepaired == 0
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_empty_kimai_trips_the_guard_and_nothing_is_deleted(
    kimai, env, mariadb_database, monkeypatch
):
    db = env["ATLAS_DB_DATABASE"]

    def replica_counts() -> dict[str, int]:
        conn = pg_connect(db)
        with conn.cursor() as cur:
            out = {}
            for spec in TABLES_BY_NAME.values():
                cur.execute(f"SELECT count(*) FROM kimai_replica.{spec.replica_table}")
                out[spec.name] = cur.fetchone()[0]
        conn.close()
        return out

    before = replica_counts()
    # Kimai's database swapped for a freshly installed, empty one
    with kimai.begin() as conn:
        for table in ("timesheet_tags", "timesheet", "activities", "projects", "customers", "tags"):
            conn.execute(sa.text(f"DELETE FROM kimai2_{table}"))
    out = run_cli("sync", env=env)
    assert out.returncode == 4
    assert "refusing to delete" in out.stderr and "--allow-mass-delete" in out.stderr
    assert replica_counts() == before
    # a share above the limit also trips it, below does not
    out = run_cli("sync", env={**env, "ATLAS_MASS_DELETE_MAX_SHARE": "1"})
    assert out.returncode == 4, "emptying a table is refused whatever the share"
    allowed = run_cli("sync", "--allow-mass-delete", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], db)


def test_guard_share_is_configurable(kimai, env):
    total = one(kimai, "SELECT COUNT(*) FROM kimai2_timesheet")
    with kimai.begin() as conn:  # a quarter of the timesheets gone
        conn.execute(sa.text(f"DELETE FROM kimai2_timesheet ORDER BY id LIMIT {total // 4}"))
    assert run_cli("sync", env=env).returncode == 4
    ok = run_cli("sync", env={**env, "ATLAS_MASS_DELETE_MAX_SHARE": "0.3"})
    assert ok.returncode == 0, ok.stderr
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


@pytest.mark.heavy
@pytest.mark.slow
def test_reconcile_of_300k_rows_reads_a_sliver_of_kimai(env):
    """300,000 timesheets, more than one of the sweep's key ranges: no differences, a
    fraction of a percent of the table's bytes; 1,000 silent changes, exactly those rows
    repaired.

    Kimai sends a digest per bucket of key values, so the share of the table read does not
    shrink or grow with the table; the benchmark measures it at 1,000,000 (docs/benchmark.md, (e0)).
    """
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=1, timesheets=300_000)
    sync_now()
    engine = sa.create_engine(kimai_url(db))
    table_bytes = one(
        engine,
        "SELECT data_length FROM information_schema.tables"
        f" WHERE table_schema = '{db}' AND table_name = 'kimai2_timesheet'",
    )

    quiet = stats(sync_now("timesheets", reconcile=True), "timesheets")
    assert quiet.written == 0 and quiet.unrepaired == 0
    assert quiet.kimai_bytes_read <= 0.01 * table_bytes, (quiet.kimai_bytes_read, table_bytes)
    assert quiet.rows_read == 0

    with engine.connect() as conn:  # closed: an open read would block the DROP DATABASE
        ids = list(
            conn.execute(
                sa.text("SELECT id FROM kimai2_timesheet WHERE exported = 0 ORDER BY id LIMIT 1000")
            ).scalars()
        )
    with engine.connect() as conn:
        kimai_do.mark_exported(conn, ids[:500])
        for i in ids[500:]:
            conn.execute(
                sa.text(f"UPDATE kimai2_timesheet SET description = 'silent {i}' WHERE id = {i}")
            )
        conn.commit()
    fixed = stats(sync_now("timesheets", reconcile=True), "timesheets")
    assert fixed.updated == 1000 and fixed.inserted == fixed.deleted == 0
    assert fixed.unrepaired == 0
    assert fixed.kimai_bytes_read <= 0.02 * table_bytes, (fixed.kimai_bytes_read, table_bytes)
    conn = pg_connect(env["ATLAS_DB_DATABASE"])
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE exported), count(*) FILTER (WHERE description LIKE 'silent %')"
            f" FROM kimai_replica.replica_kimai_timesheets WHERE id IN ({', '.join(map(str, ids))})"
        )
        assert cur.fetchone() == (500, 500)
    conn.close()
    again = stats(sync_now("timesheets", reconcile=True), "timesheets")
    assert again.written == 0 and again.fingerprint.buckets_differing == 0
    engine.dispose()


def test_teams_preferences_and_settings_follow_kimai(kimai, env):
    """Deletes and silent changes in the four tables of teams and settings reach the replica
    on the next scheduled run, as for the seven; a row that leaves the allow-list leaves the
    replica, and one that is not on it never arrives."""
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    team, user = one(
        kimai,
        "SELECT CONCAT(team_id, ',', user_id) FROM kimai2_users_teams WHERE NOT teamlead"
        " ORDER BY id LIMIT 1",
    ).split(",")
    whole_team = one(kimai, "SELECT MAX(team_id) FROM kimai2_users_teams")
    members = one(kimai, f"SELECT COUNT(*) FROM kimai2_users_teams WHERE team_id = {whole_team}")
    zone_user = one(
        kimai, "SELECT MIN(user_id) FROM kimai2_user_preferences WHERE name = 'timezone'"
    )
    contract_user = one(
        kimai, "SELECT MIN(user_id) FROM kimai2_user_preferences WHERE name = 'work_monday'"
    )

    def change(conn: sa.Connection) -> None:
        kimai_do.remove_team_member(conn, int(team), int(user))
        kimai_do.delete_team(conn, whole_team)
        # behind the app's back: a zone changed, a contract day renamed out of the list, a
        # confidential preference and the financial year changed
        kimai_do.raw_sql_set_preference(conn, zone_user, "timezone", "Pacific/Auckland")
        conn.execute(
            sa.text(
                "UPDATE kimai2_user_preferences SET name = 'work_monday_old'"
                " WHERE user_id = :u AND name = 'work_monday'"
            ),
            {"u": contract_user},
        )
        kimai_do.set_user_preference(conn, zone_user, "hourly_rate", "FIXTURESECRET-rate")
        kimai_do.raw_sql_set_configuration(conn, "company.financial_year", "2019-07-01")
        conn.commit()

    apply(kimai, change)
    result = sync_now()
    assert stats(result, "users_teams").deleted == 1 + members
    assert stats(result, "teams").deleted == 1
    assert stats(result, "user_preferences").updated == 1
    assert stats(result, "user_preferences").deleted == 1
    assert stats(result, "configuration").updated == 1
    assert_replica_equals_kimai(db, atlas)
    assert pg_query(
        atlas,
        "select value from kimai_replica.replica_kimai_user_preferences"
        " where user_id = %s and name = 'timezone'",
        (zone_user,),
    ) == [("Pacific/Auckland",)]
    assert pg_query(
        atlas,
        "select count(*) from kimai_replica.replica_kimai_user_preferences"
        " where value like %s or name not in ('timezone', 'first_weekday',"
        " 'work_contract_type', 'work_monday', 'work_tuesday', 'work_wednesday',"
        " 'work_thursday', 'work_friday', 'work_saturday', 'work_sunday', 'holidays',"
        " 'public_holiday_group', 'work_start_day', 'work_last_day')",
        ("%FIXTURESECRET%",),
    ) == [(0,)]
