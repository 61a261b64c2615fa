"""The Kimai fixture: DDL against the spec, the generator, loading, and Kimai's actions.

Expected schema values are written out here from what Kimai's migrations leave (for teams,
membership, preferences and configuration: the migrations cited at EXPECTED_COLUMNS), not
derived from the DDL. Every test gets its own database (MariaDB ``kimai_fx_<hex>`` or an
SQLite file).
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pymysql
import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as ka
from pipelines.demo import kimai_data as kd

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
UTC_NOW = kd.REFERENCE_NOW


def mariadb(database: str | None = None, **kwargs: Any) -> pymysql.connections.Connection:
    return pymysql.connect(
        **MARIADB, database=database, charset="utf8mb4", autocommit=True, **kwargs
    )


def mysql_url(database: str) -> str:
    return f"mysql+pymysql://root@127.0.0.1:3306/{database}"


def new_database() -> str:
    name = f"kimai_fx_{uuid.uuid4().hex[:12]}"
    with mariadb() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return name


def drop_database(name: str) -> None:
    with mariadb() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def database() -> Iterator[str]:
    name = new_database()
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[str, kd.KimaiData]]:
    """A MariaDB Kimai with 2,000 timesheets (seed 42), read by several tests."""
    name = new_database()
    try:
        kd.build_kimai(mysql_url(name), seed=42, timesheets=2000)
        yield name, kd.generate(seed=42, timesheets=2000)
    finally:
        drop_database(name)


def query(database: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with mariadb(database) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


# -- the schema, as Kimai 2.66's migrations leave it ------------------------------------------

NO_DEFAULT = object()


def col(
    name: str, type_: str, null: bool = False, default: Any = NO_DEFAULT, auto: bool = False
) -> tuple[str, str, str, str | None, str]:
    """One information_schema.COLUMNS row as MariaDB 10.11 reports it."""
    # nullable columns without an explicit default show the default NULL
    shown = ("NULL" if null else None) if default is NO_DEFAULT else default
    return (name, type_, "YES" if null else "NO", shown, "auto_increment" if auto else "")


INT, TINY, DBL, DT = "int(11)", "tinyint(1)", "double", "datetime"

EXPECTED_COLUMNS = {
    "timesheet": [
        col("id", INT, auto=True),
        col("user", INT),
        col("activity_id", INT),
        col("project_id", INT),
        col("start_time", DT),
        col("end_time", DT, null=True),
        col("duration", INT, null=True),
        col("description", "text", null=True),
        col("rate", DBL),
        col("fixed_rate", DBL, null=True),
        col("hourly_rate", DBL, null=True),
        col("exported", TINY, default="0"),
        col("timezone", "varchar(64)"),
        col("internal_rate", DBL, null=True),
        col("billable", TINY, null=True, default="1"),
        col("category", "varchar(10)", default="'work'"),
        col("modified_at", DT, null=True),
        col("date_tz", "date"),
        col("break", INT, null=True),
    ],
    "timesheet_tags": [col("timesheet_id", INT), col("tag_id", INT)],
    "tags": [
        col("id", INT, auto=True),
        col("name", "varchar(100)"),
        col("color", "varchar(7)", null=True),
        col("visible", TINY, null=True, default="1"),
    ],
    "projects": [
        col("id", INT, auto=True),
        col("customer_id", INT),
        col("name", "varchar(150)"),
        col("order_number", "tinytext", null=True),
        col("comment", "text", null=True),
        col("visible", TINY),
        col("budget", DBL, default="0"),
        col("color", "varchar(7)", null=True),
        col("time_budget", INT, default="0"),
        col("order_date", DT, null=True),
        col("start", DT, null=True),
        col("end", DT, null=True),
        col("timezone", "varchar(64)", null=True),
        col("budget_type", "varchar(10)", null=True),
        col("billable", TINY, default="1"),
        col("invoice_text", "longtext", null=True),
        col("global_activities", TINY, default="1"),
        col("number", "varchar(10)", null=True),
        col("created_at", DT, null=True),
    ],
    "activities": [
        col("id", INT, auto=True),
        col("project_id", INT, null=True),
        col("name", "varchar(150)"),
        col("comment", "text", null=True),
        col("visible", TINY),
        col("color", "varchar(7)", null=True),
        col("time_budget", INT, default="0"),
        col("budget", DBL, default="0"),
        col("budget_type", "varchar(10)", null=True),
        col("billable", TINY, default="1"),
        col("invoice_text", "longtext", null=True),
        col("number", "varchar(10)", null=True),
        col("created_at", DT, null=True),
    ],
    "customers": [
        col("id", INT, auto=True),
        col("name", "varchar(150)"),
        col("number", "varchar(50)", null=True),
        col("comment", "text", null=True),
        col("visible", TINY),
        col("company", "varchar(100)", null=True),
        col("contact", "varchar(100)", null=True),
        col("address", "text", null=True),
        col("country", "varchar(2)"),
        col("currency", "varchar(3)"),
        col("phone", "varchar(30)", null=True),
        col("fax", "varchar(30)", null=True),
        col("mobile", "varchar(30)", null=True),
        col("email", "varchar(75)", null=True),
        col("homepage", "varchar(100)", null=True),
        col("timezone", "varchar(64)"),
        col("color", "varchar(7)", null=True),
        col("time_budget", INT, default="0"),
        col("budget", DBL, default="0"),
        col("vat_id", "varchar(50)", null=True),
        col("budget_type", "varchar(10)", null=True),
        col("billable", TINY, default="1"),
        col("invoice_template_id", INT, null=True),
        col("invoice_text", "longtext", null=True),
        col("created_at", DT, null=True),
        col("address_line1", "varchar(150)", null=True),
        col("address_line2", "varchar(150)", null=True),
        col("address_line3", "varchar(150)", null=True),
        col("postcode", "varchar(20)", null=True),
        col("city", "varchar(50)", null=True),
        col("buyer_reference", "varchar(50)", null=True),
        col("invoice_email", "varchar(75)", null=True),
        col("language", "varchar(35)", default="'en'"),
    ],
    "users": [
        col("id", INT, auto=True),
        col("username", "varchar(180)"),
        col("email", "varchar(180)"),
        col("password", "varchar(255)"),
        col("alias", "varchar(60)", null=True),
        col("enabled", TINY),
        col("registration_date", DT, null=True),
        col("title", "varchar(50)", null=True),
        col("avatar", "varchar(255)", null=True),
        col("roles", "longtext"),
        col("last_login", DT, null=True),
        col("confirmation_token", "varchar(180)", null=True),
        col("password_requested_at", DT, null=True),
        col("api_token", "varchar(255)", null=True),
        col("auth", "varchar(20)", null=True),
        col("color", "varchar(7)", null=True),
        col("account", "varchar(30)", null=True),
        col("totp_secret", "varchar(255)", null=True),
        col("totp_enabled", TINY, default="0"),
        col("system_account", TINY, default="0"),
        col("supervisor_id", INT, null=True),
        col("signature_date", DT, null=True),
    ],
    # Version20190730123324 (teamlead_id dropped by Version20210802174320), color from
    # Version20210704111542
    "teams": [
        col("id", INT, auto=True),
        col("name", "varchar(100)"),
        col("color", "varchar(7)", null=True),
    ],
    # id and teamlead appended by Version20210802174318
    "users_teams": [
        col("user_id", INT),
        col("team_id", INT),
        col("id", INT, auto=True),
        col("teamlead", TINY, default="0"),
    ],
    # Version20180701120000; user_id is nullable in the database
    "user_preferences": [
        col("id", INT, auto=True),
        col("user_id", INT, null=True),
        col("name", "varchar(50)"),
        col("value", "varchar(255)", null=True),
    ],
    # Version20190321181243, value made TEXT by Version20220404150236
    "configuration": [
        col("id", INT, auto=True),
        col("name", "varchar(100)"),
        col("value", "text", null=True),
    ],
}

# (column list, unique); PRIMARY included
EXPECTED_INDEXES = {
    "timesheet": {
        (("id",), True),
        (("user",), False),
        (("activity_id",), False),
        (("project_id",), False),
        (("user", "start_time"), False),
        (("start_time",), False),
        (("start_time", "end_time"), False),
        (("start_time", "end_time", "user"), False),
        (("date_tz", "user"), False),
        (("end_time", "user"), False),
        (("end_time", "user", "start_time"), False),
        (("user", "project_id", "activity_id"), False),
        (("user", "id", "duration"), False),
    },
    "timesheet_tags": {
        (("timesheet_id", "tag_id"), True),
        (("timesheet_id",), False),
        (("tag_id",), False),
    },
    "tags": {(("id",), True), (("name",), True), (("visible",), False)},
    "projects": {
        (("id",), True),
        (("customer_id",), False),
        (("customer_id", "visible", "name"), False),
        (("customer_id", "visible", "id"), False),
    },
    "activities": {
        (("id",), True),
        (("project_id",), False),
        (("visible", "project_id"), False),
        (("visible", "project_id", "name"), False),
        (("visible", "name"), False),
    },
    "customers": {(("id",), True), (("visible",), False), (("invoice_template_id",), False)},
    "users": {
        (("id",), True),
        (("username",), True),
        (("email",), True),
        (("confirmation_token",), True),
        (("supervisor_id",), False),
    },
    "teams": {(("id",), True), (("name",), True)},
    # both one-column FK indexes of the first primary key (user_id, team_id) remain
    "users_teams": {
        (("id",), True),
        (("user_id", "team_id"), True),
        (("user_id",), False),
        (("team_id",), False),
    },
    "user_preferences": {(("id",), True), (("user_id", "name"), True), (("user_id",), False)},
    "configuration": {(("id",), True), (("name",), True)},
}

# Kimai's literal key names with the default prefix, for the tables added with teams
EXPECTED_KEY_NAMES = {
    "teams": {"PRIMARY": ("id",), "UNIQ_3BEDDC7F5E237E06": ("name",)},
    "users_teams": {
        "PRIMARY": ("id",),
        "UNIQ_B5E92CF8A76ED395296CD8AE": ("user_id", "team_id"),
        "IDX_B5E92CF8A76ED395": ("user_id",),
        "IDX_B5E92CF8296CD8AE": ("team_id",),
        "FK_B5E92CF8A76ED395": ("user_id",),
        "FK_B5E92CF8296CD8AE": ("team_id",),
    },
    "user_preferences": {
        "PRIMARY": ("id",),
        "UNIQ_8D08F631A76ED3955E237E06": ("user_id", "name"),
        "IDX_8D08F631A76ED395": ("user_id",),
        "FK_8D08F631A76ED395": ("user_id",),
    },
    "configuration": {"PRIMARY": ("id",), "UNIQ_1C5D63D85E237E06": ("name",)},
}

# (table, column, referenced table, referenced column, ON DELETE); the invoice template FK
# of customers is deliberately absent
EXPECTED_FKS = {
    ("timesheet", "user", "users", "id", "CASCADE"),
    ("timesheet", "activity_id", "activities", "id", "CASCADE"),
    ("timesheet", "project_id", "projects", "id", "CASCADE"),
    ("timesheet_tags", "timesheet_id", "timesheet", "id", "CASCADE"),
    ("timesheet_tags", "tag_id", "tags", "id", "CASCADE"),
    ("projects", "customer_id", "customers", "id", "CASCADE"),
    ("activities", "project_id", "projects", "id", "CASCADE"),
    ("users", "supervisor_id", "users", "id", "SET NULL"),
    ("users_teams", "user_id", "users", "id", "CASCADE"),
    ("users_teams", "team_id", "teams", "id", "CASCADE"),
    ("user_preferences", "user_id", "users", "id", "CASCADE"),
}


def schema_of(database: str, prefix: str) -> dict[str, Any]:
    """Columns, indexes, FKs and table options of the fixture's tables, prefix stripped."""
    columns: dict[str, list[tuple[Any, ...]]] = {}
    for table in kd.TABLES:
        columns[table] = query(
            database,
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (database, prefix + table),
        )
    indexes: dict[str, set[tuple[tuple[str, ...], bool]]] = {}
    for table in kd.TABLES:
        rows = query(
            database,
            "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "GROUP BY INDEX_NAME, NON_UNIQUE",
            (database, prefix + table),
        )
        indexes[table] = {(tuple(cols.split(",")), not non_unique) for _n, non_unique, cols in rows}
    fks = {
        (t.removeprefix(prefix), c, rt.removeprefix(prefix), rc, rule)
        for t, c, rt, rc, rule in query(
            database,
            "SELECT k.TABLE_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, "
            "k.REFERENCED_COLUMN_NAME, r.DELETE_RULE "
            "FROM information_schema.KEY_COLUMN_USAGE k "
            "JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
            "ON r.CONSTRAINT_SCHEMA = k.TABLE_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
            "AND r.TABLE_NAME = k.TABLE_NAME "
            "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL "
            "AND k.TABLE_NAME LIKE %s",
            (database, prefix.replace("_", "\\_") + "%"),
        )
    }
    options = {
        t.removeprefix(prefix): (engine, collation)
        for t, engine, collation in query(
            database,
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
            (database, prefix.replace("_", "\\_") + "%"),
        )
    }
    return {"columns": columns, "indexes": indexes, "fks": fks, "options": options}


def test_ddl_matches_the_spec(built: tuple[str, kd.KimaiData]) -> None:
    database, _data = built
    schema = schema_of(database, "kimai2_")
    for table, expected in EXPECTED_COLUMNS.items():
        assert schema["columns"][table] == [tuple(c) for c in expected], table
    assert schema["indexes"] == EXPECTED_INDEXES
    assert schema["fks"] == EXPECTED_FKS
    assert schema["options"] == dict.fromkeys(kd.TABLES, ("InnoDB", "utf8mb4_unicode_ci"))
    text_collations = query(
        database,
        "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND COLLATION_NAME IS NOT NULL",
        (database,),
    )
    assert text_collations == [("utf8mb4_unicode_ci",)]


def test_key_names_are_kimais(built: tuple[str, kd.KimaiData]) -> None:
    database, _data = built
    for table, expected in EXPECTED_KEY_NAMES.items():
        rows = query(
            database,
            "SELECT CONSTRAINT_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) "
            "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s GROUP BY CONSTRAINT_NAME",
            (database, f"kimai2_{table}"),
        )
        rows += query(
            database,
            "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "GROUP BY INDEX_NAME",
            (database, f"kimai2_{table}"),
        )
        assert {name: tuple(cols.split(",")) for name, cols in rows} == expected, table


def test_fast_build_equals_create_schema_then_load(database: str) -> None:
    """Deferred indexes leave the same end state; two prefixes coexist in one database."""
    data = kd.generate(seed=7, timesheets=300)
    engine = kd.connect_engine(mysql_url(database))
    try:
        with engine.connect() as conn:
            kd.create_and_load(conn, data, prefix="fast_")
            kd.create_schema(conn, prefix="slow_")
            kd.load(conn, data, prefix="slow_")
            conn.commit()
    finally:
        engine.dispose()
    # without local_infile the loader falls back to batched INSERTs
    plain = sa.create_engine(mysql_url(database) + "?charset=utf8mb4")
    try:
        with plain.connect() as conn:
            kd.create_and_load(conn, data, prefix="ins_")
            conn.commit()
    finally:
        plain.dispose()
    fast, slow = schema_of(database, "fast_"), schema_of(database, "slow_")
    assert fast == slow == schema_of(database, "ins_")
    assert fast["fks"] == EXPECTED_FKS
    for table in kd.TABLES:
        order = "id" if "id" in kd.COLUMNS[table] else "timesheet_id, tag_id"
        rows_fast = query(database, f"SELECT * FROM fast_{table} ORDER BY {order}")
        rows_slow = query(database, f"SELECT * FROM slow_{table} ORDER BY {order}")
        rows_ins = query(database, f"SELECT * FROM ins_{table} ORDER BY {order}")
        assert rows_fast == rows_slow == rows_ins == list(data.rows(table)), table


def test_build_refuses_existing_tables(built: tuple[str, kd.KimaiData]) -> None:
    database, _data = built
    with pytest.raises(RuntimeError, match="exist already"):
        kd.build_kimai(mysql_url(database), timesheets=10)


@pytest.mark.unit
def test_ddl_statements_per_dialect() -> None:
    mysql = kd.ddl("mysql", "acme_")
    assert len(mysql) == 11
    assert all("acme_" in s and "kimai2_" not in s for s in mysql)
    # with the default prefix the FK names are Kimai's own
    assert "CONSTRAINT `FK_4F60C6B18D93D649`" in kd.ddl("mysql")[5]
    # another prefix renames the FKs (unique per database), not the indexes (per table)
    assert "CONSTRAINT `FK_B5E92CF8A76ED395`" not in mysql[8]
    assert "KEY `IDX_B5E92CF8A76ED395`" in mysql[8]
    sqlite = kd.ddl("sqlite", "acme_")
    assert sum(s.startswith("CREATE TABLE") for s in sqlite) == 11
    with pytest.raises(ValueError):
        kd.ddl("mysql", "bad-prefix")


# -- generator ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_generator_is_deterministic() -> None:
    first, again = kd.generate(seed=5, timesheets=600), kd.generate(seed=5, timesheets=600)
    other = kd.generate(seed=6, timesheets=600)
    for table in kd.TABLES:
        assert list(first.rows(table)) == list(again.rows(table)), table
    assert list(first.timesheets()) != list(other.timesheets())
    assert first.users != other.users
    # nothing depends on the clock: a different "now" moves the data with it
    later = kd.generate(seed=5, timesheets=600, now=UTC_NOW + timedelta(days=30))
    assert max(r[4] for r in later.timesheets()) > max(r[4] for r in first.timesheets())
    assert all(r[4] <= UTC_NOW for r in first.timesheets())


def _amounts(data: kd.KimaiData) -> list[float]:
    """The amounts a person types: budgets, fixed prices, rates in user preferences.

    (A timesheet's hourly rate and amounts are Kimai's products of them: a weekend factor,
    a duration.)
    """
    amounts = [row[18] for row in data.customers] + [row[6] for row in data.projects]
    amounts += [row[7] for row in data.activities]
    amounts += [row[9] for row in data.timesheets() if row[9] is not None]
    amounts += [
        float(row[3])
        for row in data.user_preferences
        if row[2] in ("hourly_rate", "internal_rate") and row[3]
    ]
    return amounts


def _beyond_cents(value: float) -> bool:
    # the shortest decimal text of the double: 0.1 + 0.2 is 0.30000000000000004
    return len(repr(float(value)).split(".")[1]) > 2


def _wide_characters(text: str | None) -> bool:
    return text is not None and any(ord(ch) > 0xFFFF for ch in text)  # emoji, rare CJK


@pytest.mark.unit
def test_edge_cases_only_where_tests_ask_for_them() -> None:
    edgy = kd.generate(seed=42, timesheets=3000)
    plain = kd.generate(seed=42, timesheets=3000, edge_cases=False)
    assert edgy.edge_cases and not plain.edge_cases
    # the same rows: who booked what and when does not depend on the edge cases
    for table in kd.TABLES:
        assert len(list(edgy.rows(table))) == len(list(plain.rows(table))), table
    assert [r[:7] for r in edgy.timesheets()] == [r[:7] for r in plain.timesheets()]
    assert list(edgy.timesheet_tags()) == list(plain.timesheet_tags())

    # the tests' data: float traps, emoji names, descriptions attacking the escaping layers
    assert any(_beyond_cents(a) for a in _amounts(edgy))
    assert 0.1 + 0.2 in {row[6] for row in edgy.projects} | {row[9] for row in edgy.timesheets()}
    assert any(_wide_characters(row[1]) for row in edgy.tags)
    described = {row[7] for row in edgy.timesheets()}
    assert "'; DROP TABLE kimai2_timesheet; --" in described and "x" * 40_000 in described

    # the demo's: amounts in cents, names without emoji, ordinary descriptions
    assert not [a for a in _amounts(plain) if _beyond_cents(a)]
    names = [r[4] for r in plain.users] + [r[2] for r in plain.activities]
    names += [r[1] for r in plain.tags] + [r[1] for r in plain.customers]
    assert not [n for n in names if _wide_characters(n)]
    hostile = ("DROP TABLE", "\\N", "\r\n", "\t", "\\.", "𝔘")
    descriptions = [r[7] for r in plain.timesheets() if r[7]]
    assert not [d for d in descriptions if len(d) > 200 or any(h in d for h in hostile)]


@pytest.mark.unit
def test_scale() -> None:
    big = kd.scale_for(1_000_000)
    assert 250 <= big.users <= 350
    assert 200 <= big.customers <= 600
    assert 1800 <= big.projects <= 2200
    assert 4500 <= big.activities <= 5500
    small = kd.scale_for(2000)
    assert small.users < big.users and small.projects < big.projects
    assert len(list(kd.generate(timesheets=0).timesheets())) == 0


def test_loaded_rows_equal_generated_rows(built: tuple[str, kd.KimaiData]) -> None:
    """LOAD DATA keeps every value exact: escapes, 4-byte UTF-8, doubles, NULL vs '\\N'."""
    database, data = built
    for table in kd.TABLES:
        order = "id" if "id" in kd.COLUMNS[table] else "timesheet_id, tag_id"
        cols = ", ".join(f"`{c}`" for c in kd.COLUMNS[table])
        loaded = query(database, f"SELECT {cols} FROM kimai2_{table} ORDER BY {order}")
        assert loaded == list(data.rows(table)), table


def test_parallel_chunked_load(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer-process path of big builds, made to kick in at a small size."""
    monkeypatch.setattr(kd, "_CHUNK_ROWS", 150)
    summary = kd.build_kimai(mysql_url(database), seed=3, timesheets=700)
    data = kd.generate(seed=3, timesheets=700)
    assert summary.rows["timesheet"] == 700
    assert summary.rows["timesheet_tags"] == sum(1 for _ in data.timesheet_tags())
    loaded = query(database, "SELECT * FROM kimai2_timesheet ORDER BY id")
    assert loaded == list(data.timesheets())


def local_day(start: datetime, zone: str) -> date:
    return start.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()


def offset(moment: datetime, zone: str) -> timedelta | None:
    return moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).utcoffset()


def test_timesheets_are_realistic(built: tuple[str, kd.KimaiData]) -> None:
    database, data = built
    ts = [dict(zip(kd.COLUMNS["timesheet"], r, strict=True)) for r in data.timesheets()]
    activities = {a[0]: a[1] for a in data.activities}
    stopped = [t for t in ts if t["end_time"] is not None]
    running = [t for t in ts if t["end_time"] is None]
    texts = [t["description"] for t in ts if t["description"]]

    assert all(t["date_tz"] == local_day(t["start_time"], t["timezone"]) for t in ts)
    assert sum(t["date_tz"] != t["start_time"].date() for t in ts) > 0
    assert len({t["timezone"] for t in ts}) >= 5
    assert {"Europe/Berlin", "America/New_York", "Asia/Singapore", "Australia/Sydney", "UTC"} <= {
        t["timezone"] for t in ts
    }
    # right at a DST change, and spanning one
    at_change = [
        t
        for t in ts
        if offset(t["start_time"], t["timezone"])
        != offset(t["start_time"] - timedelta(seconds=1), t["timezone"])
    ]
    assert at_change
    assert any(offset(t["start_time"], t["timezone"]) != offset(t["end_time"], t["timezone"])
               for t in stopped)  # fmt: skip

    legacy = [t for t in ts if t["modified_at"] is None]
    assert legacy and all(t["start_time"] < datetime(2020, 8, 1) for t in legacy)
    assert any(t["break"] is None for t in ts) and any(t["break"] == 0 for t in ts)
    assert any(t["internal_rate"] is None for t in ts)

    assert 2 <= len(running) <= len(data.users)
    assert len({t["user"] for t in running}) == len(running)
    for t in running:
        assert (t["duration"], t["rate"], t["internal_rate"]) == (0, 0.0, 0.0)
        assert t["hourly_rate"] is None and t["fixed_rate"] is None
        assert t["modified_at"] is not None and t["start_time"] <= UTC_NOW

    fixed = [t for t in stopped if t["fixed_rate"] is not None]
    assert fixed
    assert all(t["hourly_rate"] is None and t["rate"] == t["fixed_rate"] for t in fixed)
    hourly = [t for t in stopped if t["hourly_rate"] is not None]
    for t in hourly:
        exact = t["hourly_rate"] * t["duration"] / 3600
        assert abs(t["rate"] - exact) <= 0.00005 + 1e-9 and round(t["rate"], 4) == t["rate"]
    for t in stopped:
        span = (t["end_time"] - t["start_time"]).total_seconds()
        assert t["duration"] == span - (t["break"] or 0)
        assert t["end_time"] <= UTC_NOW
        assert t["modified_at"] is None or t["modified_at"] >= t["start_time"]
    # doubles that need all 17 significant digits to round-trip
    assert any(len(repr(t["hourly_rate"])) >= 17 for t in hourly)

    assert any(t["billable"] == 0 for t in ts) and any(t["billable"] == 1 for t in ts)
    assert 0 < sum(t["exported"] for t in ts) < len(ts)
    assert Counter(t["category"] for t in ts)["work"] >= 0.98 * len(ts)
    assert all(activities[t["activity_id"]] in (None, t["project_id"]) for t in ts)
    assert any(activities[t["activity_id"]] is None for t in ts)
    assert any(activities[t["activity_id"]] is not None for t in ts)

    assert any(t["description"] is None for t in ts)
    assert any(t["description"] == "" for t in ts)
    assert any(any(ord(ch) > 0xFFFF for ch in s) for s in texts)
    for needle in ("\n", "\r\n", "\t", "\\", '"', "'", "\\N"):
        assert any(needle in s for s in texts), needle
    assert any(len(s) > 10_000 for s in texts)
    # the database holds the longest one completely
    longest = query(database, "SELECT MAX(CHAR_LENGTH(description)) FROM kimai2_timesheet")
    assert longest[0][0] == max(len(s) for s in texts)

    tag_counts = Counter(p[0] for p in data.timesheet_tags())
    assert max(tag_counts.values()) <= 3
    assert 0.5 < len(tag_counts) / len(ts) < 0.95


def test_master_data_is_realistic(built: tuple[str, kd.KimaiData]) -> None:
    _database, data = built
    customers = list(data.dicts("customers"))
    projects = list(data.dicts("projects"))
    users = list(data.dicts("users"))
    tags = list(data.dicts("tags"))
    assert {"EUR", "USD", "GBP", "SGD"} <= {c["currency"] for c in customers}
    assert len({c["timezone"] for c in customers}) >= 5
    assert len({c["language"] for c in customers}) >= 2
    assert any(c["visible"] == 0 for c in customers)
    assert any(c["billable"] == 0 for c in customers)
    assert any(p["budget"] > 0 for p in projects) and any(p["budget"] == 0 for p in projects)
    assert any(p["time_budget"] > 0 for p in projects)
    assert any(p["time_budget"] == 0 for p in projects)
    assert {p["budget_type"] for p in projects} == {None, "month"}
    assert any(p["visible"] == 0 for p in projects)
    assert any(p["billable"] == 0 for p in projects)
    assert any(p["created_at"] is None for p in projects)
    assert any(p["created_at"] is not None for p in projects)
    assert any(a[1] is None for a in data.activities) and any(a[1] for a in data.activities)
    assert any(t["visible"] == 0 for t in tags) and any(t["color"] for t in tags)

    role = re.compile(r'^a:(\d+):\{(i:\d+;s:\d+:"ROLE_[A-Z_]+";)*\}$')
    assert all(role.match(u["roles"]) for u in users)
    assert {"a:0:{}", 'a:1:{i:0;s:10:"ROLE_ADMIN";}'} <= {u["roles"] for u in users}
    assert all(kd.SECRET_MARKER in u["password"] for u in users)
    for name in ("api_token", "totp_secret", "confirmation_token"):
        values = [u[name] for u in users if u[name] is not None]
        assert values and all(kd.SECRET_MARKER in v for v in values), name
    for name in ("password_requested_at", "signature_date"):
        values = [u[name] for u in users if u[name] is not None]
        assert values and all(str(v).endswith(kd.SECRET_TIME_SUFFIX) for v in values), name
    assert any(u["alias"] is None for u in users)
    assert any(u["enabled"] == 0 for u in users)
    assert sum(u["system_account"] for u in users) == 1
    ids = {u["id"] for u in users}
    supervised = [u for u in users if u["supervisor_id"] is not None]
    assert supervised and all(u["supervisor_id"] in ids for u in supervised)


def preferences_by_user(data: kd.KimaiData) -> dict[int, dict[str, str | None]]:
    found: dict[int, dict[str, str | None]] = {}
    for row in data.dicts("user_preferences"):
        found.setdefault(row["user_id"], {})[row["name"]] = row["value"]
    return found


def people_of(data: kd.KimaiData) -> list[dict[str, Any]]:
    """The users who are not the system account."""
    return [u for u in data.dicts("users") if not u["system_account"]]


def test_teams_are_realistic(built: tuple[str, kd.KimaiData]) -> None:
    _database, data = built
    teams = list(data.dicts("teams"))
    members = list(data.dicts("users_teams"))
    users = {u["id"]: u for u in data.dicts("users")}
    people = people_of(data)
    assert max(2, len(people) // 8) <= len(teams) <= len(people) // 5 + 1
    assert len({t["name"].casefold() for t in teams}) == len(teams)
    assert all(2 <= len(t["name"]) <= 100 and not set('<>"=') & set(t["name"]) for t in teams)
    colors = [t["color"] for t in teams]
    assert None in colors and all(re.match(r"^#[0-9a-f]{6}$", c) for c in colors if c)

    # ids in insertion order; a team is created together with a teamlead, so its first
    # membership is a teamlead's and teams appear in the order of their first memberships
    assert [m["id"] for m in members] == list(range(1, len(members) + 1))
    first = {}
    for m in members:
        first.setdefault(m["team_id"], m)
    assert list(first) == [t["id"] for t in teams]
    assert all(m["teamlead"] == 1 for m in first.values())
    assert len({(m["user_id"], m["team_id"]) for m in members}) == len(members)
    leads = Counter(m["team_id"] for m in members if m["teamlead"])
    assert set(leads) == {t["id"] for t in teams} and set(leads.values()) <= {1, 2}
    assert all(users[m["user_id"]]["enabled"] for m in members if m["teamlead"])
    assert all(not users[m["user_id"]]["system_account"] for m in members)

    per_person = Counter(m["user_id"] for m in members)
    counts = Counter(per_person.get(u["id"], 0) for u in people)
    assert counts[1] > len(people) / 2  # most people are in one team
    assert counts[0] >= 1 and counts[2] >= 1


@pytest.mark.unit
@pytest.mark.parametrize(("seed", "timesheets"), [(7, 20_000), (42, 1_000_000)])
def test_teams_and_preferences_scale(seed: int, timesheets: int) -> None:
    data = kd.generate(seed=seed, timesheets=timesheets)  # timesheets are not generated here
    people = people_of(data)
    assert len(people) // 8 <= len(data.teams) <= len(people) // 5 + 1
    per_person = Counter(m[0] for m in data.users_teams)
    counts = Counter(per_person.get(u["id"], 0) for u in people)
    assert 0.08 <= counts[2] / len(people) <= 0.25
    assert 1 <= counts[0] <= 0.1 * len(people)
    prefs = preferences_by_user(data)
    weekday = Counter(prefs.get(u["id"], {}).get("first_weekday") for u in people)
    assert 0.05 <= weekday["sunday"] / len(people) <= 0.2
    assert weekday["monday"] > 0 and weekday[None] > 0
    contract = Counter(prefs.get(u["id"], {}).get("work_contract_type") for u in people)
    assert 0.35 <= contract["day"] / len(people) <= 0.7
    assert contract["none"] > 0 and contract[None] > 0
    assert 0 < sum("timezone" not in prefs.get(u["id"], {}) for u in people) <= 0.15 * len(people)


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PHP_NUMBER = re.compile(r"^-?\d+(\.\d*[1-9])?$")  # PHP drops a zero fraction: 25.0 -> "25"


def significant_digits(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0")


def test_preferences_are_realistic(built: tuple[str, kd.KimaiData]) -> None:
    _database, data = built
    rows = list(data.dicts("user_preferences"))
    users = {u["id"]: u for u in data.dicts("users")}
    people = people_of(data)
    prefs = preferences_by_user(data)
    assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    assert len({(r["user_id"], r["name"]) for r in rows}) == len(rows)
    assert set(prefs) == set(users)  # everyone has some
    assert all(re.match(r"^[a-z_]{2,50}$", r["name"]) for r in rows)  # sanitised names
    assert all(r["value"] is None or len(r["value"]) <= 255 for r in rows)

    sheets = [dict(zip(kd.COLUMNS["timesheet"], t, strict=True)) for t in data.timesheets()]
    by_user: dict[int, list[dict[str, Any]]] = {}
    for t in sheets:
        by_user.setdefault(t["user"], []).append(t)

    # the zone a person's timesheets are mostly recorded in; a few people have none set
    zoned = [u for u in people if "timezone" in prefs[u["id"]]]
    assert 1 <= len(people) - len(zoned) <= 0.25 * len(people)
    for u in zoned:
        own = by_user.get(u["id"], [])
        if len(own) >= 20:
            usual = Counter(t["timezone"] for t in own).most_common(1)[0][0]
            assert prefs[u["id"]]["timezone"] == usual, u["id"]
    assert all(ZoneInfo(p["timezone"]) for p in prefs.values() if "timezone" in p)

    weekday = Counter(prefs[u["id"]].get("first_weekday") for u in people)
    assert set(weekday) == {"monday", "sunday", None}

    # rates as PHP casts a float: at most 14 significant digits, no zero fraction; they are
    # the rates the person's timesheets were computed with (hourly, or 1.5x on weekends)
    rated = [u for u in people if "hourly_rate" in prefs[u["id"]]]
    assert rated
    for u in rated:
        mine = prefs[u["id"]]
        for name in ("hourly_rate", "internal_rate"):
            value = mine[name]
            assert value is None or (PHP_NUMBER.match(value) and significant_digits(value) <= 14)
        rate = float(mine["hourly_rate"] or "nan")
        hourly = [t["hourly_rate"] for t in by_user.get(u["id"], []) if t["hourly_rate"]]
        if len(hourly) >= 20:
            assert any(math.isclose(h, f * rate, rel_tol=1e-13) for h in hourly for f in (1, 1.5))
    internal = [prefs[u["id"]]["internal_rate"] for u in rated]
    assert None in internal and any(v is not None for v in internal)
    assert "hourly_rate" not in prefs[next(u["id"] for u in users.values() if u["system_account"])]

    # working-time contracts
    kinds = Counter(prefs[u["id"]].get("work_contract_type") for u in people)
    assert set(kinds) == {"day", "none", None}
    assert 0.3 <= kinds["day"] / len(people) <= 0.75
    without = [u for u in people if prefs[u["id"]].get("work_contract_type") is None]
    assert all(not any(n.startswith("work_") for n in prefs[u["id"]]) for u in without)
    days = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    day_people = [u for u in people if prefs[u["id"]].get("work_contract_type") == "day"]
    weeks, weekend_rows, holidays = [], [], []
    for u in day_people:
        mine = prefs[u["id"]]
        week = [int(mine[f"work_{d}"]) for d in days]  # digits only
        assert all(0 <= s <= 86_400 for s in week) and sum(week) > 0
        weeks.append(week)
        weekend = [mine.get("work_saturday"), mine.get("work_sunday")]
        assert weekend in (["0", "0"], [None, None])
        weekend_rows.append(weekend[0] is not None)
        assert re.match(r"^\d+(\.5)?$", mine["holidays"]) and 5 <= float(mine["holidays"]) <= 35
        holidays.append(mine["holidays"])
        assert mine.get("public_holiday_group") is None  # NULL (or absent) in core Kimai
    assert [28800] * 5 in weeks and any(sum(w) < 5 * 28800 for w in weeks)
    assert set(weekend_rows) == {True, False}
    assert any(h.endswith(".5") for h in holidays)
    holiday_groups = ["public_holiday_group" in prefs[u["id"]] for u in day_people]
    assert set(holiday_groups) == {True, False}

    started = [u for u in day_people if prefs[u["id"]].get("work_start_day")]
    assert started
    for u in started:
        start = prefs[u["id"]]["work_start_day"]
        assert DATE.match(start)
        own = by_user.get(u["id"], [])
        if own:  # the contract starts before or at the first booking
            assert date.fromisoformat(start) <= min(t["start_time"] for t in own).date()
    leavers = [u for u in people if not u["enabled"]]
    ended = [u for u in people if prefs[u["id"]].get("work_last_day")]
    assert ended and all(not u["enabled"] for u in ended)
    for u in leavers:
        if prefs[u["id"]].get("work_contract_type") == "day":
            last = prefs[u["id"]]["work_last_day"]
            assert DATE.match(last)
            own = by_user.get(u["id"], [])
            assert all(t["start_time"].date() <= date.fromisoformat(last) for t in own)
            assert (prefs[u["id"]].get("work_start_day") or "") <= last
    none_people = [u for u in people if prefs[u["id"]].get("work_contract_type") == "none"]
    assert none_people


SECRET_NAME = re.compile(r"password|private|api_key|token|secret", re.IGNORECASE)
# settings that Kimai's settings screen saves (SystemConfigurationController)
KIMAI_SETTINGS = {
    "timesheet.mode", "timesheet.rules.allow_future_times", "timesheet.time_increment",
    "timesheet.rules.lockdown_period_start", "defaults.customer.timezone",
    "defaults.customer.country", "defaults.customer.currency", "theme.branding.company",
    "theme.color_choices", "user.wizard", "defaults.customer.language",
}  # fmt: skip


def test_configuration_is_realistic(built: tuple[str, kd.KimaiData]) -> None:
    _database, data = built
    rows = list(data.dicts("configuration"))
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len({r["name"] for r in rows}) == len(rows)
    settings = {r["name"]: r["value"] for r in rows}
    year = settings["company.financial_year"]
    assert DATE.match(year) and date.fromisoformat(year).month != 1
    assert len(KIMAI_SETTINGS & set(settings)) >= 8
    assert settings["timesheet.rules.allow_future_times"] in ("0", "1")
    assert None in settings.values()  # a section saved with an empty field
    assert max(len(v) for v in settings.values() if v) > 1024  # needs the TEXT column
    secrets = {n for n, v in settings.items() if v and kd.SECRET_MARKER in v}
    assert len(secrets) >= 2
    assert secrets == {n for n in settings if SECRET_NAME.search(n)}


# -- SQLite -----------------------------------------------------------------------------------


@pytest.mark.unit
def test_sqlite_build_and_cascades(tmp_path: Any) -> None:
    path = tmp_path / "kimai.sqlite"
    summary = kd.build_kimai(f"sqlite:///{path}", seed=11, timesheets=400, prefix="kx_")
    data = kd.generate(seed=11, timesheets=400)
    assert summary.rows["timesheet"] == 400
    engine = kd.connect_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            info = conn.exec_driver_sql('PRAGMA table_info("kx_timesheet")').fetchall()
            assert [r[1] for r in info] == list(kd.COLUMNS["timesheet"])
            assert {r[1]: r[2] for r in info}["start_time"] == "DATETIME"
            assert {r[1]: r[2] for r in info}["billable"] == "TINYINT(1)"
            rows = conn.exec_driver_sql("SELECT * FROM kx_timesheet ORDER BY id").fetchall()
            expected = [
                tuple(str(v) if isinstance(v, date) else v for v in r) for r in data.timesheets()
            ]
            assert [tuple(r) for r in rows] == expected
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            cascade_counts = customer_counts(conn, "kx_", 1)
            assert all(n > 0 for n in cascade_counts.values())
            assert ka.delete_customer(conn, 1, prefix="kx_")
            assert customer_counts(conn, "kx_", 1) == dict.fromkeys(cascade_counts, 0)
    finally:
        engine.dispose()


def sqlite_schema(conn: sa.Connection, prefix: str) -> dict[str, Any]:
    """Columns, indexes and FKs of the SQLite tables in the shape of the MariaDB checks."""
    columns, indexes, fks = {}, {}, set()
    for table in kd.TABLES:
        name = prefix + table
        info = conn.exec_driver_sql(f'PRAGMA table_info("{name}")').fetchall()
        columns[table] = [(r[1], bool(r[3]) or r[5] == 1, r[4]) for r in info]
        found = {(("id",), True)} if "id" in kd.COLUMNS[table] else set()  # rowid alias
        for index in conn.exec_driver_sql(f'PRAGMA index_list("{name}")').fetchall():
            cols = conn.exec_driver_sql(f'PRAGMA index_info("{index[1]}")').fetchall()
            found.add((tuple(c[2] for c in sorted(cols)), bool(index[2])))
        indexes[table] = found
        for fk in conn.exec_driver_sql(f'PRAGMA foreign_key_list("{name}")').fetchall():
            fks.add((table, fk[3], fk[2].removeprefix(prefix), fk[4], fk[6]))
    return {"columns": columns, "indexes": indexes, "fks": fks}


@pytest.mark.unit
def test_sqlite_schema_matches_the_spec(tmp_path: Any) -> None:
    engine = kd.connect_engine(f"sqlite:///{tmp_path / 'schema.sqlite'}")
    try:
        with engine.connect() as conn:
            kd.create_schema(conn, prefix="kx_")
            conn.commit()
            schema = sqlite_schema(conn, "kx_")
            kd.drop_schema(conn, prefix="kx_")
            conn.commit()
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    sqlite_defaults = {None: None, "NULL": "NULL"}
    for table, expected in EXPECTED_COLUMNS.items():
        wanted = [
            (name, null == "NO", sqlite_defaults.get(default, default))
            for name, _type, null, default, _extra in expected
        ]
        assert schema["columns"][table] == wanted, table
    assert schema["indexes"] == EXPECTED_INDEXES
    assert schema["fks"] == EXPECTED_FKS


# -- actions (MariaDB and SQLite) ---------------------------------------------------------------


@pytest.fixture(params=["mysql", pytest.param("sqlite", marks=pytest.mark.unit)])
def kimai(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[sa.Connection, str]]:
    """A connection to a fresh small Kimai (300 timesheets) and its table prefix."""
    if request.param == "mysql":
        name = new_database()
        url, prefix = mysql_url(name), "kimai2_"
    else:
        name, url, prefix = "", f"sqlite:///{tmp_path / 'kimai.sqlite'}", "kx_"
    try:
        kd.build_kimai(url, seed=21, timesheets=300, prefix=prefix)
        engine = kd.connect_engine(url)
        try:
            with engine.connect() as conn:
                yield conn, prefix
        finally:
            engine.dispose()
    finally:
        if name:
            drop_database(name)


def fetch(conn: sa.Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    rows = [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    conn.commit()
    for row in rows:
        for key in ("start_time", "end_time", "modified_at", "created_at", "last_login"):
            if isinstance(row.get(key), str):
                row[key] = datetime.fromisoformat(row[key])
        if isinstance(row.get("date_tz"), str):
            row["date_tz"] = date.fromisoformat(row["date_tz"])
    return rows


def timesheet(conn: sa.Connection, prefix: str, ts_id: int) -> dict[str, Any]:
    return fetch(conn, f"SELECT * FROM {prefix}timesheet WHERE id = :id", id=ts_id)[0]


def modified_snapshot(conn: sa.Connection, prefix: str) -> dict[int, Any]:
    rows = fetch(conn, f"SELECT id, modified_at FROM {prefix}timesheet")
    return {r["id"]: r["modified_at"] for r in rows}


def customer_counts(conn: sa.Connection, prefix: str, customer_id: int) -> dict[str, int]:
    projects = f"SELECT id FROM {prefix}projects WHERE customer_id = {customer_id}"
    sheets = f"SELECT id FROM {prefix}timesheet WHERE project_id IN ({projects})"
    sqls = {
        "projects": f"SELECT COUNT(*) FROM {prefix}projects WHERE customer_id = {customer_id}",
        "activities": f"SELECT COUNT(*) FROM {prefix}activities WHERE project_id IN ({projects})",
        "timesheets": f"SELECT COUNT(*) FROM ({sheets}) s",
        "pairs": f"SELECT COUNT(*) FROM {prefix}timesheet_tags WHERE timesheet_id IN ({sheets})",
    }
    counts = {k: conn.exec_driver_sql(v).scalar() for k, v in sqls.items()}
    conn.commit()
    return counts


def plain_stopped_timesheet(conn: sa.Connection, prefix: str) -> dict[str, Any]:
    """A stopped, whole-minute, post-2.23 record that Kimai's calculators leave unchanged."""
    rows = fetch(
        conn,
        f"SELECT * FROM {prefix}timesheet WHERE end_time IS NOT NULL "
        "AND modified_at IS NOT NULL AND break IS NOT NULL AND internal_rate IS NOT NULL "
        "AND hourly_rate IS NOT NULL AND exported = 0 ORDER BY id",
    )
    return next(r for r in rows if r["start_time"].second == 0 and r["end_time"].second == 0)


T1 = UTC_NOW + timedelta(minutes=5)


def test_orm_saves_bump_modified_at(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    row = plain_stopped_timesheet(conn, prefix)
    ts_id = row["id"]

    assert ka.update_timesheet(conn, ts_id, description="edited ✏️", now=T1, prefix=prefix)
    after = timesheet(conn, prefix, ts_id)
    assert after == {**row, "description": "edited ✏️", "modified_at": T1}
    # the same value again is no change: Doctrine writes nothing, no bump
    assert not ka.update_timesheet(
        conn, ts_id, description="edited ✏️", now=T1 + timedelta(1), prefix=prefix
    )
    assert timesheet(conn, prefix, ts_id)["modified_at"] == T1

    # new times: rounding to the minute, duration, date_tz in the record's zone, rates
    start = datetime(2026, 3, 28, 22, 10, 42)
    end = datetime(2026, 3, 29, 1, 40, 5)
    t2 = T1 + timedelta(minutes=1)
    ka.update_timesheet(
        conn, ts_id, start=start, end=end, timezone="Europe/Berlin", now=t2, prefix=prefix
    )
    moved = timesheet(conn, prefix, ts_id)
    assert moved["start_time"] == datetime(2026, 3, 28, 22, 10)
    assert moved["end_time"] == datetime(2026, 3, 29, 1, 41)
    assert moved["duration"] == 3 * 3600 + 31 * 60 - moved["break"]
    assert moved["date_tz"] == date(2026, 3, 28)  # 23:10 CET
    assert moved["rate"] == round(row["hourly_rate"] * moved["duration"] / 3600, 4)
    assert moved["modified_at"] == t2

    # tags through the ORM: pair change plus bump; a no-op does not bump
    tag_id = fetch(conn, f"SELECT id FROM {prefix}tags ORDER BY id")[-1]["id"]
    t3 = t2 + timedelta(minutes=1)
    ka.remove_tag(conn, ts_id, tag_id, now=t2, prefix=prefix)  # may or may not be tagged
    assert ka.add_tag(conn, ts_id, tag_id, now=t3, prefix=prefix)
    assert timesheet(conn, prefix, ts_id)["modified_at"] == t3
    assert not ka.add_tag(conn, ts_id, tag_id, now=t3 + timedelta(1), prefix=prefix)
    assert timesheet(conn, prefix, ts_id)["modified_at"] == t3
    t4 = t3 + timedelta(minutes=1)
    assert ka.remove_tag(conn, ts_id, tag_id, now=t4, prefix=prefix)
    pairs = fetch(conn, f"SELECT * FROM {prefix}timesheet_tags WHERE timesheet_id = :id", id=ts_id)
    assert tag_id not in {p["tag_id"] for p in pairs}
    assert timesheet(conn, prefix, ts_id)["modified_at"] == t4

    # a legacy record (modified_at NULL) gets its first stamp from a tag change
    legacy = fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE modified_at IS NULL")[0]["id"]
    assert ka.add_tag(conn, legacy, tag_id, now=t4, prefix=prefix)
    assert timesheet(conn, prefix, legacy)["modified_at"] == t4


def test_timer_start_and_stop(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    activity = fetch(conn, f"SELECT id FROM {prefix}activities WHERE project_id IS NULL")[0]
    started = UTC_NOW + timedelta(minutes=3, seconds=17)
    ts_id = ka.insert_timesheet(
        conn,
        user=1,
        project_id=1,
        activity_id=activity["id"],
        start=started.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Singapore")),
        timezone="Asia/Singapore",
        description="timer 🚀",
        tags=[1, 2],
        now=started,
        prefix=prefix,
    )
    row = timesheet(conn, prefix, ts_id)
    assert row["start_time"] == started  # no rounding while running
    assert row["end_time"] is None
    assert (row["duration"], row["rate"], row["internal_rate"]) == (0, 0.0, 0.0)
    assert row["hourly_rate"] is None and row["fixed_rate"] is None
    assert row["modified_at"] == started and row["break"] == 0 and row["exported"] == 0
    assert row["date_tz"] == local_day(started, "Asia/Singapore")

    stopped_at = started + timedelta(hours=1, minutes=30, seconds=5)
    assert ka.stop_timer(conn, ts_id, now=stopped_at, hourly_rate=120.0, prefix=prefix)
    row = timesheet(conn, prefix, ts_id)
    assert row["start_time"] == started.replace(second=0)
    assert row["end_time"] == (stopped_at + timedelta(minutes=1)).replace(second=0)
    assert row["duration"] == 91 * 60  # 12:03 to 13:34
    assert row["hourly_rate"] == 120.0 and row["rate"] == 182.0
    assert row["internal_rate"] == 182.0
    assert row["modified_at"] == stopped_at
    assert not ka.stop_timer(conn, ts_id, now=stopped_at + timedelta(1), prefix=prefix)

    fixed_id = ka.insert_timesheet(
        conn,
        user=1,
        project_id=1,
        activity_id=activity["id"],
        start=datetime(2026, 11, 19, 9, 0),
        end=datetime(2026, 11, 19, 10, 0),
        fixed_rate=250.0,
        billable=False,
        now=UTC_NOW,
        prefix=prefix,
    )
    fixed = timesheet(conn, prefix, fixed_id)
    assert (fixed["rate"], fixed["fixed_rate"], fixed["hourly_rate"]) == (250.0, 250.0, None)
    assert fixed["billable"] == 0 and fixed["duration"] == 3600


def test_bulk_paths_do_not_bump(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    before = modified_snapshot(conn, prefix)
    open_rows = fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE exported = 0 ORDER BY id")
    ids = [r["id"] for r in open_rows[:5]]
    assert ka.mark_exported(conn, ids, prefix=prefix) == 5
    assert all(timesheet(conn, prefix, i)["exported"] == 1 for i in ids)

    assert ka.raw_sql_set_description(conn, ids[0], "raw\tedit", prefix=prefix)
    assert timesheet(conn, prefix, ids[0])["description"] == "raw\tedit"

    tag = fetch(
        conn,
        f"SELECT tag_id, COUNT(*) AS n FROM {prefix}timesheet_tags GROUP BY tag_id "
        "ORDER BY n DESC, tag_id",
    )[0]
    ka.rename_tag(conn, tag["tag_id"], "renamed", prefix=prefix)
    assert ka.delete_tag(conn, tag["tag_id"], prefix=prefix)
    left = fetch(conn, f"SELECT * FROM {prefix}timesheet_tags WHERE tag_id = :t", t=tag["tag_id"])
    assert left == []

    project = fetch(conn, f"SELECT * FROM {prefix}projects WHERE created_at IS NULL")[0]
    ka.rename_project(conn, project["id"], "Renamed project", prefix=prefix)
    renamed = fetch(conn, f"SELECT * FROM {prefix}projects WHERE id = :id", id=project["id"])[0]
    assert renamed == {**project, "name": "Renamed project"}

    ka.update_last_login(conn, 1, now=T1, prefix=prefix)
    assert fetch(conn, f"SELECT last_login FROM {prefix}users WHERE id = 1")[0]["last_login"] == T1

    assert modified_snapshot(conn, prefix) == before


def test_deletes_with_replacement_move_silently(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    before = modified_snapshot(conn, prefix)

    # project: timesheets and the project's own activities move; nothing is stamped
    counts = fetch(
        conn,
        f"SELECT project_id, COUNT(*) AS n FROM {prefix}timesheet GROUP BY project_id "
        "ORDER BY n DESC, project_id",
    )
    old, new = counts[0]["project_id"], counts[1]["project_id"]
    moved = [
        r["id"] for r in fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE project_id = {old}")
    ]
    own = [
        r["id"] for r in fetch(conn, f"SELECT id FROM {prefix}activities WHERE project_id = {old}")
    ]
    assert ka.delete_project(conn, old, move_to=new, prefix=prefix)
    assert fetch(conn, f"SELECT id FROM {prefix}projects WHERE id = {old}") == []
    assert all(timesheet(conn, prefix, i)["project_id"] == new for i in moved)
    for activity_id in own:
        row = fetch(conn, f"SELECT project_id FROM {prefix}activities WHERE id = {activity_id}")
        assert row == [{"project_id": new}]

    # activity
    acts = fetch(
        conn,
        f"SELECT activity_id, COUNT(*) AS n FROM {prefix}timesheet GROUP BY activity_id "
        "ORDER BY n DESC, activity_id",
    )
    old_a, new_a = acts[0]["activity_id"], acts[1]["activity_id"]
    moved_a = [
        r["id"]
        for r in fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE activity_id = {old_a}")
    ]
    assert ka.delete_activity(conn, old_a, move_to=new_a, prefix=prefix)
    assert all(timesheet(conn, prefix, i)["activity_id"] == new_a for i in moved_a)

    # user: timesheets move, subordinates lose their supervisor (SET NULL)
    users = fetch(
        conn,
        f"SELECT user, COUNT(*) AS n FROM {prefix}timesheet GROUP BY user ORDER BY n DESC, user",
    )
    old_u, new_u = users[0]["user"], users[1]["user"]
    moved_u = [
        r["id"] for r in fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE user = {old_u}")
    ]
    sub = ka.create_user(conn, username="subordinate", supervisor_id=old_u, now=T1, prefix=prefix)
    assert ka.delete_user(conn, old_u, move_to=new_u, prefix=prefix)
    assert all(timesheet(conn, prefix, i)["user"] == new_u for i in moved_u)
    assert fetch(conn, f"SELECT supervisor_id FROM {prefix}users WHERE id = {sub}") == [
        {"supervisor_id": None}
    ]

    assert modified_snapshot(conn, prefix) == before
    with pytest.raises(ValueError):
        ka.delete_user(conn, new_u, move_to=new_u, prefix=prefix)


def test_hard_deletes_cascade(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    total = fetch(conn, f"SELECT COUNT(*) AS n FROM {prefix}timesheet")[0]["n"]
    counts = customer_counts(conn, prefix, 1)
    assert all(n > 0 for n in counts.values())
    assert ka.delete_customer(conn, 1, prefix=prefix)
    assert customer_counts(conn, prefix, 1) == dict.fromkeys(counts, 0)
    assert fetch(conn, f"SELECT COUNT(*) AS n FROM {prefix}timesheet")[0]["n"] == (
        total - counts["timesheets"]
    )

    user = fetch(conn, f"SELECT user FROM {prefix}timesheet ORDER BY id")[0]["user"]
    assert ka.delete_user(conn, user, prefix=prefix)
    assert fetch(conn, f"SELECT id FROM {prefix}timesheet WHERE user = {user}") == []

    tagged = fetch(conn, f"SELECT timesheet_id FROM {prefix}timesheet_tags ORDER BY 1")[0]
    ts_id = tagged["timesheet_id"]
    assert ka.delete_timesheet(conn, ts_id, prefix=prefix)
    assert fetch(conn, f"SELECT * FROM {prefix}timesheet_tags WHERE timesheet_id = {ts_id}") == []
    assert not ka.delete_timesheet(conn, ts_id, prefix=prefix)
    assert not ka.delete_customer(conn, 1, prefix=prefix)


@pytest.mark.unit
def test_values_are_cast_like_php() -> None:
    # what PHP 8 prints for (string) $value with the default precision of 14
    assert [
        kd.php_string(v)
        for v in (256 / 3, 25.0, 27.5, 0.1 + 0.2, 1e13, 1e14, 1e-5, -0.0, True, False, 7, "x")
    ] == [
        "85.333333333333", "25", "27.5", "0.3", "10000000000000", "1.0E+14", "1.0E-5", "-0",
        "1", "", "7", "x",
    ]  # fmt: skip
    # UserPreference::setValue: yes/no fields store 0 for false, '' and null, else 1
    assert [ka.preference_value("daily_stats", v) for v in (False, "", None, "0", 0, True)] == [
        "0", "0", "0", "1", "1", "1",
    ]  # fmt: skip
    assert ka.preference_value("daily.stats", "yes") == "1"  # the name is sanitised first
    assert [ka.preference_value("timezone", v) for v in (None, False, 2.5)] == [None, "", "2.5"]
    # Configuration::setValue: false is '0'
    assert [ka.configuration_value(v) for v in (None, False, True, 15, 2.5)] == [
        None, "0", "1", "15", "2.5",
    ]  # fmt: skip


def table_rows(
    conn: sa.Connection, prefix: str, table: str, where: str = "1 = 1", **params: Any
) -> list[dict[str, Any]]:
    return fetch(conn, f"SELECT * FROM {prefix}{table} WHERE {where} ORDER BY id", **params)


def max_id(conn: sa.Connection, prefix: str, table: str) -> int:
    return fetch(conn, f"SELECT MAX(id) AS top FROM {prefix}{table}")[0]["top"] or 0


def test_team_write_paths(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    people = fetch(conn, f"SELECT id FROM {prefix}users WHERE system_account = 0 ORDER BY id")
    lead, member, third, outsider = (p["id"] for p in people[:4])
    top = max_id(conn, prefix, "users_teams")

    def membership(team: int) -> list[tuple[int, int, int]]:
        rows = table_rows(conn, prefix, "users_teams", "team_id = :t", t=team)
        return [(r["id"], r["user_id"], r["teamlead"]) for r in rows]

    team = ka.create_team(
        conn, "Tiger Team", teamleads=[lead], members=[member, lead], color="#ff8800", prefix=prefix
    )
    assert table_rows(conn, prefix, "teams", "id = :t", t=team) == [
        {"id": team, "name": "Tiger Team", "color": "#ff8800"}
    ]
    assert membership(team) == [(top + 1, lead, 1), (top + 2, member, 0)]

    # Kimai's validation refuses these before writing anything
    teams_before = table_rows(conn, prefix, "teams")
    refused: list[dict[str, Any]] = [
        {"name": "tiger team", "teamleads": [lead]},  # the unique key ignores case
        {"name": "Leaderless", "teamleads": []},
        {"name": "a=b", "teamleads": [lead]},
        {"name": "Red", "teamleads": [lead], "color": "red"},
    ]
    for arguments in refused:
        with pytest.raises(ValueError):
            ka.create_team(conn, prefix=prefix, **arguments)
    with pytest.raises(LookupError):
        ka.create_team(conn, "Ghosts", teamleads=[999_999], prefix=prefix)
    assert table_rows(conn, prefix, "teams") == teams_before

    # a new member; the same again is no change; promoting keeps the membership's id
    assert ka.add_team_member(conn, team, third, prefix=prefix)
    assert not ka.add_team_member(conn, team, third, prefix=prefix)
    assert ka.add_team_member(conn, team, third, teamlead=True, prefix=prefix)
    assert membership(team) == [(top + 1, lead, 1), (top + 2, member, 0), (top + 3, third, 1)]

    # two teamleads: one may step down or leave, the last one may not
    assert ka.set_teamlead(conn, team, lead, False, prefix=prefix)
    assert not ka.set_teamlead(conn, team, lead, False, prefix=prefix)
    with pytest.raises(ValueError):
        ka.set_teamlead(conn, team, third, False, prefix=prefix)
    with pytest.raises(ValueError):
        ka.remove_team_member(conn, team, third, prefix=prefix)
    with pytest.raises(LookupError):
        ka.set_teamlead(conn, team, outsider, True, prefix=prefix)
    assert ka.remove_team_member(conn, team, member, prefix=prefix)
    assert not ka.remove_team_member(conn, team, member, prefix=prefix)
    assert membership(team) == [(top + 1, lead, 0), (top + 3, third, 1)]

    # deleting a team takes its memberships along, nobody else's
    others = table_rows(conn, prefix, "users_teams", "team_id <> :t", t=team)
    users_before = table_rows(conn, prefix, "users")
    assert ka.delete_team(conn, team, prefix=prefix)
    assert table_rows(conn, prefix, "teams", "id = :t", t=team) == []
    assert membership(team) == []
    assert table_rows(conn, prefix, "users_teams") == others
    assert table_rows(conn, prefix, "users") == users_before
    assert not ka.delete_team(conn, team, prefix=prefix)
    generated = others[0]["team_id"]
    assert ka.delete_team(conn, generated, prefix=prefix)
    assert membership(generated) == []


def test_user_preference_write_paths(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    uid = ka.create_user(conn, username="prefs.tester", now=T1, prefix=prefix)
    top = max_id(conn, prefix, "user_preferences")

    def stored() -> list[tuple[int, str, str | None]]:
        rows = table_rows(conn, prefix, "user_preferences", "user_id = :u", u=uid)
        return [(r["id"], r["name"], r["value"]) for r in rows]

    written = ka.set_user_preferences(
        conn,
        uid,
        {
            "timezone": "Europe/Vienna",
            "hourly_rate": 1000 / 3,  # PHP's (string) keeps 14 significant digits
            "internal_rate": None,  # a NULL value is a row too
            "work.contract-type": "day",  # dots and dashes become underscores
            "holidays": 27.5,
            "work_monday": 28800,
            "daily_stats": False,  # yes/no preferences store 0 and 1 ...
            "export_decimal": "0",  # ... and any other value than false/''/null is 1
            "favorite_routes": False,  # without a yes/no field PHP casts false to ''
        },
        prefix=prefix,
    )
    assert written == 9
    first = [
        (top + 1, "timezone", "Europe/Vienna"),
        (top + 2, "hourly_rate", "333.33333333333"),
        (top + 3, "internal_rate", None),
        (top + 4, "work_contract_type", "day"),
        (top + 5, "holidays", "27.5"),
        (top + 6, "work_monday", "28800"),
        (top + 7, "daily_stats", "0"),
        (top + 8, "export_decimal", "1"),
        (top + 9, "favorite_routes", ""),
    ]
    assert stored() == first

    # updates in place; unchanged values (NULL included) are not written
    changes = {
        "timezone": "Europe/Vienna",
        "internal_rate": None,
        "hourly_rate": 90.0,
        "work_contract_type": "none",
    }
    assert ka.set_user_preferences(conn, uid, changes, prefix=prefix) == 2
    assert stored() == [
        *first[:1],
        (top + 2, "hourly_rate", "90"),
        first[2],
        (top + 4, "work_contract_type", "none"),
        *first[4:],
    ]
    assert not ka.set_user_preference(conn, uid, "holidays", 27.5, prefix=prefix)
    assert ka.set_user_preference(conn, uid, "internal_rate", 45.5, prefix=prefix)
    assert ka.set_user_preference(conn, uid, "internal_rate", None, prefix=prefix)
    assert (top + 3, "internal_rate", None) in stored() and len(stored()) == 9
    with pytest.raises(LookupError):
        ka.set_user_preferences(conn, 999_999, {"timezone": "UTC"}, prefix=prefix)

    # behind Kimai's back
    assert ka.raw_sql_set_preference(conn, uid, "timezone", "Asia/Tokyo", prefix=prefix)
    assert stored()[0] == (top + 1, "timezone", "Asia/Tokyo")
    assert not ka.raw_sql_set_preference(conn, uid, "skin", "dark", prefix=prefix)
    assert max_id(conn, prefix, "user_preferences") == top + 9


def test_system_configuration_write_paths(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    before = {r["name"]: r for r in table_rows(conn, prefix, "configuration")}
    top = max_id(conn, prefix, "configuration")
    # the fixture's settings this test relies on
    assert before["timesheet.time_increment"]["value"] == "15"
    assert before["timesheet.rules.allow_zero_duration"]["value"] == "1"
    assert before["theme.branding.logo"]["value"] is None
    assert "calendar.weekends" not in before

    section = {
        "timesheet.mode": "duration_fixed_begin",  # update in place
        "timesheet.time_increment": 15,  # same value: not written
        "timesheet.rules.allow_zero_duration": False,  # booleans are '0'/'1'
        "theme.branding.logo": None,  # NULL deletes the existing row
        "calendar.weekends": True,  # a new row
    }
    assert ka.save_system_configuration(conn, section, prefix=prefix) == 4
    after = {r["name"]: r for r in table_rows(conn, prefix, "configuration")}
    expected = dict(before)
    del expected["theme.branding.logo"]
    expected["timesheet.mode"] = {**before["timesheet.mode"], "value": "duration_fixed_begin"}
    name = "timesheet.rules.allow_zero_duration"
    expected[name] = {**before[name], "value": "0"}
    expected["calendar.weekends"] = {"id": top + 1, "name": "calendar.weekends", "value": "1"}
    assert after == expected

    # saving the empty field again inserts a NULL row; once more deletes it again
    logo = {"theme.branding.logo": None}
    assert ka.save_system_configuration(conn, logo, prefix=prefix) == 1
    assert table_rows(conn, prefix, "configuration", "name = 'theme.branding.logo'") == [
        {"id": top + 2, "name": "theme.branding.logo", "value": None}
    ]
    assert ka.save_system_configuration(conn, logo, prefix=prefix) == 1
    assert table_rows(conn, prefix, "configuration", "name = 'theme.branding.logo'") == []
    assert ka.save_system_configuration(conn, {"calendar.weekends": 1}, prefix=prefix) == 0

    # behind Kimai's back
    name = "company.financial_year"
    assert ka.raw_sql_set_configuration(conn, name, "2021-07-01", prefix=prefix)
    assert table_rows(conn, prefix, "configuration", "name = :n", n=name) == [
        {**before[name], "value": "2021-07-01"}
    ]
    assert not ka.raw_sql_set_configuration(conn, "no.such.setting", "1", prefix=prefix)


def owned(conn: sa.Connection, prefix: str, user_id: int) -> dict[str, int]:
    counts = {}
    for table, column in (("user_preferences", "user_id"), ("users_teams", "user_id")):
        sql = f"SELECT COUNT(*) AS n FROM {prefix}{table} WHERE {column} = :u"
        counts[table] = fetch(conn, sql, u=user_id)[0]["n"]
    return counts


def test_deleting_users_and_teams_cascades(kimai: tuple[sa.Connection, str]) -> None:
    conn, prefix = kimai
    candidates = [
        r["user_id"]
        for r in fetch(
            conn,
            f"SELECT DISTINCT m.user_id FROM {prefix}users_teams m "
            f"JOIN {prefix}user_preferences p ON p.user_id = m.user_id ORDER BY m.user_id",
        )
    ]
    assert len(candidates) >= 4
    totals = {t: len(table_rows(conn, prefix, t)) for t in ("user_preferences", "users_teams")}

    # Kimai's delete, plain and with a replacement for the timesheets: preferences and
    # memberships go either way, the replacement's own stay as they were
    gone, moved, heir, raw = candidates[:4]
    heir_rows = [
        table_rows(conn, prefix, t, "user_id = :u", u=heir)
        for t in ("user_preferences", "users_teams")
    ]
    lost = {t: owned(conn, prefix, gone)[t] + owned(conn, prefix, moved)[t] for t in totals}
    assert all(n > 0 for n in lost.values())
    assert ka.delete_user(conn, gone, prefix=prefix)
    assert ka.delete_user(conn, moved, move_to=heir, prefix=prefix)
    assert owned(conn, prefix, gone) == owned(conn, prefix, moved) == dict.fromkeys(totals, 0)
    assert [
        table_rows(conn, prefix, t, "user_id = :u", u=heir)
        for t in ("user_preferences", "users_teams")
    ] == heir_rows
    assert {t: len(table_rows(conn, prefix, t)) for t in totals} == {
        t: totals[t] - lost[t] for t in totals
    }

    # a DELETE behind Kimai's back cascades just the same: it is the foreign keys
    conn.execute(sa.text(f"DELETE FROM {prefix}users WHERE id = :u"), {"u": raw})
    conn.commit()
    assert owned(conn, prefix, raw) == dict.fromkeys(totals, 0)
    team = fetch(conn, f"SELECT team_id FROM {prefix}users_teams ORDER BY id")[-1]["team_id"]
    conn.execute(sa.text(f"DELETE FROM {prefix}teams WHERE id = :t"), {"t": team})
    conn.commit()
    assert table_rows(conn, prefix, "users_teams", "team_id = :t", t=team) == []


# -- read-only login ----------------------------------------------------------------------------


def test_readonly_user_cannot_read_secrets(built: tuple[str, kd.KimaiData]) -> None:
    database, _data = built
    username, password = f"kfx_ro_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    engine = kd.connect_engine(mysql_url(database))
    try:
        with engine.connect() as conn:
            ka.create_readonly_user(conn, database, username, password)
        try:
            ro = pymysql.connect(
                host="127.0.0.1", user=username, password=password, database=database
            )
            with ro, ro.cursor() as cur:
                cur.execute("SELECT id, username, email, roles, supervisor_id FROM kimai2_users")
                assert len(cur.fetchall()) == 20
                cur.execute("SELECT COUNT(*) FROM kimai2_timesheet")
                assert cur.fetchone() == (2000,)
                # whole rows of the newer tables, secrets in configuration values included
                for table in ("teams", "users_teams", "user_preferences", "configuration"):
                    cur.execute(f"SELECT * FROM kimai2_{table} ORDER BY id")
                    everything = query(database, f"SELECT * FROM kimai2_{table} ORDER BY id")
                    assert list(cur.fetchall()) == everything and everything, table
                for secret in ("password", "api_token", "totp_secret", "signature_date", "*"):
                    with pytest.raises(pymysql.err.OperationalError):
                        cur.execute(f"SELECT {secret} FROM kimai2_users")
                with pytest.raises(pymysql.err.OperationalError):
                    cur.execute("UPDATE kimai2_timesheet SET description = 'x' WHERE id = 1")
        finally:
            with engine.connect() as conn:
                ka.drop_readonly_user(conn, username)
    finally:
        engine.dispose()
    assert query(database, "SELECT COUNT(*) FROM mysql.user WHERE User = %s", (username,)) == [(0,)]
