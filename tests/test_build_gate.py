"""The build gate: a scheduled run that finds nothing changed does no dbt work; any change
to what a build reads (Kimai's rows, an overlay row, a model file, a setting), a failed last
build, a missing view or an old build makes it build.

End to end (the CLI, dbt) for a quiet run and a Kimai edit; every other reason through the
gate's own decision on the same real databases, each undone to show the digest returns."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.adapters.replica import open_replica
from pipelines.build_gate import decide, read_inputs
from pipelines.config import load_settings
from pipelines.record.audit import Audit
from tests.conftest import first_sync, kimai_exec, kimai_query, pg_query, run_cli, sync_now
from tests.stack import create_overlays, project_copy

# a line of `python -X importtime` for a module of dbt (`dbt`, `dbt.cli.main`, ...)
DBT_IMPORT = re.compile(r"^import time:.*\|\s+dbt(\.|\s*$)", re.MULTILINE)


@pytest.fixture
def synced(env):
    first_sync(env, seed=5, timesheets=300)
    create_overlays(env["ATLAS_DB_DATABASE"], seed=5, schema="public")
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


@pytest.mark.heavy
def test_a_quiet_run_skips_dbt_and_a_kimai_edit_builds(synced):
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

    # a timesheet edited in Kimai: the sync's write moves the change log, and it builds
    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        "UPDATE kimai2_timesheet SET description = 'gate', modified_at = NOW()"
        " WHERE id = (SELECT min(id) FROM (SELECT id FROM kimai2_timesheet) AS t)",
    )
    scheduled_run(env)
    assert_built(db, oid)

    # every other reason, through the gate's decision on these databases
    settings = load_settings(dotenv=False)
    replica = open_replica(settings)
    try:
        assert_each_change_forces_a_build(settings, replica, db, env)
    finally:
        replica.close()


def assert_each_change_forces_a_build(settings, replica, db, env) -> None:
    runs = replica.qualified("sync_runs")

    def decision(settings=settings):
        return decide(settings, replica, runs, read_inputs(settings, replica))

    def verdict(settings=settings) -> str | None:
        """None when the gate would skip dbt; why it would build otherwise."""
        found = decision(settings)
        return found.reason if found.build else None

    assert verdict() is None  # as the CLI would find it after its own build

    first = "WHERE id = (SELECT min(id) FROM public.project_statuses)"
    pg_query(db, f"UPDATE public.project_statuses SET name = name || ' (gate)' {first}")
    assert verdict() == "overlays changed"
    pg_query(db, f"UPDATE public.project_statuses SET name = replace(name, ' (gate)', '') {first}")
    assert verdict() is None

    kimai_exec(
        env["KIMAI_DB_DATABASE"],
        "DELETE FROM kimai2_timesheet WHERE id = (SELECT max(id) FROM"
        " (SELECT id FROM kimai2_timesheet) AS t)",
    )
    sync_now("timesheets")
    assert verdict() == "replica changed: a delta build"
    # the shadow schemas hold the build published before the last: built from this project,
    # its views are kept; built from another, every view is rebuilt
    assert decision().keep_views
    marker = ('"project": "', '"project": "x')
    swap_marker = (
        "UPDATE kimai_replica.sync_runs SET build_inputs = replace(build_inputs, %s, %s)"
        " WHERE run_id = (SELECT run_id FROM kimai_replica.sync_runs"
        " WHERE build_status = 'published' ORDER BY published_at DESC OFFSET 1 LIMIT 1)"
    )
    pg_query(db, swap_marker, marker)
    assert not decision().keep_views
    pg_query(db, swap_marker, marker[::-1])
    # a full audit instead: when switched off, when the last one is old, after a rewrite
    assert verdict(replace(settings, full_audit_hours=0)) == (
        "replica changed; a full audit: ATLAS_FULL_AUDIT_HOURS is 0"
    )
    pg_query(
        db,
        "UPDATE kimai_replica.sync_runs SET published_at = published_at - interval '25 hours'"
        " WHERE build_status = 'published'",
    )
    assert verdict() == "replica changed; a full audit: the last is older than 24 h"
    pg_query(
        db,
        "UPDATE kimai_replica.sync_runs SET published_at = published_at + interval '25 hours'"
        " WHERE build_status = 'published'",
    )
    pg_query(db, "TRUNCATE kimai_replica.replica_kimai_configuration")  # logs a rewrite
    assert verdict() == "replica changed; a full audit: a table was rewritten"
    sync_now("configuration")
    # (from here on, the last build is the one of a run recording these inputs)
    record_build(replica, settings, "published")
    assert verdict() is None

    project = project_copy(Path(settings.state_dir) / "project")
    moved = replace(settings, dbt_project_dir=project)
    assert verdict(moved) is None  # the same project elsewhere digests the same
    model = project / "models" / "marts" / "vw_projects.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert verdict(moved) == "project changed"
    assert verdict(replace(settings, report_timezone="Europe/Berlin")) == "project changed"

    assert verdict(replace(settings, build_max_age_hours=0)).startswith("the last build is older")

    pg_query(db, "ALTER VIEW analytics.vw_users RENAME TO vw_users_gone")
    assert verdict() == "BI's vw_users missing"
    pg_query(db, "ALTER VIEW analytics.vw_users_gone RENAME TO vw_users")
    assert verdict() is None

    # a failed build, whose inputs are those of the last green one: it builds again
    record_build(replica, settings, "failed")
    assert verdict() == "the last build failed"


def record_build(replica, settings, outcome: str) -> None:
    """A `transform` run recorded through the audit as the runner records one."""
    audit = Audit(replica)
    record = audit.start("transform", "cli", {})
    audit.build_started(record, read_inputs(settings, replica).to_json())
    if outcome == "published":
        audit.mark_published(record)
        audit.finish(record, "success", 0)
    else:
        audit.build_failed(record, "a data test failed")
        audit.finish(record, "failed", 1)
