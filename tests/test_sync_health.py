"""Run audit → status, metrics and vw_sync_health; the dbt tests that read the audit."""

from __future__ import annotations

import json

import pytest

from pipelines.demo.kimai_data import build_kimai
from pipelines.registry import TABLES
from tests.conftest import first_sync, kimai_url, pg_query, run_cli, wait_for
from tests.metric_families import ALL_FAMILIES, RUN_FAMILIES, parse
from tests.stack import create_overlays


def sessions_opened(db: str) -> int:
    """Sessions PostgreSQL has opened on `db`, once the product's sessions have all ended.

    A session is counted when it ends, so first wait for every product session to be gone.
    """
    wait_for(
        lambda: (
            not pg_query(
                db,
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND application_name LIKE 'kimai-atlas%%'",
                (db,),
            )
        ),
        "the run's sessions to end",
    )
    return pg_query(db, "SELECT sessions FROM pg_stat_database WHERE datname = %s", (db,))[0][0]


@pytest.fixture
def stack(env):
    first_sync(env, seed=9, timesheets=600)
    create_overlays(env["ATLAS_DB_DATABASE"], seed=9, schema="public")
    return env


def test_health_view_status_and_metrics_agree_with_the_replica(stack, tmp_path):
    env, db = stack, stack["ATLAS_DB_DATABASE"]
    out = run_cli("reconcile", "--metrics-file", str(tmp_path / "m.prom"), env=env)
    assert out.returncode == 0, out.stderr
    before = sessions_opened(db)
    out = run_cli("transform", env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    # dbt's threads keep their sessions from node to node: a session per node was ~260
    assert sessions_opened(db) - before <= 20
    health = {
        r[0]: r[1:]
        for r in pg_query(
            db,
            "SELECT table_name, replica_rows, kimai_rows, lag_seconds,"
            " differences_unrepaired, last_reconciled_at FROM analytics.vw_sync_health",
        )
    }
    assert set(health) == {t.name for t in TABLES}
    for spec in TABLES:
        actual = pg_query(db, f"SELECT count(*) FROM kimai_replica.{spec.replica_table}")[0][0]
        replica_rows, kimai_rows, lag, unrepaired, reconciled_at = health[spec.name]
        assert replica_rows == kimai_rows == actual
        assert 0 <= lag < 600 and unrepaired == 0 and reconciled_at is not None

    status = run_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)  # only JSON on stdout
    assert report["stale_tables"] == []
    assert {t["table_name"]: t["replica_rows"] for t in report["tables"]} == {
        k: v[0] for k, v in health.items()
    }
    assert [r["command"] for r in report["runs"]][:3] == ["transform", "reconcile", "sync"]
    metrics = parse((tmp_path / "m.prom").read_text())
    assert metrics.families == ALL_FAMILIES
    assert metrics.value("kimai_atlas_sync_replica_rows", table="timesheets") == 600
    assert metrics.value("kimai_atlas_sync_last_run_success") == 1
    # a threshold of zero minutes makes every table stale: exit 1 for cron monitors
    assert run_cli("status", "--max-lag", "0", env=env).returncode == 1


@pytest.mark.heavy
def test_dbt_fails_on_lost_rows_and_on_unrepaired_differences(stack):
    env, db = stack, stack["ATLAS_DB_DATABASE"]
    # a replica row lost behind the sync's back (a tag pair: no other test depends on it)
    pg_query(
        db,
        "DELETE FROM kimai_replica.replica_kimai_timesheet_tags WHERE timesheet_id ="
        " (SELECT min(timesheet_id) FROM kimai_replica.replica_kimai_timesheet_tags)",
    )
    # and a reconciliation that could not repair everything: one build fails on both
    run_id = pg_query(
        db, "SELECT run_id FROM kimai_replica.sync_runs ORDER BY started_at DESC LIMIT 1"
    )[0][0]
    pg_query(
        db,
        "UPDATE kimai_replica.sync_run_tables SET reconciled = true, differences_unrepaired = 2"
        " WHERE run_id = %s AND table_name = 'timesheets'",
        (run_id,),
    )
    out = run_cli("transform", env=env, timeout=600)
    assert out.returncode == 1
    assert "assert_replica_counts_match_last_sync" in out.stderr
    assert "assert_last_reconcile_left_nothing_unrepaired" in out.stderr
    # the next reconciling run restores the row and leaves nothing unrepaired
    assert run_cli("reconcile", env=env).returncode == 0
    out = run_cli("transform", env=env, timeout=600)
    assert out.returncode == 0, out.stderr


def test_failed_runs_are_audited(env):
    out = run_cli("sync", env={**env, "KIMAI_DB_DATABASE": "no_such_db"})
    assert out.returncode == 2
    rows = pg_query(
        env["ATLAS_DB_DATABASE"],
        "SELECT command, status, exit_code, error FROM kimai_replica.sync_runs",
    )
    assert len(rows) == 1
    command, status, code, error = rows[0]
    assert (command, status, code) == ("sync", "failed", 2) and "Unknown database" in error


def test_source_freshness_turns_red_for_the_stalled_table_only(stack, tmp_path):
    from pipelines.config import load_settings
    from pipelines.errors import DataTestFailed
    from pipelines.transform import run_dbt

    env, db = stack, stack["ATLAS_DB_DATABASE"]
    settings = load_settings(env, dotenv=False)
    fresh = run_dbt(settings, ["source", "freshness"], target_dir=tmp_path / "dbt")
    assert not fresh.failed and not fresh.warned and fresh.passed >= len(TABLES)
    # users have not been synced for seven hours (past the 6-hour error threshold) while
    # every other table was synced just now
    pg_query(
        db,
        "UPDATE kimai_replica.sync_run_tables SET recorded_at = recorded_at - interval '7 hours'"
        " WHERE table_name = 'users'",
    )
    with pytest.raises(DataTestFailed) as failed:
        run_dbt(settings, ["source", "freshness"], target_dir=tmp_path / "dbt")
    message = str(failed.value)
    assert "1 failing node(s): replica_kimai_users (error" in message, message


def test_a_run_that_cannot_reach_atlas_still_writes_that_it_failed(env, tmp_path):
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=4, timesheets=50)
    metrics = tmp_path / "m.prom"
    good = run_cli("sync", "--metrics-file", str(metrics), env=env)
    assert good.returncode == 0, good.stderr
    written = parse(metrics.read_text())
    assert written.value("kimai_atlas_sync_last_run_success") == 1
    assert written.value("kimai_atlas_sync_audit_readable") == 1
    down = run_cli(
        "sync",
        "--metrics-file",
        str(metrics),
        env={**env, "ATLAS_DB_PORT": "5999"},  # nothing listens there
        extra_env={"ATLAS_RETRY_ATTEMPTS": "1"},
    )
    assert down.returncode == 4, down.stderr
    text = metrics.read_text()
    written = parse(text)
    assert written.value("kimai_atlas_sync_last_run_success") == 0, text
    assert written.value("kimai_atlas_sync_audit_readable") == 0
    assert written.families == RUN_FAMILIES  # nothing it could not read
