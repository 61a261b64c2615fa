"""The replica foundation against real MariaDB and PostgreSQL: full load, incremental runs,
idempotence, secrets, least privilege, types."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.demo.kimai_data import SECRET_MARKER, build_kimai
from pipelines.registry import TABLES, TABLES_BY_NAME
from tests.conftest import (
    kimai_exec,
    kimai_query,
    kimai_url,
    pg_connect,
    pg_query,
    run_cli,
    sync_now,
)
from tests.replica_check import assert_replica_equals_kimai

NOW = dt.datetime(2026, 11, 20, 12, 0, 0)


@pytest.fixture
def kimai(env):
    """A realistic Kimai (1,500 timesheets) in this test's MariaDB database."""
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=7, timesheets=1500)
    return env["KIMAI_DB_DATABASE"]


def test_full_load_equals_kimai_row_for_row(kimai, env):
    result = sync_now()
    counts = assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"])
    assert counts["timesheets"] == 1500
    assert all(n > 0 for n in counts.values()), counts
    by_table = {s.table: s for s in result.tables}
    assert by_table["timesheets"].inserted == 1500
    # the hard cases the fixture plants are really there (and so were compared above)
    special = kimai_query(
        kimai,
        "SELECT SUM(modified_at IS NULL), SUM(`break` IS NULL), SUM(end_time IS NULL),"
        " SUM(description = ''), SUM(description LIKE '%😀%' OR description RLIKE '[𐀀-􏿿]'),"
        " COUNT(DISTINCT timezone), SUM(fixed_rate IS NOT NULL), SUM(billable = 0)"
        " FROM kimai2_timesheet",
    )[0]
    assert all(int(v or 0) > 0 for v in special), special


def test_replica_column_types_are_faithful(kimai, env):
    sync_now()
    types = dict(
        pg_query(
            env["ATLAS_DB_DATABASE"],
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'kimai_replica' AND table_name = 'replica_kimai_timesheets'",
        )
    )
    assert types["id"] == "bigint" and types["user"] == "bigint" and types["break"] == "bigint"
    assert types["rate"] == types["internal_rate"] == "double precision"
    assert types["exported"] == types["billable"] == "boolean"
    assert types["start_time"] == types["modified_at"] == "timestamp with time zone"
    assert types["date_tz"] == "date"
    assert types["synced_at"] == "timestamp with time zone"
    assert {c for c in types if c.startswith("_dlt")} == set()
    # DOUBLE to the last digit: compare the exact text of every stored value
    kimai_rates = dict(kimai_query(kimai, "SELECT id, CAST(rate AS CHAR) FROM kimai2_timesheet"))
    replica_rates = dict(
        pg_query(
            env["ATLAS_DB_DATABASE"],
            "SELECT id, replace(rate::text, 'e+', 'e') FROM kimai_replica.replica_kimai_timesheets",
        )
    )
    # both servers print the shortest round-trip digits: equal text means equal doubles
    assert {k: float(v) for k, v in kimai_rates.items()} == {
        k: float(v) for k, v in replica_rates.items()
    }
    assert any(len(v.replace(".", "")) >= 15 for v in kimai_rates.values()), "long mantissas"


def test_second_run_without_changes_writes_nothing(kimai, env):
    sync_now()
    db = env["ATLAS_DB_DATABASE"]
    before = pg_query(
        db,
        "SELECT (SELECT max(synced_at) FROM kimai_replica.replica_kimai_timesheets),"
        " (SELECT count(*) FROM kimai_replica._dlt_loads),"
        " (SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        "  WHERE schemaname = 'kimai_replica' AND relname LIKE 'replica_kimai_%')",
    )[0]
    result = sync_now()
    assert [(s.table, s.written) for s in result.tables] == [(t.name, 0) for t in TABLES]
    after = pg_query(
        db,
        "SELECT (SELECT max(synced_at) FROM kimai_replica.replica_kimai_timesheets),"
        " (SELECT count(*) FROM kimai_replica._dlt_loads)",
    )[0]
    assert after == before[:2]
    assert_replica_equals_kimai(kimai, db)


def test_incremental_changes_arrive_in_one_run(kimai, env):
    sync_now()
    now = "UTC_TIMESTAMP()"
    running = kimai_query(kimai, "SELECT id FROM kimai2_timesheet WHERE end_time IS NULL LIMIT 1")
    assert running, "fixture has a running timer"
    tagged = kimai_query(kimai, "SELECT timesheet_id, tag_id FROM kimai2_timesheet_tags LIMIT 1")[0]
    untagged = kimai_query(
        kimai,
        "SELECT id FROM kimai2_timesheet t WHERE NOT EXISTS"
        " (SELECT 1 FROM kimai2_timesheet_tags x WHERE x.timesheet_id = t.id) LIMIT 1",
    )[0][0]
    customer = kimai_query(
        kimai,
        "SELECT c.id FROM kimai2_customers c JOIN kimai2_projects p ON p.customer_id = c.id"
        " JOIN kimai2_timesheet t ON t.project_id = p.id GROUP BY c.id ORDER BY COUNT(*) LIMIT 1",
    )[0][0]
    kimai_exec(
        kimai,
        # an edit through the ORM: values and modified_at change together
        f"UPDATE kimai2_timesheet SET description = CONCAT('edited 🚀 ', id), modified_at = {now}"
        " WHERE id % 97 = 0",
        # stopping a running timer
        f"UPDATE kimai2_timesheet SET end_time = {now}, duration = 3600, rate = 99.5,"
        f" modified_at = {now} WHERE id = {running[0][0]}",
        # a new record
        "INSERT INTO kimai2_timesheet (user, activity_id, project_id, start_time, end_time,"
        " duration, description, rate, exported, timezone, billable, category, modified_at,"
        " date_tz, `break`) SELECT user, activity_id, project_id, start_time, end_time,"
        f" duration, '', rate, 0, timezone, 1, 'work', {now}, date_tz, 0"
        " FROM kimai2_timesheet ORDER BY id DESC LIMIT 3",
        # tags: one removed, one added (both bump the timesheet, as Kimai's ORM does)
        f"DELETE FROM kimai2_timesheet_tags WHERE timesheet_id = {tagged[0]} AND tag_id = {tagged[1]}",
        f"UPDATE kimai2_timesheet SET modified_at = {now} WHERE id = {tagged[0]}",
        f"INSERT INTO kimai2_timesheet_tags VALUES ({untagged}, {tagged[1]})",
        f"UPDATE kimai2_timesheet SET modified_at = {now} WHERE id = {untagged}",
        # a project renamed, a customer deleted (FK cascade through its whole tree)
        "UPDATE kimai2_projects SET name = 'Renamed ✓' WHERE id = (SELECT MIN(id) FROM kimai2_projects)",
        f"DELETE FROM kimai2_customers WHERE id = {customer}",
    )
    result = sync_now()
    by_table = {s.table: s for s in result.tables}
    assert by_table["customers"].deleted == 1
    assert by_table["timesheets"].inserted == 3 and by_table["timesheets"].deleted > 0
    assert by_table["timesheet_tags"].inserted == 1
    assert by_table["projects"].updated == 1
    assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"])


def test_a_row_edited_behind_the_cursor_is_picked_up_by_since(kimai, env):
    sync_now()
    row = kimai_query(
        kimai, "SELECT id, date_tz FROM kimai2_timesheet WHERE modified_at IS NOT NULL LIMIT 1"
    )[0]
    # a raw SQL edit: no modified_at bump, so the cursor cannot see it
    kimai_exec(kimai, f"UPDATE kimai2_timesheet SET description = 'silent' WHERE id = {row[0]}")
    assert sync_now("timesheets").tables[0].written == 0
    result = sync_now("timesheets", since=row[1])
    assert result.tables[0].updated == 1
    assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"], [TABLES_BY_NAME["timesheets"]])


# Kimai's secret and security columns, written out here (not the product's lists): never in Atlas DB
SECRET_COLUMNS = {
    "password",
    "api_token",
    "totp_secret",
    "confirmation_token",
    "password_requested_at",
    "signature_date",
}


def _atlas_cells_containing(db: str, marker: str) -> tuple[list[str], list[str]]:
    """Every text cell of every schema of Atlas DB holding `marker` (as schema.table.column),
    and the names of every column there."""
    columns = pg_query(
        db,
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    texts = [c for c in columns if c[3] in ("text", "character varying", "jsonb", "json")]
    assert any(c[1] == "_dlt_version" for c in texts), "dlt's stored schema is searched too"
    found = []
    conn = pg_connect(db)
    try:
        with conn.cursor() as cur:
            for schema, table, column, _ in texts:
                cur.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}"::text LIKE %s',
                    (f"%{marker}%",),
                )
                if cur.fetchone()[0]:
                    found.append(f"{schema}.{table}.{column}")
    finally:
        conn.close()
    return found, [c[2] for c in columns]


def test_no_secret_column_or_value_reaches_atlas(kimai, env):
    sync_now()
    db = env["ATLAS_DB_DATABASE"]
    secrets = kimai_query(
        kimai,
        "SELECT password, api_token, totp_secret, confirmation_token FROM kimai2_users",
    )
    values = {v for row in secrets for v in row if v}
    assert values and all(SECRET_MARKER in v for v in values)
    found, columns = _atlas_cells_containing(db, SECRET_MARKER)
    assert found == []
    assert not SECRET_COLUMNS & set(columns)


def test_a_column_kimai_adds_to_users_stays_in_kimai_and_is_reported(kimai, env):
    # Kimai gains a security column, as it did with totp_secret and signature_date
    kimai_exec(
        kimai,
        "ALTER TABLE kimai2_users ADD COLUMN recovery_codes VARCHAR(255) NULL",
        "UPDATE kimai2_users SET recovery_codes = CONCAT('NEWCOLUMNSECRET-', id)",
    )
    db = env["ATLAS_DB_DATABASE"]
    for run in ("first load", "next run"):
        out = run_cli("sync", env=env)
        assert out.returncode == 0, out.stderr
        warnings = [line for line in out.stderr.splitlines() if "recovery_codes" in line]
        assert len(warnings) == 1 and "not replicated" in warnings[0], (run, out.stderr)
        found, columns = _atlas_cells_containing(db, "NEWCOLUMNSECRET")
        assert found == [] and "recovery_codes" not in columns, run
    # the other tables keep following Kimai's new columns
    kimai_exec(kimai, "ALTER TABLE kimai2_tags ADD COLUMN note VARCHAR(20) NULL DEFAULT 'x'")
    assert run_cli("sync", env=env).returncode == 0
    assert ("x",) in pg_query(db, "SELECT DISTINCT note FROM kimai_replica.replica_kimai_tags")


def test_least_privilege_login_with_column_grants(kimai, env, monkeypatch):
    import pymysql
    import sqlalchemy as sa

    from pipelines.demo.kimai_actions import create_readonly_user, drop_readonly_user

    user = f"ro_{kimai[-8:]}"
    engine = sa.create_engine(kimai_url(kimai))
    with engine.begin() as conn:
        create_readonly_user(conn, kimai, user, "s3cret pw", "kimai2_")
    try:
        ro = pymysql.connect(host="127.0.0.1", user=user, password="s3cret pw", database=kimai)
        with ro.cursor() as cur, pytest.raises(pymysql.err.OperationalError, match="denied"):
            cur.execute("SELECT password FROM kimai2_users")
        ro.close()
        monkeypatch.setenv("KIMAI_DB_USER", user)
        monkeypatch.setenv("KIMAI_DB_PASSWORD", "s3cret pw")
        sync_now()
        assert_replica_equals_kimai(kimai, env["ATLAS_DB_DATABASE"])
    finally:
        with engine.begin() as conn:
            drop_readonly_user(conn, user)
        engine.dispose()


def test_full_refresh_rewrites_without_dropping_the_table(kimai, env):
    sync_now()
    db = env["ATLAS_DB_DATABASE"]
    conn = pg_connect(db)
    with conn.cursor() as cur:
        # a dependent view: a DROP TABLE would fail (or cascade it away)
        cur.execute(
            "CREATE VIEW public.v_dep AS SELECT id, description FROM"
            " kimai_replica.replica_kimai_timesheets"
        )
        cur.execute("SELECT oid FROM pg_class WHERE relname = 'replica_kimai_timesheets'")
        oid = cur.fetchone()[0]
    kimai_exec(kimai, "UPDATE kimai2_timesheet SET exported = 1 WHERE id % 5 = 0")
    result = sync_now(full_refresh=True)
    assert {s.table: s.updated for s in result.tables}["timesheets"] == 1500
    with conn.cursor() as cur:
        cur.execute("SELECT oid FROM pg_class WHERE relname = 'replica_kimai_timesheets'")
        assert cur.fetchone()[0] == oid
        cur.execute("SELECT count(*) FROM public.v_dep")
        assert cur.fetchone()[0] == 1500
    conn.close()
    assert_replica_equals_kimai(kimai, db)


# the replica's keys and indexes (docs/design.md, "First loads"): written out here, not
# read from the product's registry
PRIMARY_KEYS = {
    "replica_kimai_customers": ["id"],
    "replica_kimai_projects": ["id"],
    "replica_kimai_activities": ["id"],
    "replica_kimai_users": ["id"],
    "replica_kimai_tags": ["id"],
    "replica_kimai_timesheets": ["id"],
    "replica_kimai_timesheet_tags": ["timesheet_id", "tag_id"],
}
INDEXED = {
    "replica_kimai_timesheets": {"start_time", "end_time", "modified_at"},
    "replica_kimai_timesheet_tags": {"tag_id"},
}


def _keys_and_indexed(db: str) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Primary key columns per table; columns that lead some index, per table."""
    keys = {
        table: columns
        for table, columns in pg_query(
            db,
            "SELECT c.conrelid::regclass::text, array_agg(a.attname ORDER BY k.n)"
            " FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(a, n)"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.a"
            " WHERE c.contype = 'p' AND c.connamespace = 'kimai_replica'::regnamespace"
            " GROUP BY 1",
        )
    }
    leading: dict[str, set[str]] = {}
    for table, column in pg_query(
        db,
        "SELECT c.relname, a.attname FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]"
        " WHERE c.relnamespace = 'kimai_replica'::regnamespace",
    ):
        leading.setdefault(table, set()).add(column)
    return {k.removeprefix("kimai_replica."): v for k, v in keys.items()}, leading


def test_replica_has_primary_keys_and_the_designs_indexes(kimai, env):
    db = env["ATLAS_DB_DATABASE"]
    sync_now()
    keys, leading = _keys_and_indexed(db)
    assert {t: keys.get(t) for t in PRIMARY_KEYS} == PRIMARY_KEYS
    for table in PRIMARY_KEYS:
        wanted = {"synced_at"} | INDEXED.get(table, set())
        assert wanted <= leading[table], (table, leading[table])

    # a replica from before: no primary keys, no time or synced_at indexes; the next run
    # adds them without reloading a row
    for table in PRIMARY_KEYS:
        pg_query(db, f"ALTER TABLE kimai_replica.{table} DROP CONSTRAINT {table}_key")
        pg_query(db, f"DROP INDEX IF EXISTS kimai_replica.{table}_synced_at")
    for column in ("start_time", "end_time"):
        pg_query(db, f"DROP INDEX kimai_replica.replica_kimai_timesheets_{column}")
    before = pg_query(db, "SELECT max(synced_at) FROM kimai_replica.replica_kimai_timesheets")
    assert not set(PRIMARY_KEYS) & set(_keys_and_indexed(db)[0])
    sync_now()
    keys, leading = _keys_and_indexed(db)
    assert {t: keys.get(t) for t in PRIMARY_KEYS} == PRIMARY_KEYS
    assert {"start_time", "end_time", "synced_at"} <= leading["replica_kimai_timesheets"]
    after = pg_query(db, "SELECT max(synced_at) FROM kimai_replica.replica_kimai_timesheets")
    assert after == before
