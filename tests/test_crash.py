"""Crash safety: a runner killed with SIGKILL at any point leaves a consistent replica, and
the next run repairs everything."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from pipelines.fixtures.kimai_data import build_kimai
from tests.conftest import kimai_url, mariadb_connect, run_cli, sync_now
from tests.replica_check import assert_replica_equals_kimai

pytestmark = pytest.mark.slow


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(("KIMAI_", "ATLAS_"))}
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", *args],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=env["ATLAS_SYNC_STATE_DIR"].rsplit("/", 1)[0],
    )


def _kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `proc` after `seconds` unless it ended; True if it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def test_sigkill_during_first_load_and_during_a_big_merge(env):
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=11, timesheets=120_000)
    rng = random.Random(5)
    # the first load, killed at growing delays: before, during and around the bulk COPY
    killed = [_kill_after(_start(env, "sync"), delay) for delay in (0.7, 1.2, 1.7, 2.4)]
    assert any(killed), "at least one run was killed mid-way"
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(db, env["ATLAS_DB_DATABASE"])

    conn = mariadb_connect(db)
    with conn.cursor() as cur:  # a large change set goes through dlt's staged merge
        cur.execute(
            "UPDATE kimai2_timesheet SET description = CONCAT('bulk edit ', id),"
            " modified_at = UTC_TIMESTAMP() WHERE id % 3 = 0"
        )
    conn.close()
    time.sleep(1)
    for _ in range(3):
        _kill_after(_start(env, "sync"), rng.uniform(1.5, 5.0))
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(db, env["ATLAS_DB_DATABASE"])
    # and nothing is left pending: one more run changes nothing
    assert [s.written for s in sync_now().tables] == [0] * 7
