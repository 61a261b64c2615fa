"""Crash safety: a runner killed with SIGKILL at any point leaves a consistent replica, and
the next run repairs everything."""

from __future__ import annotations

import random
import subprocess
import time

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import (
    kimai_url,
    mariadb_connect,
    pg_connect,
    run_audit_row,
    run_cli,
    start_cli,
    sync_now,
)
from tests.replica_check import assert_replica_equals_kimai

pytestmark = pytest.mark.slow


def _kill_mid_run(env: dict[str, str], seconds: float) -> bool:
    """Start a sync and SIGKILL it `seconds` after it recorded its start, unless it ended.

    Returns:
        True only if the kill hit the run in progress: the process was alive and its audit
        row still had no end (a process that has recorded its end may still be exiting when
        the kill lands; that one does not count).
    """
    proc = start_cli("sync", env=env)
    deadline = time.monotonic() + 60
    conn = pg_connect(env["ATLAS_DB_DATABASE"])
    try:
        while run_audit_row(env["ATLAS_DB_DATABASE"], proc.pid, conn=conn) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never recorded its start"
            time.sleep(0.02)
    finally:
        conn.close()
    try:
        proc.communicate(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    row = run_audit_row(env["ATLAS_DB_DATABASE"], proc.pid)
    if row is None or row[1] is not None:
        return False
    assert row[0] == "running", row  # nothing else writes a killed run's row
    return True


@pytest.mark.heavy
def test_sigkill_during_first_load_and_during_a_big_merge(env):
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=11, timesheets=120_000)
    rng = random.Random(5)
    # the first load, killed at growing delays: while planning, during and around the COPY
    hits = [_kill_mid_run(env, delay) for delay in (0.1, 0.5, 1.0, 1.6)]
    assert sum(hits) >= 3, f"kills that hit the first load in progress: {hits}"
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
    hits = [_kill_mid_run(env, rng.uniform(0.1, 1.2)) for _ in range(3)]
    assert sum(hits) >= 2, f"kills that hit the merge in progress: {hits}"
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(db, env["ATLAS_DB_DATABASE"])
    # and nothing is left pending: one more run changes nothing
    assert {s.table: s.written for s in sync_now().tables if s.written} == {}


KILLS = 8


@pytest.mark.heavy
def test_sigkills_spread_over_runs_are_always_repaired(env):
    """Kill 8 runs, each at a point of its own: from just after it recorded its start to
    near its end; a clean run after each repairs everything."""
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=17, timesheets=30_000)
    rng = random.Random(20261125)
    started = time.monotonic()
    sync_now()  # the first load
    took = time.monotonic() - started
    hits = 0
    for round_no in range(KILLS):
        conn = mariadb_connect(db)
        with conn.cursor() as cur:  # something to do in every round: edits, inserts, deletes
            cur.execute(
                "UPDATE kimai2_timesheet SET description = CONCAT('round ', %s, ' ', id),"
                " modified_at = UTC_TIMESTAMP() WHERE id %% 20 = %s",
                (round_no, round_no),
            )
            cur.execute(f"DELETE FROM kimai2_timesheet WHERE id % 997 = {round_no}")
        conn.close()
        # one kill in each eighth of the time the last clean run took (a repair of the
        # same kind of change set)
        hits += _kill_mid_run(env, (round_no + rng.random()) / KILLS * took)
        started = time.monotonic()
        sync_now()  # the clean run, in-process
        took = time.monotonic() - started
        assert_replica_equals_kimai(db, env["ATLAS_DB_DATABASE"])
    assert hits >= KILLS - 2, f"only {hits} of {KILLS} kills hit a run in progress"
