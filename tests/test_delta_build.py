"""Delta builds: a scheduled build after Kimai changed tests the rows that changed, row by
row, and leaves set-level checks to the full audit; the full audit tests every row.

Faults are planted in the replica (the sync would not write them): one with the change log
switched off, so no build can know that row changed, and one logged as a write. A delta
build passes over the first (it tests what changed) and fails on the second; the full audit
that follows a failed build fails on the first. With the incremental facts table, whose
rewritten rows are what a delta build tests."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.demo.servers import pg_query
from tests.conftest import first_sync, kimai_exec, run_cli
from tests.stack import create_overlays, project_copy

NOT_NULL = "not_null_columns_stg_kimai__timesheets"
TIMESHEETS = "kimai_replica.replica_kimai_timesheets"
CURRENCY = "source_is_iso_currency_code_kimai_replica_kimai_customers_currency"


def scheduled_run(env: dict[str, str], expect: int) -> str:
    out = run_cli(env=env, timeout=600)
    assert out.returncode == expect, out.stdout + out.stderr
    return out.stdout + out.stderr


def nodes_passed(out: str) -> int:
    return int(re.search(r"build passed[^:]*: (\d+) nodes ok", out).group(1))


def newest_build(db: str) -> tuple[str, str | None]:
    """(build_status, the build's audit: full or delta) of the newest run."""
    status, inputs = pg_query(
        db,
        "SELECT build_status, build_inputs FROM kimai_replica.sync_runs"
        " ORDER BY started_at DESC LIMIT 1",
    )[0]
    return status, json.loads(inputs).get("audit") if inputs else None


def data_tests_ran(env: dict[str, str]) -> set[str]:
    """The names of the data tests the newest dbt invocation ran (its run_results.json)."""
    from pipelines.config import load_settings
    from pipelines.transform import work_dir

    results = work_dir(load_settings(env, dotenv=False)) / "target" / "run_results.json"
    nodes = json.loads(results.read_text())["results"]
    return {r["unique_id"].split(".")[2] for r in nodes if r["unique_id"].startswith("test.")}


def live_oid(db: str) -> int:
    return pg_query(db, "SELECT oid FROM pg_namespace WHERE nspname = 'analytics'")[0][0]


def view_oid(db: str, view: str) -> int:
    return pg_query(db, f"SELECT '{view}'::regclass::oid")[0][0]


def edit_in_kimai(env: dict[str, str], timesheet_id: int, text: str) -> None:
    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        f"UPDATE kimai2_timesheet SET description = '{text}', modified_at = NOW()"
        f" WHERE id = {timesheet_id}",
    )


@pytest.mark.heavy
def test_a_delta_build_tests_the_changed_rows_and_the_full_audit_every_row(env):
    env["ATLAS_TIMESHEET_FACTS_MATERIALIZATION"] = "table_incremental"
    db = env["ATLAS_DB_DATABASE"]
    first_sync(env, seed=11, timesheets=300)
    create_overlays(db, seed=11, schema="public")
    ids = [r[0] for r in pg_query(db, f"SELECT id FROM {TIMESHEETS} ORDER BY id")]
    hidden, edited, logged, negative = ids[10], ids[150], ids[200], ids[250]

    full = scheduled_run(env, 0)
    assert "dbt build passed" in full
    assert newest_build(db) == ("published", "full")
    facts_view = view_oid(db, "analytics.vw_timesheet_facts")
    # a second full build: the shadow schemas then hold the incremental facts table too (a
    # delta build into schemas without it creates it, and so tests every row)
    assert run_cli("transform", env=env, timeout=600).returncode == 0

    # a bad row no build can know changed (the change log off), then edits in Kimai
    pg_query(
        db,
        "SET LOCAL atlas_sync.change_log = 'off';"
        f' UPDATE {TIMESHEETS} SET "user" = NULL WHERE id = {hidden}',
    )
    edit_in_kimai(env, edited, "delta one")
    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        "UPDATE kimai2_timesheet SET duration = -60, modified_at = NOW()"
        f" WHERE id = {negative} AND end_time IS NOT NULL",
    )
    delta = scheduled_run(env, 0)
    assert "delta build passed (set-level checks wait for the full audit)" in delta
    assert newest_build(db) == ("published", "delta")
    assert nodes_passed(delta) < nodes_passed(full)  # the set-level tests were left out
    # only timesheets changed: no test that reads only other Kimai tables ran
    ran = data_tests_ran(env)
    assert any(t.startswith(NOT_NULL) for t in ran) and CURRENCY not in ran
    for other in ("customers", "projects", "activities", "users"):
        assert not any(t.startswith(f"not_null_columns_stg_kimai__{other}") for t in ran)
    assert "not_null_columns_stg_sync__runs_run_id" in ran  # the run audit: every run
    # the shadow schemas held the first run's build, of this same project: the delta
    # refreshed its tables and kept its views, which BI now reads
    assert view_oid(db, "analytics.vw_timesheet_facts") == facts_view
    issues = "SELECT row_key, rule FROM analytics.vw_data_issues WHERE table_name = 'timesheets'"
    assert (str(negative), "negative_duration") in pg_query(db, issues)
    assert pg_query(
        db, f"SELECT description FROM analytics.vw_timesheet_facts WHERE timesheet_id = {edited}"
    ) == [("delta one",)]

    # a bad row the change log names: the delta build tests it, fails, publishes nothing;
    # a customer renamed in Kimai meanwhile brings the customers' tests in
    oid = live_oid(db)
    pg_query(db, f'UPDATE {TIMESHEETS} SET "user" = NULL WHERE id = {logged}')
    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        "UPDATE kimai2_customers SET name = 'renamed' ORDER BY id LIMIT 1",
    )
    failed = scheduled_run(env, 1)
    assert "delta build failed" in failed and NOT_NULL in failed
    assert CURRENCY in data_tests_ran(env)
    assert newest_build(db)[0] == "failed" and live_oid(db) == oid

    # repaired; after a failed build the next is a full audit, which finds the hidden row
    pg_query(
        db,
        f'UPDATE {TIMESHEETS} SET "user" = (SELECT "user" FROM {TIMESHEETS}'
        f" WHERE id = {edited}) WHERE id = {logged}",
    )
    audit = scheduled_run(env, 1)
    assert "dbt build failed" in audit and "delta" not in audit
    assert NOT_NULL in audit and live_oid(db) == oid
    rows = pg_query(db, "SELECT count(*) FROM analytics.vw_timesheet_facts")
    assert rows == [(len(ids),)]  # BI still reads the last published build


@pytest.mark.heavy
def test_a_delta_build_finds_the_changed_tables_sources_by_table_name(env, tmp_path):
    # a project of one's own (DBT_PROJECT_DIR) whose Kimai source has another name
    project = project_copy(tmp_path / "renamed")
    for path in [*project.rglob("*.sql"), *project.rglob("*.yml")]:
        text = path.read_text()
        renamed = text.replace("source('kimai',", "source('kimai_data',")
        renamed = re.sub(r"(?m)^  - name: kimai$", "  - name: kimai_data", renamed)
        if renamed != text:
            path.write_text(renamed)
    env["DBT_PROJECT_DIR"] = str(project)
    db = env["ATLAS_DB_DATABASE"]
    first_sync(env, seed=13, timesheets=300)
    create_overlays(db, seed=13, schema="public")
    assert "dbt build passed" in scheduled_run(env, 0)
    ids = [r[0] for r in pg_query(db, f"SELECT id FROM {TIMESHEETS} ORDER BY id")]
    edit_in_kimai(env, ids[100], "renamed source")
    assert "delta build passed" in scheduled_run(env, 0)
    ran = data_tests_ran(env)
    assert any(t.startswith(NOT_NULL) for t in ran)
    assert "not_null_columns_stg_sync__runs_run_id" in ran
    assert not any(t.startswith("not_null_columns_stg_kimai__customers") for t in ran)


@pytest.mark.heavy
def test_a_view_delta_build_reads_the_logged_timesheets_unless_a_parent_changed(env):
    # the default `view` materialization: no facts table says which rows a build rewrote
    db, kimai_db = env["ATLAS_DB_DATABASE"], env["KIMAI_DB_DATABASE"]
    first_sync(env, seed=17, timesheets=300)
    create_overlays(db, seed=17, schema="public")
    ids = [r[0] for r in pg_query(db, f"SELECT id FROM {TIMESHEETS} ORDER BY id")]
    hidden, edited = ids[10], ids[150]
    assert "dbt build passed" in scheduled_run(env, 0)

    # a bad row no build can know changed (the change log off), then an edit in Kimai: the
    # delta build's timesheet tests read the timesheets logged since the last build only
    pg_query(
        db,
        "SET LOCAL atlas_sync.change_log = 'off';"
        f' UPDATE {TIMESHEETS} SET "user" = NULL WHERE id = {hidden}',
    )
    edit_in_kimai(env, edited, "view delta")
    delta = scheduled_run(env, 0)
    assert "delta build passed" in delta and newest_build(db) == ("published", "delta")
    assert any(t.startswith(NOT_NULL) for t in data_tests_ran(env))
    assert pg_query(
        db, f"SELECT description FROM analytics.vw_timesheet_facts WHERE timesheet_id = {edited}"
    ) == [("view delta",)]

    # a project renamed in Kimai reaches each of its timesheets' rows: then they read every
    # row, and the hidden one fails the build
    oid = live_oid(db)
    kimai_exec(kimai_db, "UPDATE kimai2_projects SET name = 'renamed' ORDER BY id LIMIT 1")
    edit_in_kimai(env, ids[160], "after a rename")
    failed = scheduled_run(env, 1)
    assert "delta build failed" in failed and NOT_NULL in failed
    assert newest_build(db)[0] == "failed" and live_oid(db) == oid
