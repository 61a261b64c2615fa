"""One Kimai + Atlas DB pair for the dbt tests: databases, sync, overlays, and the view
totals checked against totals computed independently from Kimai (SQL on MariaDB)."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

from pipelines.demo.atlas_overlays import (
    OverlaySummary,
    create_atlas_overlays,
    replica_currencies,
)
from pipelines.demo.kimai_data import build_kimai
from tests.conftest import (
    MARIADB,
    POSTGRES,
    REPO,
    kimai_query,
    kimai_url,
    mariadb_connect,
    pg_connect,
    pg_query,
    run_cli,
)

REPLICA = "kimai_replica"
ANALYTICS = "bi_views"
OVERLAY = "atlas_app"
INTERNAL = f"{ANALYTICS}_internal"

# the budget columns the contract asks of vw_projects, vw_customers and vw_activities
BUDGET_COLUMNS = [
    "budget",
    "time_budget_seconds",
    "is_monthly_budget",
    "budget_used",
    "time_budget_used_seconds",
    "budget_burn_ratio",
    "time_budget_burn_ratio",
    "budget_open",
    "time_budget_open_seconds",
    "internal_cost",
    "profit",
]

CONTRACT_COLUMNS = {
    "vw_timesheet_facts": [
        "timesheet_id",
        "user_id",
        "user_name",
        "project_id",
        "project_name",
        "activity_id",
        "activity_name",
        "customer_id",
        "customer_name",
        "currency",
        "started_at",
        "ended_at",
        "date_tz",
        "duration_seconds",
        "duration_hours",
        "is_running",
        "is_billable",
        "is_exported",
        "revenue",
        "internal_cost",
        "project_status",
        "project_tags",
        "timesheet_tags",
        "rate_amount",
        "report_date",
        "report_week_start_date",
        "report_month_start_date",
        "financial_year_start_date",
    ],
    "vw_projects": [
        "project_id",
        "origin",
        "project_name",
        "customer_id",
        "customer_name",
        "currency",
        "is_visible",
        "is_billable",
        "status_id",
        "status_name",
        "is_prospective",
        "project_tags",
        "payments_collected",
        "money_collected",
        "budget",
        "time_budget_seconds",
        "hours_recorded",
        "billable_hours",
        *BUDGET_COLUMNS,
    ],
    "vw_customers": [
        "customer_id",
        "customer_name",
        "currency",
        "is_visible",
        "project_count",
        "hours_recorded",
        "billable_hours",
        "revenue",
        *BUDGET_COLUMNS,
    ],
    "vw_timesheet_tags": [
        "timesheet_id",
        "tag_id",
        "tag_name",
        "date_tz",
        "user_id",
        "project_id",
        "customer_id",
        "duration_seconds",
        "duration_hours",
        "revenue",
        "currency",
    ],
    "vw_project_tags": ["project_id", "taxonomy_name", "term_name", "tag"],
    "vw_sync_health": [
        "table_name",
        "last_synced_at",
        "replica_rows",
        "kimai_rows",
        "lag_seconds",
        "last_reconciled_at",
        "differences_unrepaired",
        "data_issue_rows",
    ],
    "vw_data_issues": [
        "table_name",
        "row_key",
        "column_name",
        "rule",
        "raw_value",
        "first_seen_at",
    ],
    "vw_users": [
        "user_id",
        "user_name",
        "username",
        "is_enabled",
        "is_system_account",
        "timezone",
        "team_names",
        "work_contract_type",
        "work_monday_seconds",
        "work_tuesday_seconds",
        "work_wednesday_seconds",
        "work_thursday_seconds",
        "work_friday_seconds",
        "work_saturday_seconds",
        "work_sunday_seconds",
        "holidays_per_year",
    ],
    "vw_user_teams": ["user_id", "team_id", "team_name", "is_teamlead"],
    "vw_activities": [
        "activity_id",
        "activity_name",
        "project_id",
        "is_visible",
        "is_billable",
        *BUDGET_COLUMNS,
    ],
    "vw_budget_months": [
        "budget_scope",
        "scope_id",
        "report_month_start_date",
        "currency",
        "budget",
        "time_budget_seconds",
        "budget_used",
        "time_budget_used_seconds",
        "budget_burn_ratio",
        "time_budget_burn_ratio",
        "budget_open",
        "time_budget_open_seconds",
        "duration_seconds",
        "internal_cost",
    ],
    "vw_user_days": [
        "user_id",
        "date_tz",
        "expected_seconds",
        "duration_seconds",
        "billable_seconds",
    ],
}

HOURS = Decimal("0.000001")
MONEY4 = Decimal("0.0001")


# -- helpers -------------------------------------------------------------------------------


@dataclass
class Stack:
    """One Kimai + Atlas DB pair with the replica synced and the overlays created."""

    kimai_db: str
    atlas_db: str
    env: dict[str, str]
    overlays: OverlaySummary
    bi_role: str | None = None


def hours(seconds: int | Decimal) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(HOURS, rounding=ROUND_HALF_UP)


def name_key(name: str) -> tuple[str, str]:
    """The tag order of the models: case-insensitive, then exact."""
    return (name.lower(), name)


def create_overlays(stack_db: str, seed: int = 42, schema: str = OVERLAY) -> OverlaySummary:
    """Atlas's overlay tables in `schema`, for the projects and customers of the replica."""
    conn = pg_connect(stack_db)
    try:
        projects, customers = replica_currencies(conn, REPLICA)
        return create_atlas_overlays(conn, schema, projects, customers, seed=seed)
    finally:
        conn.close()


def transform(stack: Stack, **extra: str) -> Any:
    result = run_cli("transform", env=stack.env, extra_env=extra or None, timeout=600)
    return result


@contextmanager
def make_stack(
    tmp: Path, timesheets: int, seed: int, bi_role: str | None = None
) -> Iterator[Stack]:
    """Create the databases, build Kimai, sync, create overlays; drop everything afterwards."""
    suffix = uuid.uuid4().hex[:12]
    kimai_db, atlas_db = f"kimai_v_{suffix}", f"atlas_v_{suffix}"
    try:
        admin(
            mariadb_connect,
            f"CREATE DATABASE `{kimai_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
        admin(pg_connect, f'CREATE DATABASE "{atlas_db}"')
        if bi_role:
            admin(pg_connect, f"CREATE ROLE {bi_role} LOGIN")
        env = {
            "KIMAI_DB_HOST": MARIADB["host"],
            "KIMAI_DB_PORT": str(MARIADB["port"]),
            "KIMAI_DB_USER": MARIADB["user"],
            "KIMAI_DB_PASSWORD": "",
            "KIMAI_DB_DATABASE": kimai_db,
            "ATLAS_DB_HOST": POSTGRES["host"],
            "ATLAS_DB_PORT": str(POSTGRES["port"]),
            "ATLAS_DB_USER": POSTGRES["user"],
            "ATLAS_DB_PASSWORD": "",
            "ATLAS_DB_DATABASE": atlas_db,
            "ATLAS_ANALYTICS_SCHEMA": ANALYTICS,
            "ATLAS_OVERLAY_SCHEMA": OVERLAY,
            "ATLAS_SYNC_STATE_DIR": str(tmp / suffix / "state"),
        }
        if bi_role:
            env["ATLAS_BI_ROLE"] = bi_role
        (tmp / suffix).mkdir(parents=True)
        build_kimai(kimai_url(kimai_db), seed=seed, timesheets=timesheets)
        synced = run_cli("sync", env=env)
        assert synced.returncode == 0, synced.stderr
        overlays = create_overlays(atlas_db, seed=seed)
        yield Stack(kimai_db, atlas_db, env, overlays, bi_role)
    finally:
        # fresh connections: a long test may outlive an idle one
        admin(mariadb_connect, f"DROP DATABASE IF EXISTS `{kimai_db}`")
        admin(pg_connect, f'DROP DATABASE IF EXISTS "{atlas_db}" WITH (FORCE)')
        if bi_role:
            admin(pg_connect, f"DROP ROLE IF EXISTS {bi_role}")


def admin(connect: Any, sql: str) -> None:
    """Run one statement on a fresh server-level connection (MariaDB or PostgreSQL)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def assert_project_hours_match_kimai(built: Stack) -> None:
    expected = {
        pid: (int(total), int(billable), int(running), int(count))
        for pid, total, billable, running, count in kimai_query(
            built.kimai_db,
            "SELECT project_id,"
            " COALESCE(SUM(CASE WHEN end_time IS NOT NULL THEN duration END), 0),"
            " COALESCE(SUM(CASE WHEN end_time IS NOT NULL AND billable = 1 THEN duration END), 0),"
            " SUM(end_time IS NULL), COUNT(*)"
            " FROM kimai2_timesheet GROUP BY project_id",
        )
    }
    actual = {
        r[0]: r[1:]
        for r in pg_query(
            built.atlas_db,
            "select project_id, hours_recorded, billable_hours, running_timesheet_count,"
            f" timesheet_count from {ANALYTICS}.vw_projects where origin = 'kimai'",
        )
    }
    assert set(actual) == {
        r[0] for r in kimai_query(built.kimai_db, "SELECT id FROM kimai2_projects")
    }
    assert any(v[2] for v in expected.values()), "the fixture should have running timers"
    for pid, (total, billable, running, count) in expected.items():
        assert actual[pid] == (hours(total), hours(billable), running, count), pid
    for pid in set(actual) - set(expected):
        assert actual[pid] == (0, 0, 0, 0)


def assert_user_month_hours_match_kimai(built: Stack) -> None:
    expected = {
        (uid, month): (int(total), int(billable))
        for uid, month, total, billable in kimai_query(
            built.kimai_db,
            "SELECT `user`, DATE_FORMAT(date_tz, '%Y-%m-01'),"
            " SUM(duration), SUM(CASE WHEN billable = 1 THEN duration ELSE 0 END)"
            " FROM kimai2_timesheet WHERE end_time IS NOT NULL GROUP BY 1, 2",
        )
    }
    actual = {
        (uid, month.isoformat()): (int(total), int(billable))
        for uid, month, total, billable in pg_query(
            built.atlas_db,
            "select user_id, month_start_date, sum(duration_seconds), sum(billable_seconds)"
            f" from {ANALYTICS}.vw_timesheet_facts where not is_running group by 1, 2",
        )
    }
    assert actual == expected
    # and the hours column is the seconds in hours, per row
    bad = pg_query(
        built.atlas_db,
        f"select count(*) from {ANALYTICS}.vw_timesheet_facts"
        " where duration_hours <> round(duration_seconds / 3600.0, 6)"
        " or (is_running and (duration_seconds is not null or duration_hours is not null))",
    )
    assert bad == [(0,)]


def assert_customer_money_matches_kimai(built: Stack) -> None:
    expected = {
        cid: (Decimal(revenue).quantize(MONEY4), Decimal(cost).quantize(MONEY4))
        for cid, revenue, cost in kimai_query(
            built.kimai_db,
            "SELECT c.id,"
            " COALESCE(SUM(CASE WHEN t.billable = 1 AND t.end_time IS NOT NULL"
            "   THEN CAST(t.rate AS DECIMAL(18, 4)) ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN t.end_time IS NOT NULL"
            "   THEN CAST(t.internal_rate AS DECIMAL(18, 4)) ELSE 0 END), 0)"
            " FROM kimai2_customers c"
            " LEFT JOIN kimai2_projects p ON p.customer_id = c.id"
            " LEFT JOIN kimai2_timesheet t ON t.project_id = p.id"
            " GROUP BY c.id",
        )
    }
    actual = {
        r[0]: (r[1], r[2])
        for r in pg_query(
            built.atlas_db,
            f"select customer_id, revenue, internal_cost from {ANALYTICS}.vw_customers",
        )
    }
    assert actual == expected
    # project counts include hidden projects
    counts = dict(
        kimai_query(built.kimai_db, "SELECT customer_id, COUNT(*) FROM kimai2_projects GROUP BY 1")
    )
    actual_counts = dict(
        pg_query(built.atlas_db, f"select customer_id, project_count from {ANALYTICS}.vw_customers")
    )
    assert {k: v for k, v in actual_counts.items() if v} == counts
    # revenue is 0 on every non-billable timesheet
    assert pg_query(
        built.atlas_db,
        f"select count(*) from {ANALYTICS}.vw_timesheet_facts where not is_billable and revenue <> 0",
    ) == [(0,)]


def project_copy(dest: Path, marker: str | None = None) -> Path:
    """A copy of the dbt project (for DBT_PROJECT_DIR) that tests may change.

    Args:
        dest: Directory to create.
        marker: If given, every vw_* mart gains a column `build_marker` holding it, so that
            a reader can tell which build each relation it queries comes from.

    """
    for name in ("dbt_project.yml", "profiles.example.yml"):
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, dest / name)
    for folder in ("models", "macros", "tests/dbt"):
        shutil.copytree(REPO / folder, dest / folder)
    if marker is not None:
        for mart in (dest / "models" / "marts").glob("vw_*.sql"):
            body = mart.read_text()
            # Jinja blocks render to nothing inside the parentheses; the body stays intact
            assert not re.search(r";\s*$", body)
            mart.write_text(
                f"select marked.*, '{marker}' as build_marker from (\n{body}\n) as marked\n"
            )
        # the marts' contracts list every column: the marker is declared too
        for spec in (dest / "models" / "marts").glob("*.yml"):
            doc = yaml.safe_load(spec.read_text())
            if not doc.get("models"):
                continue
            for model in doc["models"]:
                model["columns"].append(
                    {"name": "build_marker", "data_type": "text", "description": "Test build."}
                )
            spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def marts_in_project(project: Path = REPO) -> list[str]:
    """The marts of a dbt project: the models under models/marts/, by file name.

    The scheduled build does not write dbt's manifest (only `dbt parse` does); the model
    files are what declares the marts.
    """
    return sorted(p.stem for p in (project / "models" / "marts").glob("*.sql"))


def mart_keys(project: Path = REPO) -> dict[str, str]:
    """The marts of a dbt project (models under models/marts/), each with its key.

    Read from the project's own files: the model files name the marts, their properties
    files the key tests. The key is the column of the mart's `unique` test, or the columns
    of its `unique_combination_of_columns` test, as an ORDER BY list. A new mart is picked
    up by every test that reads this, with nothing to add to the tests.
    """
    marts = marts_in_project(project)
    keys: dict[str, str] = {}
    for spec in sorted((project / "models" / "marts").glob("*.yml")):
        for model in yaml.safe_load(spec.read_text()).get("models") or []:
            for test in model.get("data_tests") or []:
                if isinstance(test, dict) and "unique_combination_of_columns" in test:
                    config = test["unique_combination_of_columns"]
                    columns = config.get("arguments", config)["combination_of_columns"]
                    keys[model["name"]] = ", ".join(columns)
            for column in model.get("columns") or []:
                if "unique" in (column.get("data_tests") or []):
                    keys.setdefault(model["name"], column["name"])
    missing = sorted(set(marts) - set(keys))
    assert not missing, f"marts without a key test: {missing}"
    return {mart: keys[mart] for mart in marts}
