"""The build gate: a scheduled run that finds nothing changed does no dbt work; any change
to what a build reads (Kimai's rows, an overlay row, a model file), a failed last build or
an old one makes it build."""

from __future__ import annotations

import re

import pytest

from pipelines.demo.atlas_overlays import create_atlas_overlays, replica_currencies
from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_exec, kimai_query, kimai_url, pg_connect, pg_query, run_cli
from tests.stack import project_copy

# a line of `python -X importtime` for a module of dbt (`dbt`, `dbt.cli.main`, ...)
DBT_IMPORT = re.compile(r"^import time:.*\|\s+dbt(\.|\s*$)", re.MULTILINE)


@pytest.fixture
def synced(env):
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=5, timesheets=300)
    assert run_cli("sync", env=env).returncode == 0
    conn = pg_connect(env["ATLAS_DB_DATABASE"])
    try:
        projects, customers = replica_currencies(conn, "kimai_replica")
        create_atlas_overlays(conn, "public", projects, customers, seed=5)
    finally:
        conn.close()
    return env


def scheduled_run(env: dict[str, str], expect: int = 0, **extra: str) -> str:
    """One scheduled run (`python -m pipelines.run`); its stdout."""
    out = run_cli(env=env, extra_env=extra or None, timeout=600)
    assert out.returncode == expect, out.stdout + out.stderr
    return out.stdout + out.stderr


def last_build(db: str) -> tuple:
    """(build_status, published_at) of the newest run."""
    return pg_query(
        db,
        "SELECT build_status, published_at FROM kimai_replica.sync_runs"
        " ORDER BY started_at DESC LIMIT 1",
    )[0]


def live_schema_oid(db: str) -> int:
    """The live BI schema's identity: every publication swaps it for the shadow one."""
    return pg_query(db, "SELECT oid FROM pg_namespace WHERE nspname = 'analytics'")[0][0]


def bi_scans(db: str) -> int:
    """Scans of the tables builds materialize in the BI schemas, since the server started."""
    return pg_query(
        db,
        "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)"
        " FROM pg_stat_user_tables WHERE schemaname LIKE 'analytics%'",
    )[0][0]


def assert_built(db: str, oid_before: int) -> int:
    status, published_at = last_build(db)
    assert status == "published" and published_at is not None
    oid = live_schema_oid(db)
    assert oid != oid_before  # swapped: a new build is what BI reads
    return oid


def test_quiet_runs_skip_dbt_and_every_changed_input_builds(synced, tmp_path):
    env, db = synced, synced["ATLAS_DB_DATABASE"]
    scheduled_run(env)
    assert last_build(db)[0] == "published"
    oid = live_schema_oid(db)

    # nothing changed: no dbt imported, no query on BI's tables, the build confirmed current
    scans = bi_scans(db)
    out = scheduled_run(env, PYTHONPROFILEIMPORTTIME="1")
    assert "dbt build skipped: nothing it reads changed" in out
    assert "import time:" in out and not DBT_IMPORT.search(out)
    status, confirmed = last_build(db)
    assert status == "unchanged" and live_schema_oid(db) == oid
    assert bi_scans(db) == scans
    health = pg_query(
        db,
        "SELECT DISTINCT last_build_status, served_build_published_at"
        " FROM analytics.vw_sync_health",
    )
    assert health == [("unchanged", confirmed)]
    kimai_total = kimai_query(
        env["KIMAI_DB_DATABASE"], "SELECT count(*), sum(duration) FROM kimai2_timesheet"
    )[0]
    bi_total = pg_query(
        db, "SELECT count(*), sum(duration_seconds) FROM analytics.vw_timesheet_facts"
    )[0]
    assert tuple(map(int, bi_total)) == tuple(map(int, kimai_total))

    # a timesheet edited in Kimai
    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        "UPDATE kimai2_timesheet SET description = 'gate', modified_at = NOW()"
        " WHERE id = (SELECT min(id) FROM (SELECT id FROM kimai2_timesheet) AS t)",
    )
    scheduled_run(env)
    oid = assert_built(db, oid)

    # an overlay row edited by Atlas
    pg_query(
        db,
        "UPDATE public.project_statuses SET name = name || ' (gate)'"
        " WHERE id = (SELECT min(id) FROM public.project_statuses)",
    )
    scheduled_run(env)
    oid = assert_built(db, oid)

    # the same project elsewhere digests the same; a changed model file builds
    project = project_copy(tmp_path / "project")
    scheduled_run(env, DBT_PROJECT_DIR=str(project))
    assert last_build(db)[0] == "unchanged"
    model = project / "models" / "marts" / "vw_projects.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    scheduled_run(env, DBT_PROJECT_DIR=str(project))
    oid = assert_built(db, oid)

    # a failed build (a payment in a currency that does not exist), then the inputs of the
    # last green build again: it builds, since the last build failed
    first = "WHERE id = (SELECT min(id) FROM public.payments)"
    currency = pg_query(db, f"SELECT currency FROM public.payments {first}")[0][0]
    pg_query(db, f"UPDATE public.payments SET currency = 'QQQ' {first}")
    out = scheduled_run(env, expect=1, DBT_PROJECT_DIR=str(project))
    assert "is_iso_currency_code" in out and last_build(db)[0] == "failed"
    assert live_schema_oid(db) == oid
    pg_query(db, f"UPDATE public.payments SET currency = %s {first}", (currency,))
    scheduled_run(env, DBT_PROJECT_DIR=str(project))
    oid = assert_built(db, oid)

    # nothing changed, but the last build is older than ATLAS_BUILD_MAX_AGE_HOURS
    scheduled_run(env, DBT_PROJECT_DIR=str(project), ATLAS_BUILD_MAX_AGE_HOURS="0")
    assert_built(db, oid)
