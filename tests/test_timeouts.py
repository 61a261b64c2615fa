"""Nothing hangs: a run held by a lock on either server ends on its own, exit 4.

Each test holds a real lock on a real server while a run is going (proved by the server
showing the run's statement waiting for it), with small configured limits, and checks that
the run ends with exit 4, records why, and leaves the run lock free: the next run, once the
table is free again, succeeds. The limits are far below the time each test allows the run
(`RUN_ALLOWED`), so a run that waited for the holder instead would fail the test.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import (
    kimai_url,
    mariadb_connect,
    pg_connect,
    pg_query,
    run_cli,
    start_cli,
    throwaway_pg_database,
    wait_for,
)

RUN_ALLOWED = 120
"""Seconds a blocked run may take in these tests; every configured limit is far below."""

ADVISORY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A small Kimai and an Atlas DB after a first sync, shared by the module's tests."""
    kimai = f"kimai_t_{uuid.uuid4().hex[:12]}"
    conn = mariadb_connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{kimai}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    tmp: Path = tmp_path_factory.mktemp("timeouts")
    try:
        with throwaway_pg_database() as atlas:
            env = {
                "KIMAI_DB_HOST": "127.0.0.1",
                "KIMAI_DB_PORT": "3306",
                "KIMAI_DB_USER": "root",
                "KIMAI_DB_DATABASE": kimai,
                "ATLAS_DB_HOST": "127.0.0.1",
                "ATLAS_DB_PORT": "5432",
                "ATLAS_DB_USER": "postgres",
                "ATLAS_DB_DATABASE": atlas,
                "ATLAS_SYNC_STATE_DIR": str(tmp / "state"),
            }
            build_kimai(kimai_url(kimai), seed=21, timesheets=500)
            first = run_cli("sync", env=env)
            assert first.returncode == 0, first.stderr
            yield env
    finally:
        conn = mariadb_connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{kimai}`")
        conn.close()


def _outcome(proc: subprocess.Popen[str]) -> str:
    """The run's stderr once it ended; a run still going after `RUN_ALLOWED` fails the test."""
    try:
        return proc.communicate(timeout=RUN_ALLOWED)[1]
    except subprocess.TimeoutExpired:
        proc.kill()  # not left holding the run lock for the next test
        proc.communicate()
        raise


def _last_run(atlas: str, pid: int) -> tuple | None:
    rows = pg_query(
        atlas,
        "SELECT status, exit_code, error, finished_at FROM kimai_replica.sync_runs WHERE pid = %s",
        (pid,),
    )
    return rows[0] if rows else None


def _waiting_on_atlas_lock(atlas: str, pid: int) -> bool:
    """The run (its audit row open) has a statement waiting for a lock on Atlas DB."""
    waiting = pg_query(
        atlas,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query NOT LIKE 'LOCK TABLE%%'",
    )[0][0]
    row = _last_run(atlas, pid)
    return bool(waiting) and row is not None and row[3] is None


def _hold_atlas_table(atlas: str) -> object:
    """A session holding ACCESS EXCLUSIVE on the replica's timesheets (an open transaction)."""
    holder = pg_connect(atlas)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE kimai_replica.replica_kimai_timesheets IN ACCESS EXCLUSIVE MODE")
    return holder


def test_a_run_held_by_a_locked_kimai_table_ends_at_the_lock_wait_limit(synced):
    env = synced
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    blocker = mariadb_connect(db)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES kimai2_timesheet WRITE")
    try:
        proc = start_cli("sync", env=env, extra_env={"KIMAI_DB_LOCK_WAIT_TIMEOUT_SECONDS": "2"})

        def blocked_read() -> bool:
            conn = mariadb_connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s"
                        " AND info LIKE '%%kimai-atlas%%kimai2_timesheet%%'"
                        " AND state LIKE '%%metadata lock%%'",
                        (db,),
                    )
                    return cur.fetchone()[0] > 0
            finally:
                conn.close()

        wait_for(blocked_read, "the run to wait on Kimai's locked timesheets")
        stderr = _outcome(proc)
    finally:
        with blocker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        blocker.close()
    assert proc.returncode == 4, stderr
    assert "Lock wait timeout exceeded" in stderr, stderr
    assert "retry" not in stderr  # a timeout is not retried
    status, code, error, finished = _last_run(atlas, proc.pid)
    assert (status, code) == ("failed", 4) and "Lock wait timeout" in error
    assert pg_query(atlas, ADVISORY) == [(0,)]  # the run lock is free
    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stderr


def test_a_run_held_by_a_locked_replica_table_ends_at_the_lock_limit(synced):
    env = synced
    atlas = env["ATLAS_DB_DATABASE"]
    holder = _hold_atlas_table(atlas)
    try:
        proc = start_cli("sync", env=env, extra_env={"ATLAS_DB_LOCK_TIMEOUT_SECONDS": "2"})
        wait_for(lambda: _waiting_on_atlas_lock(atlas, proc.pid), "the run to wait on Atlas DB")
        stderr = _outcome(proc)
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 4, stderr
    assert "canceling statement due to lock timeout" in stderr, stderr
    status, code, error, _ = _last_run(atlas, proc.pid)
    assert (status, code) == ("failed", 4) and "lock timeout" in error
    assert pg_query(atlas, ADVISORY) == [(0,)]
    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stderr


def test_the_run_deadline_stops_a_run_that_waits_within_its_limits(synced):
    env = synced
    atlas = env["ATLAS_DB_DATABASE"]
    holder = _hold_atlas_table(atlas)
    try:
        # the lock wait alone would be allowed ten minutes: only the deadline can end it
        limits = {"ATLAS_RUN_TIMEOUT_SECONDS": "6", "ATLAS_DB_LOCK_TIMEOUT_SECONDS": "600"}
        proc = start_cli("sync", env=env, extra_env=limits)
        wait_for(lambda: _waiting_on_atlas_lock(atlas, proc.pid), "the run to wait on Atlas DB")
        stderr = _outcome(proc)
        # ended while the table was still locked: the deadline ended it, not the holder
        assert holder.get_transaction_status() != 0 and proc.returncode is not None
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 4, stderr
    assert "timed out after 6 s (ATLAS_RUN_TIMEOUT_SECONDS)" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    status, code, error, finished = _last_run(atlas, proc.pid)
    assert (status, code) == ("failed", 4) and finished is not None
    assert "timed out after 6 s" in error
    assert pg_query(atlas, ADVISORY) == [(0,)]
    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stderr
