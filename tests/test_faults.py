"""Faults injected for real: database servers restarted mid-run.

These tests restart the shared MariaDB and PostgreSQL servers, so they run on their own,
after the parallel part of the suite (marker ``serial``; see scripts/test).
"""

from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import (
    kimai_url,
    mariadb_connect,
    pg_connect,
    pg_query,
    run_audit_row,
    run_cli,
    start_cli,
    throwaway_mariadb_database,
)
from tests.replica_check import assert_replica_equals_kimai

pytestmark = [pytest.mark.serial, pytest.mark.slow]

FAST_RETRIES = {"ATLAS_RETRY_ATTEMPTS": "6", "ATLAS_RETRY_BASE_SECONDS": "0.5"}


def _wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError("service did not come back")


def _mariadb_up() -> bool:
    mariadb_connect().close()
    return True


def _postgres_up() -> bool:
    pg_connect().close()
    return True


def restart_mariadb(while_down=None) -> None:
    """Shut MariaDB down and start it again; `while_down()` runs while it is down."""
    subprocess.run(
        ["mysqladmin", "--protocol=TCP", "-h", "127.0.0.1", "-u", "root", "shutdown"], check=False
    )
    _wait_until(
        lambda: subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode != 0, 60
    )
    if while_down is not None:
        while_down()
    time.sleep(1.0)  # stay down long enough for the runner to notice
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ],
        check=True,
    )
    _wait_until(_mariadb_up)


def restart_postgres() -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
    )
    _wait_until(_postgres_up)


def _wait_for_query(db: str, pattern: str, timeout: float = 30.0) -> bool:
    """Wait until MariaDB runs a query matching `pattern` on `db` (the extract is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = mariadb_connect()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s AND info LIKE %s",
                (db, pattern),
            )
            found = cur.fetchone()[0]
        conn.close()
        if found:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def big_kimai_database():
    """300,000 timesheets, built once for the module: each test syncs it into its own Atlas
    DB (the first only reads Kimai; the second changes rows, which any sync then reads)."""
    with throwaway_mariadb_database() as name:
        build_kimai(kimai_url(name), seed=13, timesheets=300_000)
        yield name


@pytest.fixture
def big_kimai(env, big_kimai_database, monkeypatch):
    monkeypatch.setenv("KIMAI_DB_DATABASE", big_kimai_database)
    return {**env, "KIMAI_DB_DATABASE": big_kimai_database}


def test_mariadb_restarted_mid_extract(big_kimai):
    env = big_kimai
    proc = start_cli("sync", env=env, extra_env=FAST_RETRIES)
    assert _wait_for_query(env["KIMAI_DB_DATABASE"], "%kimai2_timesheet%ORDER BY%")
    seen: list = []

    def in_progress() -> None:
        # Kimai is down: the run has not ended, and its audit row has no end
        seen.append((proc.poll(), run_audit_row(env["ATLAS_DB_DATABASE"], proc.pid)))

    restart_mariadb(while_down=in_progress)
    ((code, row),) = seen
    assert code is None and row is not None and row[0] == "running" and row[1] is None
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 4), err
    if proc.returncode == 4:
        # the run's own error, once, last; before it only the run's own retry warnings (as
        # many as Kimai's downtime took), never a driver's log or a traceback
        *before, last = err.strip().splitlines()
        assert last.startswith("error: ") and "Traceback" not in err, err
        assert all(
            " WARNING " in line and ("retry" in line or "resuming" in line) for line in before
        ), err
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])


def test_postgres_restarted_mid_load(big_kimai):
    env = big_kimai
    assert run_cli("sync", env=env).returncode == 0
    conn = mariadb_connect(env["KIMAI_DB_DATABASE"])
    with conn.cursor() as cur:  # a large change set: dlt stages and merges it
        cur.execute(
            "UPDATE kimai2_timesheet SET description = CONCAT('restart ', id),"
            " modified_at = UTC_TIMESTAMP() WHERE id % 4 = 1"
        )
    conn.close()
    proc = start_cli("sync", env=env, extra_env=FAST_RETRIES)
    time.sleep(random.Random(1).uniform(2.0, 3.5))
    before = run_audit_row(env["ATLAS_DB_DATABASE"], proc.pid)
    # the run is going when the restart begins ...
    assert proc.poll() is None and before is not None and before[1] is None, before
    fault_at = pg_query("postgres", "SELECT clock_timestamp()")[0][0]
    restart_postgres()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 4), err
    # ... and it ended after the restart (or crashed: the next run marks it)
    after = run_audit_row(env["ATLAS_DB_DATABASE"], proc.pid)
    assert after[1] is None or after[1] > fault_at, (after, fault_at)
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"])
