"""Kimai report parity: the views give the figures Kimai 2.66's own screens give.

One Kimai is written with the records that make Kimai's screens disagree with a naive
reading: records at month ends in zones east and west of the report zone, DST months, a
shift across midnight, non-billable and NULL-billable work on budgeted projects, customers
and activities, running timers, future-dated records, disabled users and a system account,
a user in two teams, a non-January financial year, a working-time contract. It is synced
and built with ATLAS_REPORT_TIMEZONE = Europe/Berlin, the reference viewer.

For each screen, the Kimai side is that screen's query on MariaDB, the way Kimai's
statistic services run it: period bounds are built in the viewer's zone in Python (as
Kimai's DateTimeFactory does) and converted to UTC (as Doctrine does). The BI side is the
query an analyst runs on the vw_* views. Money is compared to the cent Kimai shows (sums of
4-decimal rates: within 0.005), seconds exactly.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as kimai_do
from pipelines.demo import kimai_data as kd
from tests.conftest import MARIADB, POSTGRES, kimai_query, kimai_url, pg_query, run_cli
from tests.stack import ANALYTICS, OVERLAY, admin, create_overlays, mariadb_connect, pg_connect

VIEWER = "Europe/Berlin"
BERLIN, NEW_YORK, TOKYO = "Europe/Berlin", "America/New_York", "Asia/Tokyo"
NOW = datetime(2026, 11, 20, 12, 0, 0)  # when the records were written (modified_at)
FINANCIAL_YEAR = "2021-04-01"  # Kimai uses its month and day: years run 1 April - 31 March
CENT = Decimal("0.005")


@dataclass
class Parity:
    kimai_db: str
    atlas_db: str
    env: dict[str, str]
    ids: dict[str, int]


# -- the Kimai --------------------------------------------------------------------------------


def _insert(conn: sa.Connection, table: str, **values: object) -> int:
    columns = ", ".join(f"`{c}`" for c in values)
    marks = ", ".join(f":{c}" for c in values)
    result = conn.execute(
        sa.text(f"INSERT INTO `kimai2_{table}` ({columns}) VALUES ({marks})"), values
    )
    return int(result.lastrowid)


def _write_kimai(db: str) -> dict[str, int]:
    """Master data through plain inserts (Kimai's admin forms write nothing else), work through
    Kimai's timesheet save path, settings as Kimai stores them."""
    engine = kd.connect_engine(kimai_url(db))
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        kd.create_schema(conn, "mysql")
    with engine.connect() as conn:
        conn.execute(sa.text("SET time_zone = '+00:00'"))

        def customer(key: str, currency: str, visible: int = 1, **budget: object) -> None:
            ids[key] = _insert(
                conn, "customers", name=key, visible=visible, country="DE", currency=currency,
                timezone=BERLIN, **budget,
            )  # fmt: skip

        def project(key: str, cust: str, visible: int = 1, **extra: object) -> None:
            ids[key] = _insert(
                conn, "projects", name=key, customer_id=ids[cust], visible=visible, **extra
            )

        def activity(key: str, proj: str | None, **budget: object) -> None:
            ids[key] = _insert(
                conn, "activities", name=key, project_id=ids[proj] if proj else None,
                visible=1, **budget,
            )  # fmt: skip

        customer("C-eur", "EUR")
        customer("C-usd-monthly", "USD", budget_type="month", budget=1000.0, time_budget=36000)
        customer("C-hidden", "EUR", visible=0)
        project("P-alltime", "C-eur", budget=5000.0, time_budget=36000)
        project("P-monthly", "C-usd-monthly", budget_type="month", budget=800.0)
        project("P-plain", "C-usd-monthly")
        project("P-hidden-customer", "C-hidden", budget=1000.0)
        project("P-month-no-budget", "C-eur", budget_type="month")
        project(
            "P-ended", "C-eur", budget=300.0, end=datetime(2026, 1, 31, 22, 59, 59),
            timezone=BERLIN,
        )  # fmt: skip
        activity("A-global-budget", None, budget=2000.0, time_budget=7200)
        activity("A-monthly", "P-alltime", budget_type="month", time_budget=3600)
        activity("A-plain", "P-monthly")
        activity("A-global", None)
        activity("A-ended", "P-ended")
        activity("A-hidden", "P-hidden-customer")
        activity("A-nobudget", "P-month-no-budget")
        project("P-dormant", "C-eur")
        activity("A-dormant", "P-dormant")

        def user(key: str, **columns: object) -> None:
            ids[key] = kimai_do.create_user(conn, username=key, now=NOW, **columns)

        user("u-berlin", alias="Berta Berlin")
        user("u-newyork")
        user("u-tokyo", enabled=0)  # disabled, with work in the period
        user("u-system", system_account=1)
        user("u-sunday")
        user("u-gone", enabled=0)  # disabled, only a fixed-rate record of 0 s
        conn.commit()

        for key, zone in (
            ("u-berlin", BERLIN),
            ("u-newyork", NEW_YORK),
            ("u-tokyo", TOKYO),
            ("u-system", BERLIN),
            ("u-sunday", BERLIN),
            ("u-gone", BERLIN),
        ):
            _insert(conn, "user_preferences", user_id=ids[key], name="timezone", value=zone)
            # business-confidential: must never leave Kimai
            _insert(conn, "user_preferences", user_id=ids[key], name="hourly_rate", value="97.25")
        _insert(
            conn, "user_preferences", user_id=ids["u-sunday"], name="first_weekday", value="sunday"
        )
        for name, value in (
            ("work_contract_type", "day"),
            ("work_monday", "28800"),
            ("work_tuesday", "28800"),
            ("work_wednesday", "28800"),
            ("work_thursday", "28800"),
            ("work_friday", "21600"),
            ("work_saturday", "0"),
            ("holidays", "27.5"),
            ("work_start_day", "2026-01-05"),
            ("work_last_day", None),
        ):
            _insert(conn, "user_preferences", user_id=ids["u-berlin"], name=name, value=value)
        _insert(
            conn,
            "user_preferences",
            user_id=ids["u-newyork"],
            name="work_contract_type",
            value="none",
        )
        _insert(
            conn, "user_preferences", user_id=ids["u-newyork"], name="work_monday", value="28800"
        )
        _insert(
            conn, "user_preferences", user_id=ids["u-tokyo"], name="plugin_api_secret",
            value="FIXTURESECRET-plugin",
        )  # fmt: skip
        ids["T-design"] = _insert(conn, "teams", name="Design", color="#aa3300")
        ids["T-build"] = _insert(conn, "teams", name="build")
        _insert(conn, "users_teams", user_id=ids["u-berlin"], team_id=ids["T-design"], teamlead=1)
        _insert(conn, "users_teams", user_id=ids["u-berlin"], team_id=ids["T-build"], teamlead=0)
        _insert(conn, "users_teams", user_id=ids["u-newyork"], team_id=ids["T-build"], teamlead=1)
        _insert(conn, "users_teams", user_id=ids["u-tokyo"], team_id=ids["T-design"], teamlead=0)
        _insert(conn, "configuration", name="company.financial_year", value=FINANCIAL_YEAR)
        _insert(conn, "configuration", name="timesheet.mode", value="default")
        _insert(conn, "configuration", name="ldap.connection.password", value="FIXTURESECRET-ldap")
        conn.commit()

        def work(
            key: str, who: str, proj: str, act: str, start: datetime, end: datetime | None,
            zone: str, rate: float = 80.0, billable: bool | None = True, **extra: object,
        ) -> None:  # fmt: skip
            ids[key] = kimai_do.insert_timesheet(
                conn, user=ids[who], project_id=ids[proj], activity_id=ids[act],
                start=start, end=end, timezone=zone, now=NOW, hourly_rate=rate,
                internal_hourly_rate=rate / 2, billable=billable, rounding=0, **extra,
            )  # fmt: skip

        d = datetime
        # March/April 2026 in three zones (EU summer time began 29 March, US 8 March)
        work(
            "berlin-apr-0030",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2026, 3, 31, 22, 30),
            d(2026, 4, 1, 1, 0),
            BERLIN,
        )
        work(
            "berlin-mar-2359",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2026, 3, 31, 21, 59, 59),
            d(2026, 3, 31, 22, 29, 59),
            BERLIN,
        )
        work(
            "newyork-mar-1930",
            "u-newyork",
            "P-monthly",
            "A-plain",
            d(2026, 3, 31, 23, 30),
            d(2026, 4, 1, 2, 0),
            NEW_YORK,
            rate=100.0,
        )
        work(
            "tokyo-apr-0100",
            "u-tokyo",
            "P-monthly",
            "A-plain",
            d(2026, 3, 31, 16, 0),
            d(2026, 3, 31, 19, 15),
            TOKYO,
            rate=90.0,
        )
        work(
            "tokyo-global",
            "u-tokyo",
            "P-plain",
            "A-global-budget",
            d(2026, 4, 2, 1, 0),
            d(2026, 4, 2, 4, 0),
            TOKYO,
            rate=60.0,
        )
        # October/November 2026 (EU winter time from 25 October, US from 1 November)
        work(
            "newyork-oct-1930",
            "u-newyork",
            "P-monthly",
            "A-plain",
            d(2026, 10, 31, 23, 30),
            d(2026, 11, 1, 1, 30),
            NEW_YORK,
            rate=100.0,
        )
        work(
            "berlin-dst-night",
            "u-berlin",
            "P-alltime",
            "A-global-budget",
            d(2026, 10, 25, 0, 30),
            d(2026, 10, 25, 3, 30),
            BERLIN,
        )
        work(
            "berlin-nov-1st",
            "u-berlin",
            "P-monthly",
            "A-plain",
            d(2026, 10, 31, 23, 0),
            d(2026, 11, 1, 1, 0),
            BERLIN,
            rate=100.0,
        )
        # a shift across midnight and a month end: wholly in February
        work(
            "berlin-night-shift",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2026, 2, 28, 22, 0),
            d(2026, 3, 1, 2, 0),
            BERLIN,
        )
        # budgeted all-time project: billable, non-billable, NULL billable, running, future
        work(
            "alltime-billable",
            "u-berlin",
            "P-alltime",
            "A-global-budget",
            d(2026, 5, 4, 7, 0),
            d(2026, 5, 4, 15, 0),
            BERLIN,
            rate=120.0,
        )
        work(
            "alltime-nonbillable",
            "u-newyork",
            "P-alltime",
            "A-global-budget",
            d(2026, 5, 5, 13, 0),
            d(2026, 5, 5, 17, 0),
            NEW_YORK,
            billable=False,
        )
        work(
            "alltime-nullbillable",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2026, 5, 6, 7, 0),
            d(2026, 5, 6, 9, 0),
            BERLIN,
        )
        work(
            "alltime-running",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2026, 11, 20, 9, 0),
            None,
            BERLIN,
        )
        work(
            "alltime-future",
            "u-berlin",
            "P-alltime",
            "A-global-budget",
            d(2027, 2, 1, 8, 0),
            d(2027, 2, 1, 12, 0),
            BERLIN,
        )
        work(
            "alltime-system",
            "u-system",
            "P-alltime",
            "A-global-budget",
            d(2026, 6, 1, 8, 0),
            d(2026, 6, 1, 10, 0),
            BERLIN,
        )
        # ends exactly at midnight Berlin: out of that day's duration counters
        work(
            "berlin-ends-midnight",
            "u-berlin",
            "P-plain",
            "A-global",
            d(2026, 5, 4, 20, 0),
            d(2026, 5, 4, 22, 0),
            BERLIN,
        )
        work(
            "sunday-user",
            "u-sunday",
            "P-plain",
            "A-global",
            d(2026, 5, 3, 8, 0),
            d(2026, 5, 3, 9, 0),
            BERLIN,
        )
        work(
            "system-plain",
            "u-system",
            "P-plain",
            "A-global",
            d(2026, 5, 4, 9, 0),
            d(2026, 5, 4, 11, 0),
            BERLIN,
        )
        work(
            "gone-fixed",
            "u-gone",
            "P-plain",
            "A-global",
            d(2026, 5, 4, 9, 0),
            d(2026, 5, 4, 9, 0),
            BERLIN,
            fixed_rate=50.0,
        )
        work(
            "hidden-customer",
            "u-berlin",
            "P-hidden-customer",
            "A-hidden",
            d(2026, 4, 7, 8, 0),
            d(2026, 4, 7, 9, 0),
            BERLIN,
        )
        work(
            "ended-project",
            "u-berlin",
            "P-ended",
            "A-ended",
            d(2026, 1, 20, 8, 0),
            d(2026, 1, 20, 9, 0),
            BERLIN,
        )
        work(
            "month-no-budget",
            "u-berlin",
            "P-month-no-budget",
            "A-nobudget",
            d(2026, 4, 8, 8, 0),
            d(2026, 4, 8, 9, 0),
            BERLIN,
        )
        # more than a year ago: the project is inactive
        work(
            "dormant",
            "u-berlin",
            "P-dormant",
            "A-dormant",
            d(2024, 6, 3, 8, 0),
            d(2024, 6, 3, 9, 0),
            BERLIN,
        )
        # the monthly budgets in the month containing today, and the year before
        today = datetime.now().replace(microsecond=0)
        work(
            "monthly-now",
            "u-berlin",
            "P-monthly",
            "A-plain",
            today.replace(day=1, hour=9, minute=0, second=0),
            today.replace(day=1, hour=11, minute=0, second=0),
            BERLIN,
            rate=100.0,
        )
        work(
            "monthly-now-nonbillable",
            "u-newyork",
            "P-monthly",
            "A-plain",
            today.replace(day=1, hour=13, minute=0, second=0),
            today.replace(day=1, hour=14, minute=0, second=0),
            NEW_YORK,
            billable=False,
        )
        work(
            "monthly-2025",
            "u-newyork",
            "P-monthly",
            "A-plain",
            d(2025, 12, 15, 14, 0),
            d(2025, 12, 15, 18, 0),
            NEW_YORK,
            rate=100.0,
        )
        work(
            "activity-monthly-2025",
            "u-berlin",
            "P-alltime",
            "A-monthly",
            d(2025, 11, 3, 8, 0),
            d(2025, 11, 3, 10, 0),
            BERLIN,
        )
        # 20 minutes at 100 an hour: 33.3333, which Kimai's customer-monthly screen shows as 33
        work(
            "april-fraction",
            "u-berlin",
            "P-plain",
            "A-global",
            d(2026, 4, 9, 8, 0),
            d(2026, 4, 9, 8, 20),
            BERLIN,
            rate=100.0,
        )
        # an export (bulk update, modified_at untouched) for the "not exported" columns
        kimai_do.mark_exported(conn, [ids["alltime-billable"], ids["newyork-mar-1930"]])
        # a legacy record whose billable flag is NULL (the column is nullable)
        conn.execute(
            sa.text("UPDATE kimai2_timesheet SET billable = NULL WHERE id = :id"),
            {"id": ids["alltime-nullbillable"]},
        )
        conn.commit()
    engine.dispose()
    return ids


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    suffix = uuid.uuid4().hex[:12]
    kimai_db, atlas_db = f"kimai_p_{suffix}", f"atlas_p_{suffix}"
    tmp: Path = tmp_path_factory.mktemp("parity")
    admin(
        mariadb_connect,
        f"CREATE DATABASE `{kimai_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    )
    admin(pg_connect, f'CREATE DATABASE "{atlas_db}"')
    try:
        ids = _write_kimai(kimai_db)
        env = {
            "KIMAI_DB_HOST": MARIADB["host"],
            "KIMAI_DB_PORT": str(MARIADB["port"]),
            "KIMAI_DB_USER": MARIADB["user"],
            "KIMAI_DB_DATABASE": kimai_db,
            "ATLAS_DB_HOST": POSTGRES["host"],
            "ATLAS_DB_PORT": str(POSTGRES["port"]),
            "ATLAS_DB_USER": POSTGRES["user"],
            "ATLAS_DB_DATABASE": atlas_db,
            "ATLAS_ANALYTICS_SCHEMA": ANALYTICS,
            "ATLAS_OVERLAY_SCHEMA": OVERLAY,
            "ATLAS_SYNC_STATE_DIR": str(tmp / "state"),
            "ATLAS_REPORT_TIMEZONE": VIEWER,
        }
        synced = run_cli("sync", env=env)
        assert synced.returncode == 0, synced.stderr
        create_overlays(atlas_db)
        built = run_cli("transform", env=env, timeout=600)
        assert built.returncode == 0, built.stdout + built.stderr
        yield Parity(kimai_db, atlas_db, env, ids)
    finally:
        admin(mariadb_connect, f"DROP DATABASE IF EXISTS `{kimai_db}`")
        admin(pg_connect, f'DROP DATABASE IF EXISTS "{atlas_db}" WITH (FORCE)')


# -- Kimai's period arithmetic (DateTimeFactory, then Doctrine's conversion to UTC) -----------


def utc(day: date, zone: str = VIEWER) -> str:
    """Local midnight of `day` in `zone` as the UTC DATETIME text Kimai binds."""
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def months(first: date, last: date) -> list[date]:
    out, m = [], first.replace(day=1)
    while m <= last:
        out.append(m)
        m = next_month(m)
    return out


def money(value: object) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def assert_money(expected: dict, actual: dict, what: str) -> None:
    assert set(expected) == set(actual), f"{what}: keys {sorted(expected)} vs {sorted(actual)}"
    for key, value in expected.items():
        assert abs(money(value) - money(actual[key])) < CENT, (
            f"{what} {key}: {value} vs {actual[key]}"
        )


def kimai(p: Parity, sql: str, args: tuple = ()) -> list[tuple]:
    return kimai_query(p.kimai_db, sql, args or None)


def views(p: Parity, sql: str, args: tuple = ()) -> list[tuple]:
    return pg_query(p.atlas_db, sql.replace("{bi}", ANALYTICS), args or None)


# -- user reports (axis A: the record's own local day) ---------------------------------------


@pytest.mark.heavy
def test_user_day_totals_match_the_weekly_and_monthly_user_reports(parity: Parity) -> None:
    """PC1: per user and local day, duration, billable duration, the amount the report shows
    (every record's rate: Kimai adds non-billable work there) and internal cost; closed
    records only, hidden projects included, by date_tz whatever the viewer's zone."""
    d1, d2 = date(2026, 1, 1), date(2026, 12, 31)
    rows = kimai(
        parity,
        "SELECT `user`, date_tz, SUM(duration), SUM(IF(COALESCE(billable, 0), duration, 0)),"
        " SUM(rate), SUM(COALESCE(internal_rate, 0)) FROM kimai2_timesheet"
        " WHERE end_time IS NOT NULL AND date_tz BETWEEN %s AND %s GROUP BY 1, 2",
        (d1, d2),
    )
    expected_seconds = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
    expected_amount = {(r[0], r[1]): r[4] for r in rows}
    expected_cost = {(r[0], r[1]): r[5] for r in rows}
    days = views(
        parity,
        "select user_id, date_tz, duration_seconds, billable_seconds from {bi}.vw_user_days"
        " where date_tz between %s and %s and (duration_seconds > 0 or billable_seconds > 0)",
        (d1, d2),
    )
    # a 0-second record (fixed rate) is a day with a record but no seconds
    expected_nonzero = {k: v for k, v in expected_seconds.items() if v != (0, 0)}
    assert {(r[0], r[1]): (r[2], r[3]) for r in days} == expected_nonzero
    amounts = views(
        parity,
        "select user_id, date_tz, sum(rate_amount), sum(internal_cost) from {bi}.vw_timesheet_facts"
        " where not is_running and date_tz between %s and %s group by 1, 2",
        (d1, d2),
    )
    assert_money(expected_amount, {(r[0], r[1]): r[2] for r in amounts}, "amount")
    assert_money(expected_cost, {(r[0], r[1]): r[3] for r in amounts}, "internal cost")
    # the New York record at 19:30 local on 31 March is March for its user, though Berlin
    # already had 1 April
    ny = parity.ids["u-newyork"]
    assert (ny, date(2026, 3, 31)) in expected_seconds


def test_weekly_totals_follow_monday_weeks_of_the_local_day(parity: Parity) -> None:
    """PC2: week totals per user, Monday weeks (ISO) of date_tz."""
    rows = kimai(
        parity,
        "SELECT `user`, date_tz, duration FROM kimai2_timesheet WHERE end_time IS NOT NULL",
    )
    expected: dict[tuple[int, date], int] = defaultdict(int)
    for user, day, seconds in rows:
        expected[(user, day - timedelta(days=day.weekday()))] += seconds
    actual = views(
        parity,
        "select user_id, week_start_date, sum(duration_seconds) from {bi}.vw_timesheet_facts"
        " where not is_running group by 1, 2",
    )
    assert {(r[0], r[1]): int(r[2]) for r in actual} == dict(expected)


def _financial_year(today: date) -> tuple[date, date]:
    """DateTimeFactory::createStartOfFinancialYear / createEndOfFinancialYear for `today`."""
    month, day = (int(x) for x in FINANCIAL_YEAR.split("-")[1:])
    start = date(today.year, month, day)
    if start > today:
        start = date(today.year - 1, month, day)
    return start, date(start.year + 1, month, day) - timedelta(days=1)


def test_yearly_report_uses_the_financial_year(parity: Parity) -> None:
    """PC3: the yearly report of the financial year holding a day (1 April - 31 March here),
    per user and month of date_tz; the year total is the sum of its months."""
    for today in (date(2026, 3, 15), date(2026, 11, 20)):
        fy_start, fy_end = _financial_year(today)
        rows = kimai(
            parity,
            "SELECT `user`, YEAR(date_tz), MONTH(date_tz), SUM(duration), SUM(rate),"
            " SUM(COALESCE(internal_rate, 0)) FROM kimai2_timesheet WHERE end_time IS NOT NULL"
            " AND date_tz BETWEEN %s AND %s GROUP BY 1, 2, 3",
            (fy_start, fy_end),
        )
        actual = views(
            parity,
            "select user_id, month_start_date, sum(duration_seconds), sum(rate_amount),"
            " sum(internal_cost) from {bi}.vw_timesheet_facts"
            " where not is_running and financial_year_start_date = %s group by 1, 2",
            (fy_start,),
        )
        assert {(r[0], date(r[1], r[2], 1)): int(r[3]) for r in rows} == {
            (r[0], r[1]): int(r[2]) for r in actual
        }
        assert_money(
            {(r[0], date(r[1], r[2], 1)): r[4] for r in rows},
            {(r[0], r[1]): r[3] for r in actual},
            f"FY {fy_start} amount",
        )
    # March 2026 belongs to the year that began 1 April 2025
    facts = views(
        parity,
        "select distinct financial_year_start_date from {bi}.vw_timesheet_facts"
        " where date_tz between '2026-03-01' and '2026-03-31'",
    )
    assert facts == [(date(2025, 4, 1),)]


def test_all_users_report_rows_and_footer(parity: Parity) -> None:
    """PC4: users in scope are the non-system accounts, enabled or not; a row shows when the
    user is enabled or has time in the period; the footer adds every user in scope."""
    d1, d2 = date(2026, 5, 1), date(2026, 5, 31)
    scope = kimai(
        parity,
        "SELECT u.id, u.enabled, COALESCE(SUM(t.duration), 0), COALESCE(SUM(t.rate), 0)"
        " FROM kimai2_users u LEFT JOIN kimai2_timesheet t ON t.`user` = u.id"
        " AND t.end_time IS NOT NULL AND t.date_tz BETWEEN %s AND %s"
        " WHERE NOT u.system_account GROUP BY u.id, u.enabled",
        (d1, d2),
    )
    shown = {r[0] for r in scope if r[1] or int(r[2]) != 0}
    footer_seconds = sum(int(r[2]) for r in scope)
    footer_amount = sum(money(r[3]) for r in scope)
    bi = views(
        parity,
        "select u.user_id, u.is_enabled, coalesce(sum(f.duration_seconds), 0),"
        " coalesce(sum(f.rate_amount), 0)"
        " from {bi}.vw_users u left join {bi}.vw_timesheet_facts f on f.user_id = u.user_id"
        " and not f.is_running and f.date_tz between %s and %s"
        " where not u.is_system_account group by 1, 2",
        (d1, d2),
    )
    assert {r[0] for r in bi if r[1] or int(r[2]) != 0} == shown
    assert sum(int(r[2]) for r in bi) == footer_seconds
    assert abs(sum(money(r[3]) for r in bi) - footer_amount) < CENT
    # the disabled user with only a 0-second fixed-rate record: hidden, but in the footer
    assert parity.ids["u-gone"] not in shown
    assert parity.ids["u-system"] not in {r[0] for r in bi}


# -- budgets (all time; monthly by the viewer's calendar) -------------------------------------


_BUDGET_SQL = {
    "project": ("kimai2_projects", "t.project_id"),
    "activity": ("kimai2_activities", "t.activity_id"),
    "customer": ("kimai2_customers", "p.customer_id"),
}


def _kimai_budgets(p: Parity, scope: str, window: tuple[str, str] | None = None) -> dict:
    """PC5/PC6: closed records; used = billable rate and duration; costs = every record."""
    table, key = _BUDGET_SQL[scope]
    where = "t.end_time IS NOT NULL"
    args: tuple = ()
    if window:
        where += " AND t.start_time >= %s AND t.start_time < %s"
        args = window
    rows = kimai(
        p,
        f"SELECT e.id, e.budget, e.time_budget, e.budget_type, s.money_used, s.time_used,"
        f" s.costs, s.duration FROM {table} e LEFT JOIN (SELECT {key} AS k,"
        " SUM(IF(COALESCE(t.billable, 0), t.rate, 0)) AS money_used,"
        " SUM(IF(COALESCE(t.billable, 0), t.duration, 0)) AS time_used,"
        " SUM(COALESCE(t.internal_rate, 0)) AS costs, SUM(t.duration) AS duration"
        " FROM kimai2_timesheet t JOIN kimai2_projects p ON p.id = t.project_id"
        f" WHERE {where} GROUP BY {key}) s ON s.k = e.id",
        args,
    )
    out = {}
    for eid, budget, time_budget, budget_type, used, seconds, costs, duration in rows:
        out[eid] = {
            "budget": money(budget),
            "time_budget": int(time_budget),
            "monthly": budget_type == "month" and (budget > 0 or time_budget > 0),
            "used": money(used),
            "seconds": int(seconds or 0),
            "costs": money(costs),
            "duration": int(duration or 0),
        }
    return out


def _ratio(used: Decimal | int, budget: Decimal | int) -> Decimal | None:
    """used ÷ budget to 4 decimals (Kimai's percentage to 2), half away from zero."""
    if budget <= 0:
        return None
    return (Decimal(used) / Decimal(budget)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@pytest.mark.parametrize(
    ("scope", "view", "key"),
    [
        ("project", "vw_projects", "project_id"),
        ("customer", "vw_customers", "customer_id"),
        ("activity", "vw_activities", "activity_id"),
    ],
)
def test_all_time_budgets_count_closed_billable_work(
    parity: Parity, scope: str, view: str, key: str
) -> None:
    """PC5: used, open, ratio (not capped), costs of all records, profit; no date cap
    (future records count); NULL billable is not billable; a monthly budget has no
    all-time ratio or open amount."""
    expected = _kimai_budgets(parity, scope)
    rows = views(
        parity,
        f"select {key}, is_monthly_budget, budget_used, time_budget_used_seconds,"
        " budget_burn_ratio, time_budget_burn_ratio, budget_open, time_budget_open_seconds,"
        f" internal_cost, profit from {{bi}}.{view} where {key} > 0",
    )
    assert {r[0] for r in rows} == set(expected)
    for eid, monthly, used, seconds, ratio, time_ratio, open_, time_open, cost, profit in rows:
        k = expected[eid]
        assert monthly == k["monthly"], (scope, eid)
        assert abs(money(used) - k["used"]) < CENT, (scope, eid, used, k)
        assert seconds == k["seconds"], (scope, eid)
        assert abs(money(cost) - k["costs"]) < CENT, (scope, eid)
        assert abs(money(profit) - (k["used"] - k["costs"])) < CENT, (scope, eid)
        if k["monthly"]:
            assert (ratio, time_ratio, open_, time_open) == (None, None, None, None)
            continue
        want = _ratio(k["used"], k["budget"])
        assert (ratio is None) == (want is None) and abs((ratio or 0) - (want or 0)) <= Decimal(
            "0.0001"
        ), (scope, eid, ratio, want)
        assert time_ratio == _ratio(k["seconds"], k["time_budget"]), (scope, eid)
        assert abs(money(open_) - max(k["budget"] - k["used"], Decimal(0))) < CENT
        assert time_open == max(k["time_budget"] - k["seconds"], 0)
    if scope == "project":
        alltime = expected[parity.ids["P-alltime"]]
        # non-billable and NULL-billable work cost money but use no budget; the future
        # record and the system account's record count
        assert alltime["duration"] > alltime["seconds"] > 0
        assert alltime["costs"] > 0


def test_monthly_budgets_per_month_of_the_viewers_calendar(parity: Parity) -> None:
    """PC6: each month of a monthly budget counts the closed records that start in it, seen
    from the viewer's zone; every month from the first record to this month is listed."""
    today = datetime.now(ZoneInfo(VIEWER)).date()
    current = today.replace(day=1)
    listed = views(
        parity,
        "select budget_scope, scope_id, report_month_start_date, budget_used,"
        " time_budget_used_seconds, budget_burn_ratio, time_budget_burn_ratio, budget_open,"
        " time_budget_open_seconds, duration_seconds, internal_cost from {bi}.vw_budget_months",
    )
    by_key = {(r[0], r[1], r[2]): r[3:] for r in listed}
    checked = 0
    for scope in _BUDGET_SQL:
        everything = _kimai_budgets(parity, scope)
        table, key = _BUDGET_SQL[scope]
        for eid, entity in everything.items():
            if not entity["monthly"]:
                assert not [k for k in by_key if k[:2] == (scope, eid)], (scope, eid)
                continue
            bounds = kimai(
                parity,
                "SELECT MIN(t.start_time), MAX(t.start_time) FROM kimai2_timesheet t"
                f" JOIN kimai2_projects p ON p.id = t.project_id WHERE {key} = %s",
                (eid,),
            )[0]
            local = [
                b.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(VIEWER)).date()
                for b in bounds
                if b is not None
            ] or [current]
            wanted = months(min(local[0], current), max(local[-1], current))
            assert sorted(k[2] for k in by_key if k[:2] == (scope, eid)) == wanted, (scope, eid)
            for month in wanted:
                window = (utc(month), utc(next_month(month)))
                k = _kimai_budgets(parity, scope, window)[eid]
                row = by_key[(scope, eid, month)]
                used, seconds, ratio, time_ratio, open_, time_open, duration, cost = row
                assert abs(money(used) - k["used"]) < CENT, (scope, eid, month)
                assert seconds == k["seconds"], (scope, eid, month)
                assert duration == k["duration"], (scope, eid, month)
                assert abs(money(cost) - k["costs"]) < CENT, (scope, eid, month)
                assert time_ratio == _ratio(k["seconds"], k["time_budget"]), (scope, eid, month)
                assert (ratio is None) == (_ratio(k["used"], k["budget"]) is None)
                if k["budget"] > 0:
                    assert abs(money(open_) - max(k["budget"] - k["used"], Decimal(0))) < CENT
                assert time_open == max(k["time_budget"] - k["seconds"], 0)
                checked += 1
    assert checked >= 20
    # the New York record at 19:30 local on 31 March 2026 counts in Berlin's April
    monthly = parity.ids["P-monthly"]
    march = by_key[("project", monthly, date(2026, 3, 1))]
    april = by_key[("project", monthly, date(2026, 4, 1))]
    assert (march[6], april[6]) == (3 * 3600 + 15 * 60, 2 * 3600 + 30 * 60)


def test_projects_by_month(parity: Parity) -> None:
    """PC7: visible projects of visible customers whose period overlaps the month, with a
    record starting in it (running ones count for the list); figures over its closed
    records: duration, revenue (billable rate), costs, profit."""
    for month in (date(2026, 3, 1), date(2026, 4, 1), date(2026, 11, 1)):
        lo, hi = utc(month), utc(next_month(month))
        listed = kimai(
            parity,
            "SELECT p.id FROM kimai2_projects p JOIN kimai2_customers c ON c.id = p.customer_id"
            " WHERE p.visible AND c.visible AND (p.start IS NULL OR p.start < %s)"
            " AND (p.`end` IS NULL OR p.`end` >= %s) AND EXISTS (SELECT 1 FROM kimai2_timesheet t"
            " WHERE t.project_id = p.id AND t.start_time >= %s AND t.start_time < %s)",
            (hi, lo, lo, hi),
        )
        figures = kimai(
            parity,
            "SELECT project_id, SUM(duration), SUM(IF(COALESCE(billable, 0), rate, 0)),"
            " SUM(COALESCE(internal_rate, 0)) FROM kimai2_timesheet WHERE end_time IS NOT NULL"
            " AND start_time >= %s AND start_time < %s GROUP BY project_id",
            (lo, hi),
        )
        expected = {r[0]: r[1:] for r in figures if r[0] in {x[0] for x in listed}}
        rows = views(
            parity,
            "select f.project_id, coalesce(sum(f.duration_seconds), 0), coalesce(sum(f.revenue), 0),"
            " coalesce(sum(f.internal_cost), 0), count(*) from {bi}.vw_timesheet_facts f"
            " join {bi}.vw_projects p on p.project_id = f.project_id"
            " join {bi}.vw_customers c on c.customer_id = p.customer_id"
            " where f.report_month_start_date = %s and p.is_visible and c.is_visible"
            " and (p.starts_at is null or p.starts_at < %s) and (p.ends_at is null or p.ends_at >= %s)"
            " group by 1",
            (month, hi + "+00", lo + "+00"),
        )
        assert {r[0] for r in rows} == {x[0] for x in listed}, month
        actual = {r[0]: r[1:4] for r in rows if r[0] in expected}
        assert {k: int(v[0]) for k, v in actual.items()} == {
            k: int(v[0]) for k, v in expected.items()
        }
        assert_money(
            {k: v[1] for k, v in expected.items()},
            {k: v[1] for k, v in actual.items()},
            f"{month} revenue",
        )
        assert_money(
            {k: v[2] for k, v in expected.items()},
            {k: v[2] for k, v in actual.items()},
            f"{month} costs",
        )


def test_project_overview_stable_columns(parity: Parity) -> None:
    """PC8: total duration, not exported (billable) duration and amount, last record (running
    included) of the default list: visible, customer visible, not ended, with a budget and
    recorded time. Kimai's today/week/month columns are not reproduced (see docs)."""
    now_utc = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = kimai(
        parity,
        "SELECT p.id, SUM(IF(t.end_time IS NOT NULL, t.duration, 0)),"
        " SUM(IF(t.end_time IS NOT NULL AND COALESCE(t.billable, 0) AND NOT t.exported, t.duration, 0)),"
        " SUM(IF(t.end_time IS NOT NULL AND COALESCE(t.billable, 0) AND NOT t.exported, t.rate, 0)),"
        " MAX(t.date_tz) FROM kimai2_projects p JOIN kimai2_customers c ON c.id = p.customer_id"
        " LEFT JOIN kimai2_timesheet t ON t.project_id = p.id"
        " WHERE p.visible AND c.visible AND (p.`end` IS NULL OR p.`end` >= %s)"
        " GROUP BY p.id HAVING SUM(t.duration) > 0 AND (MAX(p.budget) > 0 OR MAX(p.time_budget) > 0)",
        (now_utc,),
    )
    actual = views(
        parity,
        "select p.project_id, sum(coalesce(f.duration_seconds, 0)),"
        " sum(case when not f.is_exported then coalesce(f.billable_seconds, 0) else 0 end),"
        " sum(case when not f.is_exported then coalesce(f.revenue, 0) else 0 end), max(f.date_tz)"
        " from {bi}.vw_projects p join {bi}.vw_customers c on c.customer_id = p.customer_id"
        " join {bi}.vw_timesheet_facts f on f.project_id = p.project_id"
        " where p.is_visible and c.is_visible and (p.ends_at is null or p.ends_at >= now())"
        " and (p.budget > 0 or p.time_budget_seconds > 0)"
        " group by 1 having sum(coalesce(f.duration_seconds, 0)) > 0",
    )
    assert {r[0]: (int(r[1]), int(r[2]), r[4]) for r in rows} == {
        r[0]: (int(r[1]), int(r[2]), r[4]) for r in actual
    }
    assert_money({r[0]: r[3] for r in rows}, {r[0]: r[3] for r in actual}, "not invoiced")
    # the running record's day is the project's last record
    assert {r[0]: r[4] for r in actual}[parity.ids["P-alltime"]] == date(2027, 2, 1)


def test_inactive_projects(parity: Parity) -> None:
    """PC8, the inactive list: visible projects of visible customers, started and not ended,
    without a record starting in the last year (Kimai's default cutoff)."""
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = (now - timedelta(days=365)).strftime("%Y-%m-%d %H:%M:%S")
    now_utc = now.strftime("%Y-%m-%d %H:%M:%S")
    expected = kimai(
        parity,
        "SELECT p.id FROM kimai2_projects p JOIN kimai2_customers c ON c.id = p.customer_id"
        " WHERE p.visible AND c.visible AND (p.start IS NULL OR p.start <= %s)"
        " AND (p.`end` IS NULL OR p.`end` >= %s) AND NOT EXISTS (SELECT 1 FROM kimai2_timesheet t"
        " WHERE t.project_id = p.id AND t.start_time >= %s)",
        (now_utc, now_utc, cutoff),
    )
    actual = views(
        parity,
        "select p.project_id from {bi}.vw_projects p"
        " join {bi}.vw_customers c on c.customer_id = p.customer_id"
        " where p.is_visible and c.is_visible and (p.starts_at is null or p.starts_at <= %s)"
        " and (p.ends_at is null or p.ends_at >= %s) and not exists (select 1"
        " from {bi}.vw_timesheet_facts f where f.project_id = p.project_id"
        " and f.started_at >= %s)",
        (now_utc + "+00", now_utc + "+00", cutoff + "+00"),
    )
    assert {r[0] for r in actual} == {r[0] for r in expected}
    # a project whose last record is of 2024 is inactive, one with work this year is not
    assert parity.ids["P-dormant"] in {r[0] for r in actual}
    assert parity.ids["P-month-no-budget"] not in {r[0] for r in actual}


def test_project_details_breakdowns(parity: Parity) -> None:
    """PC10: per year, month (of date_tz) and user; running records count as records; the
    monthly "revenue" is every record's rate, billable or not."""
    pid = parity.ids["P-alltime"]
    rows = kimai(
        parity,
        "SELECT YEAR(date_tz), MONTH(date_tz), `user`, SUM(duration), SUM(rate),"
        " SUM(IF(COALESCE(billable, 0), rate, 0)), COUNT(*) FROM kimai2_timesheet"
        " WHERE project_id = %s GROUP BY 1, 2, 3",
        (pid,),
    )
    actual = views(
        parity,
        "select extract(year from date_tz)::int, extract(month from date_tz)::int, user_id,"
        " sum(coalesce(duration_seconds, 0)), sum(rate_amount), sum(coalesce(revenue, 0)), count(*)"
        " from {bi}.vw_timesheet_facts where project_id = %s group by 1, 2, 3",
        (pid,),
    )
    assert {r[:3]: (int(r[3]), int(r[6])) for r in rows} == {
        r[:3]: (int(r[3]), int(r[6])) for r in actual
    }
    assert_money({r[:3]: r[4] for r in rows}, {r[:3]: r[4] for r in actual}, "amount")
    assert_money({r[:3]: r[5] for r in rows}, {r[:3]: r[5] for r in actual}, "billable amount")


def test_customer_monthly_projects(parity: Parity) -> None:
    """PC11: a month of the viewer's calendar, closed records of non-system users, per
    project, activity and user; exact sums (Kimai truncates each group's money to an integer
    on that screen, a bug the views do not copy)."""
    month = date(2026, 4, 1)
    lo, hi = utc(month), utc(next_month(month))
    rows = kimai(
        parity,
        "SELECT t.project_id, t.activity_id, t.`user`, SUM(t.duration), SUM(t.rate),"
        " SUM(COALESCE(t.internal_rate, 0)) FROM kimai2_timesheet t"
        " JOIN kimai2_users u ON u.id = t.`user` AND NOT u.system_account"
        " WHERE t.end_time IS NOT NULL AND t.start_time >= %s AND t.start_time < %s"
        " GROUP BY 1, 2, 3",
        (lo, hi),
    )
    actual = views(
        parity,
        "select f.project_id, f.activity_id, f.user_id, sum(f.duration_seconds), sum(f.rate_amount),"
        " sum(f.internal_cost) from {bi}.vw_timesheet_facts f"
        " join {bi}.vw_users u on u.user_id = f.user_id and not u.is_system_account"
        " where not f.is_running and f.report_month_start_date = %s group by 1, 2, 3",
        (month,),
    )
    assert {r[:3]: int(r[3]) for r in rows} == {r[:3]: int(r[3]) for r in actual}
    assert_money({r[:3]: r[4] for r in rows}, {r[:3]: r[4] for r in actual}, "amount")
    assert_money({r[:3]: r[5] for r in rows}, {r[:3]: r[5] for r in actual}, "internal")
    # Kimai's screen casts each group's money to an integer ((int) truncates) and adds those:
    # the gap the views do not copy
    shown = sum(int(money(r[4])) for r in rows)
    assert sum(money(r[4]) for r in rows) - shown > Decimal("0.3")
    # the Tokyo record of 1 April 01:00 local is March for a Berlin viewer
    assert (parity.ids["P-monthly"], parity.ids["A-plain"], parity.ids["u-tokyo"]) not in {
        r[:3] for r in rows
    }


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2026, 5, 4), date(2026, 5, 4)),  # a day
        (date(2026, 5, 4), date(2026, 5, 10)),  # its Monday week
        (date(2026, 5, 1), date(2026, 5, 31)),  # its month
        (date(2026, 4, 1), date(2027, 3, 31)),  # its financial year
    ],
)
def test_dashboard_counters(parity: Parity, first: date, last: date) -> None:
    """PC12: duration = records starting in the period and ending by its last second (a
    record ending at midnight drops out); amount = billable rate of records starting in the
    period, per currency, running ones included; active users like the duration."""
    lo, hi = utc(first), utc(last + timedelta(days=1))
    ((duration, active),) = kimai(
        parity,
        "SELECT COALESCE(SUM(duration), 0), COUNT(DISTINCT `user`) FROM kimai2_timesheet"
        " WHERE start_time >= %s AND end_time < %s",
        (lo, hi),
    )
    amounts = kimai(
        parity,
        "SELECT c.currency, SUM(t.rate) FROM kimai2_timesheet t"
        " JOIN kimai2_projects p ON p.id = t.project_id JOIN kimai2_customers c ON c.id = p.customer_id"
        " WHERE t.billable = 1 AND t.start_time >= %s AND t.start_time < %s GROUP BY 1",
        (lo, hi),
    )
    ((bi_duration, bi_active),) = views(
        parity,
        "select coalesce(sum(duration_seconds), 0), count(distinct user_id) from {bi}.vw_timesheet_facts"
        " where report_date between %s and %s"
        " and (ended_at at time zone 'Europe/Berlin')::date <= %s",
        (first, last, last),
    )
    bi_amounts = views(
        parity,
        "select currency, sum(coalesce(revenue, 0)) from {bi}.vw_timesheet_facts"
        " where is_billable and report_date between %s and %s group by 1",
        (first, last),
    )
    assert (int(bi_duration), bi_active) == (int(duration), active)
    assert_money(dict(amounts), dict(bi_amounts), f"amount {first}..{last}")


# -- dimensions and working time -------------------------------------------------------------


def test_users_teams_and_contracts(parity: Parity) -> None:
    """vw_users and vw_user_teams against Kimai's users, memberships and preferences."""
    users = views(
        parity,
        "select user_id, user_name, is_enabled, is_system_account, timezone, team_names,"
        " work_contract_type, work_monday_seconds, work_friday_seconds, holidays_per_year"
        " from {bi}.vw_users",
    )
    by_id = {r[0]: r[1:] for r in users}
    ids = parity.ids
    assert by_id[ids["u-berlin"]] == (
        "Berta Berlin",
        True,
        False,
        BERLIN,
        "build, Design",
        "day",
        28800,
        21600,
        Decimal("27.5"),
    )
    # the weekday seconds are kept as stored, but without a `day` contract nothing is expected
    assert by_id[ids["u-newyork"]][3:7] == (NEW_YORK, "build", "none", 28800)
    assert by_id[ids["u-tokyo"]][1:4] == (False, False, TOKYO)
    assert by_id[ids["u-system"]][2] is True
    memberships = kimai(parity, "SELECT user_id, team_id, teamlead FROM kimai2_users_teams")
    teams = views(parity, "select user_id, team_id, is_teamlead, team_name from {bi}.vw_user_teams")
    assert {(r[0], r[1], bool(r[2])) for r in memberships} == {r[:3] for r in teams}
    # "hours per team": a user in two teams counts in both
    per_team = views(
        parity,
        "select t.team_name, sum(f.duration_seconds) from {bi}.vw_user_teams t"
        " join {bi}.vw_timesheet_facts f on f.user_id = t.user_id where not f.is_running group by 1",
    )
    expected = kimai(
        parity,
        "SELECT g.name, SUM(t.duration) FROM kimai2_users_teams m JOIN kimai2_teams g ON g.id = m.team_id"
        " JOIN kimai2_timesheet t ON t.`user` = m.user_id WHERE t.end_time IS NOT NULL GROUP BY 1",
    )
    assert {r[0]: int(r[1]) for r in per_team} == {r[0]: int(r[1]) for r in expected}


def test_user_days_expect_the_contract(parity: Parity) -> None:
    """vw_user_days: every day from the user's first record to today in the user's zone;
    expected seconds from the contract (WorkingTimeCalculatorDay: per weekday, from the
    contract's first day), 0 without a contract (`none`)."""
    berlin = parity.ids["u-berlin"]
    rows = views(
        parity,
        "select date_tz, expected_seconds, duration_seconds from {bi}.vw_user_days"
        " where user_id = %s order by date_tz",
        (berlin,),
    )
    first = kimai(parity, "SELECT MIN(date_tz) FROM kimai2_timesheet WHERE `user` = %s", (berlin,))[
        0
    ][0]
    today = datetime.now(ZoneInfo(BERLIN)).date()
    assert [r[0] for r in rows] == [
        first + timedelta(days=i) for i in range((today - first).days + 1)
    ]
    weekly = {0: 28800, 1: 28800, 2: 28800, 3: 28800, 4: 21600, 5: 0, 6: 0}
    for day, expected_seconds, _ in rows:
        want = 0 if day < date(2026, 1, 5) else weekly[day.weekday()]
        assert expected_seconds == want, day
    ny = views(
        parity,
        "select sum(expected_seconds), count(*) from {bi}.vw_user_days where user_id = %s",
        (parity.ids["u-newyork"],),
    )[0]
    assert ny[0] == 0 and ny[1] > 0


def test_settings_outside_the_allow_lists_never_reach_atlas(parity: Parity) -> None:
    """Rates and any other preference, and every setting but the financial year, stay in
    Kimai: none of their values is in any text cell of Atlas DB."""
    planted = [
        r[0]
        for r in kimai(
            parity,
            "SELECT value FROM kimai2_user_preferences WHERE name IN ('hourly_rate', 'plugin_api_secret')",
        )
    ]
    planted += [
        r[0]
        for r in kimai(
            parity, "SELECT value FROM kimai2_configuration WHERE name <> 'company.financial_year'"
        )
    ]
    assert "FIXTURESECRET-ldap" in planted and "97.25" in planted
    columns = pg_query(
        parity.atlas_db,
        "select table_schema, table_name, column_name from information_schema.columns"
        " where data_type in ('text', 'character varying', 'jsonb', 'json', 'ARRAY')"
        " and table_schema not in ('pg_catalog', 'information_schema')",
    )
    for schema, table, column in columns:
        found = pg_query(
            parity.atlas_db,
            f'select count(*) from "{schema}"."{table}" where "{column}"::text = any(%s)'
            f' or "{column}"::text like %s',
            ([p for p in planted if p], "%FIXTURESECRET%"),
        )[0][0]
        assert found == 0, (schema, table, column)
    names = {
        r[0]
        for r in pg_query(
            parity.atlas_db,
            "select name from kimai_replica.replica_kimai_user_preferences"
            " union select name from kimai_replica.replica_kimai_configuration",
        )
    }
    assert "hourly_rate" not in names and "ldap.connection.password" not in names
    assert {"timezone", "work_monday", "company.financial_year"} <= names
