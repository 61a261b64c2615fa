"""Faults injected for real: database servers restarted mid-run.

The servers brought down are the module's own (`tests.private_servers`): a private MariaDB
holding Kimai and a private PostgreSQL holding Atlas DB, so these tests run beside the rest
of the suite without touching the servers the other tests use.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import run_audit_row, run_cli, start_cli
from tests.private_servers import (
    PrivateMariaDB,
    PrivatePostgres,
    private_mariadb,
    private_postgres,
)
from tests.replica_check import assert_replica_equals_kimai

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

FAST_RETRIES = {"ATLAS_RETRY_ATTEMPTS": "6", "ATLAS_RETRY_BASE_SECONDS": "0.5"}
KIMAI = "kimai"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PrivateMariaDB, PrivatePostgres]]:
    """The module's own MariaDB, holding a Kimai of 300,000 timesheets built once (the
    first test only reads it; the second changes rows, which any sync then reads), and its
    own PostgreSQL."""
    with private_mariadb() as mariadb, private_postgres() as postgres:
        conn = mariadb.connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {KIMAI} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        conn.close()
        build_kimai(mariadb.url(KIMAI), seed=13, timesheets=300_000)
        yield mariadb, postgres


@pytest.fixture
def big_kimai(servers, tmp_path) -> Iterator[dict[str, str]]:
    """The contract's variables for the private servers, with an Atlas DB of the test's own."""
    mariadb, postgres = servers
    atlas = f"atlas_f_{uuid.uuid4().hex[:12]}"
    postgres.query("postgres", f'CREATE DATABASE "{atlas}"')
    try:
        yield {
            "KIMAI_DB_HOST": "127.0.0.1",
            "KIMAI_DB_PORT": str(mariadb.port),
            "KIMAI_DB_USER": "root",
            "KIMAI_DB_PASSWORD": "",
            "KIMAI_DB_DATABASE": KIMAI,
            "ATLAS_DB_HOST": "127.0.0.1",
            "ATLAS_DB_PORT": str(postgres.port),
            "ATLAS_DB_USER": "postgres",
            "ATLAS_DB_PASSWORD": "",
            "ATLAS_DB_DATABASE": atlas,
            "ATLAS_SYNC_STATE_DIR": str(tmp_path / "state"),
        }
    finally:
        postgres.query("postgres", f'DROP DATABASE IF EXISTS "{atlas}" WITH (FORCE)')


def _wait_for_query(mariadb: PrivateMariaDB, pattern: str, timeout: float = 30.0) -> bool:
    """Wait until MariaDB runs a query matching `pattern` on Kimai (the extract is under way)."""
    deadline = time.monotonic() + timeout
    conn = mariadb.connect()
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist"
                    " WHERE db = %s AND info LIKE %s",
                    (KIMAI, pattern),
                )
                if cur.fetchone()[0]:
                    return True
            time.sleep(0.05)
        return False
    finally:
        conn.close()


def _audit_row(postgres: PrivatePostgres, env: dict[str, str], pid: int) -> tuple | None:
    conn = postgres.connect(env["ATLAS_DB_DATABASE"])
    try:
        return run_audit_row(env["ATLAS_DB_DATABASE"], pid, conn=conn)
    finally:
        conn.close()


def _assert_replica_equals_kimai(servers, env: dict[str, str]) -> None:
    mariadb, postgres = servers
    assert_replica_equals_kimai(
        KIMAI, env["ATLAS_DB_DATABASE"], kimai=mariadb.connect, atlas=postgres.connect
    )


def test_mariadb_restarted_mid_extract(servers, big_kimai):
    mariadb, postgres = servers
    env = big_kimai
    proc = start_cli("sync", env=env, extra_env=FAST_RETRIES)
    assert _wait_for_query(mariadb, "%kimai2_timesheet%ORDER BY%")
    seen: list = []

    def in_progress() -> None:
        # Kimai is down: the run has not ended, and its audit row has no end
        seen.append((proc.poll(), _audit_row(postgres, env, proc.pid)))

    mariadb.restart(while_down=in_progress)
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
    _assert_replica_equals_kimai(servers, env)


def test_postgres_restarted_mid_load(servers, big_kimai):
    mariadb, postgres = servers
    env = big_kimai
    assert run_cli("sync", env=env).returncode == 0
    conn = mariadb.connect(KIMAI)
    with conn.cursor() as cur:  # a large change set: dlt stages and merges it
        cur.execute(
            "UPDATE kimai2_timesheet SET description = CONCAT('restart ', id),"
            " modified_at = UTC_TIMESTAMP() WHERE id % 4 = 1"
        )
    conn.close()
    proc = start_cli("sync", env=env, extra_env=FAST_RETRIES)
    time.sleep(random.Random(1).uniform(2.0, 3.5))
    before = _audit_row(postgres, env, proc.pid)
    # the run is going when the restart begins ...
    assert proc.poll() is None and before is not None and before[1] is None, before
    fault_at = postgres.query("postgres", "SELECT clock_timestamp()")[0][0]
    postgres.restart()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 4), err
    # ... and it ended after the restart (or crashed: the next run marks it)
    after = _audit_row(postgres, env, proc.pid)
    assert after[1] is None or after[1] > fault_at, (after, fault_at)
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    _assert_replica_equals_kimai(servers, env)
