"""The run lock cannot be lost silently, and its holder is named whatever its role.

A run whose lock session dies (killed backend, server restart, dropped connection) stops
before its next write with exit 4 and writes nothing more; the next run repairs the replica
and marks it crashed.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import (
    first_sync,
    kimai_exec,
    kimai_query,
    mariadb_connect,
    pg_connect,
    pg_query,
    run_audit_row,
    run_cli,
    start_cli,
    wait_for,
)
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import OVERLAY, create_overlays

REPLICA = "kimai_replica"


@pytest.fixture
def synced(env):
    return first_sync(env, seed=5, timesheets=2_000)


def test_a_run_whose_lock_session_is_killed_stops_before_writing(synced):
    env = synced
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET description = 'after the lock', modified_at = UTC_TIMESTAMP()"
        " WHERE id <= 25",
    )
    blocker = mariadb_connect(db)  # holds the run in its planning reads
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES kimai2_timesheet WRITE")
    try:
        proc = start_cli("sync", env=env)

        def blocked_read() -> bool:
            rows = kimai_query(
                db,
                "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s"
                " AND info LIKE '%%kimai-atlas%%kimai2_timesheet%%'"
                " AND state LIKE '%%metadata lock%%'",
                (db,),
            )
            return rows[0][0] > 0

        wait_for(blocked_read, "the run to wait on Kimai's timesheets")
        holder = wait_for(
            lambda: pg_query(
                atlas,
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"kimai-atlas-sync pid={proc.pid} host=%",),
            ),
            "the run's lock session",
        )[0][0]
        assert run_audit_row(atlas, proc.pid)[1] is None  # the run is in progress
        pg_query(atlas, f"SELECT pg_terminate_backend({holder})")
    finally:
        with blocker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        blocker.close()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 4, stderr
    assert "the run lock was lost before" in stderr, stderr
    # nothing was written: neither the changed rows nor the run's end
    replica = pg_query(
        atlas,
        f"SELECT count(*) FROM {REPLICA}.replica_kimai_timesheets"
        " WHERE description = 'after the lock'",
    )
    assert replica == [(0,)]
    status, finished_at, _ = run_audit_row(atlas, proc.pid)
    assert (status, finished_at) == ("running", None)

    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stderr
    assert run_audit_row(atlas, proc.pid)[0] == "crashed"
    assert_replica_equals_kimai(db, atlas)


def test_the_holder_is_named_when_another_role_holds_the_lock(synced):
    env = synced
    role = f"lock_viewer_{uuid.uuid4().hex[:8]}"
    pg_query("postgres", f"CREATE ROLE {role} LOGIN")
    holder = pg_connect(env["ATLAS_DB_DATABASE"])
    try:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SET application_name = 'kimai-atlas-sync pid=4242 host=elsewhere'")
            cur.execute(
                "SELECT pg_advisory_lock(hashtextextended('kimai-atlas-sync:kimai_replica', 0))"
            )
        # this role sees another role's session without its start time or address
        out = run_cli("sync", env={**env, "ATLAS_DB_USER": role})
        assert out.returncode == 3, out.stderr
        assert "pid=4242 host=elsewhere" in out.stderr, out.stderr
        assert "role postgres" in out.stderr and "Traceback" not in out.stderr
    finally:
        holder.close()
        pg_query("postgres", f"DROP ROLE {role}")


def test_a_run_that_loses_its_lock_during_the_build_records_nothing_more(synced, tmp_path):
    env = {**synced, "ATLAS_OVERLAY_SCHEMA": OVERLAY}
    atlas = env["ATLAS_DB_DATABASE"]
    create_overlays(atlas, seed=5)
    metrics = tmp_path / "kimai_atlas.prom"
    proc = start_cli("--metrics-file", str(metrics), env=env)
    # the sync is recorded and the dbt build is under way
    wait_for(lambda: (run_audit_row(atlas, proc.pid) or ())[2:] == ("running",), "the build")
    holder = pg_query(
        atlas,
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"kimai-atlas-sync pid={proc.pid} host=%",),
    )[0][0]
    assert proc.poll() is None
    pg_query(atlas, f"SELECT pg_terminate_backend({holder})")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 4, stderr
    assert "the run lock was lost before publishing the build" in stderr, stderr
    # nothing after the loss: neither the build's failure nor the run's end, no publication
    assert run_audit_row(atlas, proc.pid) == ("running", None, "running")
    published = pg_query(
        atlas, f"SELECT count(*) FROM {REPLICA}.sync_runs WHERE published_at IS NOT NULL"
    )
    assert published == [(0,)]
    assert "kimai_atlas_sync_last_run_success 0" in metrics.read_text()
