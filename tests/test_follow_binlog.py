"""The follower's binlog feed (KIMAI_BINLOG=on) against a MariaDB that keeps a ROW binlog.

The test starts its own MariaDB with ``log_bin`` (the shared server keeps none), fills a
Kimai, and ticks the follower in this process after each change Kimai's own code paths
make: saves, deletes, a customer's cascade, "delete and move records to", a statement in
statement format, a DDL, a purge of the binlog. After each tick the replica equals Kimai
row for row (read with PyMySQL and psycopg2, not through the product), and the audit shows
what the tick compared: the logged keys only, or the whole table where a statement named
no keys.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from pipelines.config import load_settings
from pipelines.demo import kimai_actions as kimai_do
from pipelines.demo.kimai_data import build_kimai
from pipelines.follow import Follower
from tests.conftest import pg_connect, pg_query, run_cli, throwaway_pg_database
from tests.private_servers import PrivateMariaDB, private_mariadb
from tests.replica_check import assert_replica_equals_kimai

REPLICA = "kimai_replica"
KIMAI = "kimai"


@pytest.fixture(scope="module")
def binlog_mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB keeping a ROW binlog, as docs/binlog.md asks of Kimai's admin."""
    with private_mariadb("--log-bin=binlog", "--binlog-format=ROW", "--server-id=1") as server:
        yield server


class Setup:
    """The test's Kimai (on the private server), its Atlas DB and a follower that ticks."""

    def __init__(self, server: PrivateMariaDB, atlas_db: str) -> None:
        self.server, self.atlas_db = server, atlas_db
        self.engine = sa.create_engine(server.url(KIMAI))
        env = {
            "KIMAI_DB_HOST": "127.0.0.1",
            "KIMAI_DB_PORT": str(server.port),
            "KIMAI_DB_USER": "root",
            "KIMAI_DB_DATABASE": KIMAI,
            "ATLAS_DB_HOST": "127.0.0.1",
            "ATLAS_DB_PORT": "5432",
            "ATLAS_DB_USER": "postgres",
            "ATLAS_DB_DATABASE": atlas_db,
            "KIMAI_BINLOG": "on",
            "KIMAI_BINLOG_SERVER_ID": "4711",
        }
        self.follower = Follower(load_settings(env, dotenv=False), build=False)

    def tick(self) -> dict:
        """One tick; returns the options its audit row recorded ({} when it ran nothing)."""
        before = self.runs()
        self.follower.run(max_ticks=1)
        after = self.runs()
        assert self.heartbeat()[1] == "ok", self.heartbeat()
        if after == before:
            return {}
        assert after == before + 1
        rows = pg_query(
            self.atlas_db,
            f"SELECT options, status FROM {REPLICA}.sync_runs ORDER BY started_at DESC LIMIT 1",
        )
        options, status = rows[0]
        assert status == "success", status
        return json.loads(options) if isinstance(options, str) else options

    def runs(self) -> int:
        exists = pg_query(self.atlas_db, f"SELECT to_regclass('{REPLICA}.sync_runs')")[0][0]
        if not exists:
            return 0
        return pg_query(self.atlas_db, f"SELECT count(*) FROM {REPLICA}.sync_runs")[0][0]

    def heartbeat(self) -> tuple:
        return pg_query(
            self.atlas_db,
            f"SELECT position, status, error FROM {REPLICA}.sync_follower WHERE feed = 'binlog'",
        )[0]

    def kimai(self, sql: str) -> list[tuple]:
        conn = self.server.connect(KIMAI)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def equal(self) -> dict[str, int]:
        return assert_replica_equals_kimai(
            KIMAI, self.atlas_db, kimai=self.server.connect, atlas=pg_connect
        )


@pytest.fixture
def setup(binlog_mariadb: PrivateMariaDB) -> Iterator[Setup]:
    conn = binlog_mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {KIMAI}")
        cur.execute(f"CREATE DATABASE {KIMAI} CHARACTER SET utf8mb4")
    conn.close()
    build_kimai(binlog_mariadb.url(KIMAI), seed=29, timesheets=400)
    with throwaway_pg_database() as atlas_db:
        s = Setup(binlog_mariadb, atlas_db)
        try:
            yield s
        finally:
            s.engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _timesheet_ids(s: Setup, where: str = "1=1") -> list[int]:
    return [r[0] for r in s.kimai(f"SELECT id FROM kimai2_timesheet WHERE {where} ORDER BY id")]


def test_the_binlog_feed_keeps_the_replica_equal_to_kimai(setup: Setup, caplog) -> None:
    s = setup
    # the first tick has no position: a full resync, then the binlog from its end
    first = s.tick()
    assert first.get("reconcile") is True and first.get("scopes") is None
    counts = s.equal()
    assert counts["timesheets"] == 400
    assert json.loads(s.heartbeat()[0])["binlog"]["file"].startswith("binlog.")

    # nothing written: no run at all, and not one SELECT on Kimai's server
    selects = s.kimai("SHOW GLOBAL STATUS LIKE 'Com_select'")[0][1]
    assert s.tick() == {}
    assert s.kimai("SHOW GLOBAL STATUS LIKE 'Com_select'")[0][1] == selects

    # saves, a delete and tag changes: only the logged keys are compared
    ids = _timesheet_ids(s)
    row = s.kimai(f"SELECT user, project_id, activity_id FROM kimai2_timesheet WHERE id = {ids[0]}")
    user, project, activity = row[0]
    tags = [r[0] for r in s.kimai("SELECT id FROM kimai2_tags ORDER BY id LIMIT 2")]
    with s.engine.connect() as conn:
        now = _now()
        new_id = kimai_do.insert_timesheet(
            conn, user=user, project_id=project, activity_id=activity,
            start=now - dt.timedelta(hours=2), end=now - dt.timedelta(hours=1), now=now,
            description="logged by the binlog", tags=tags[:1],
        )  # fmt: skip
        kimai_do.update_timesheet(conn, ids[1], now=now, description="edited")
        kimai_do.delete_timesheet(conn, ids[2])
        kimai_do.add_tag(conn, ids[3], tags[1], now=now)
        # a bulk UPDATE that leaves modified_at alone: invisible to a cursor, not to the log
        kimai_do.mark_exported(conn, _timesheet_ids(s, f"exported = 0 AND id > {ids[3]}")[:2])
    options = s.tick()
    scopes = options["scopes"]
    assert set(options["tables"]) == {"timesheets", "timesheet_tags"}, options
    # new, edited, deleted, re-tagged, the two exported: six timesheets, three of them tagged
    assert scopes["timesheets"] == 6, scopes
    assert s.equal()["timesheets"] == 400
    assert new_id in {
        r[0] for r in pg_query(s.atlas_db, f"SELECT id FROM {REPLICA}.replica_kimai_timesheets")
    }

    # a customer deleted: MariaDB logs the customer row only; its projects, activities,
    # timesheets and their tags go by cascade, derived from the replica's references
    customer = s.kimai(
        "SELECT p.customer_id FROM kimai2_projects p JOIN kimai2_timesheet t"
        " ON t.project_id = p.id GROUP BY p.customer_id ORDER BY count(*), p.customer_id LIMIT 1"
    )[0][0]
    cascaded = len(_timesheet_ids(
        s, f"project_id IN (SELECT id FROM kimai2_projects WHERE customer_id = {customer})"
    ))  # fmt: skip
    assert cascaded > 0
    with s.engine.connect() as conn:
        assert kimai_do.delete_customer(conn, customer)
    options = s.tick()
    assert options["scopes"]["timesheets"] == cascaded, options
    s.equal()

    # "delete and move records to": the moves are logged UPDATEs, the delete a logged row
    projects = [r[0] for r in s.kimai(
        "SELECT project_id FROM kimai2_timesheet GROUP BY project_id ORDER BY count(*) DESC"
        " LIMIT 2"
    )]  # fmt: skip
    with s.engine.connect() as conn:
        assert kimai_do.delete_project(conn, projects[0], move_to=projects[1])
    s.tick()
    s.equal()

    # a statement in statement format names no keys: the table is compared whole
    victim = _timesheet_ids(s)[7]
    conn = s.server.connect(KIMAI)
    with conn.cursor() as cur:
        cur.execute("SET SESSION binlog_format = 'STATEMENT'")
        cur.execute(f"UPDATE kimai2_timesheet SET description = 'by statement' WHERE id = {victim}")
        cur.execute(f"DELETE FROM kimai2_timesheet WHERE id = {_timesheet_ids(s)[8]}")
    conn.close()
    with caplog.at_level(logging.INFO, logger="pipelines.follow"):
        options = s.tick()
    assert "timesheets" in options["tables"] and "timesheets" not in (options["scopes"] or {})
    assert "timesheets compared whole (a statement in the binlog (UPDATE))" in caplog.text
    assert options["reconcile"] is True  # row by row: the UPDATE left modified_at alone
    s.equal()

    # a DDL adds a column: the table is compared whole, the replica gets the column
    s.kimai("ALTER TABLE kimai2_timesheet ADD COLUMN atlas_binlog_note INT NULL DEFAULT 7")
    options = s.tick()
    assert "timesheets" in options["tables"]
    s.equal()
    assert pg_query(
        s.atlas_db,
        f"SELECT count(*) FROM {REPLICA}.replica_kimai_timesheets WHERE atlas_binlog_note = 7",
    )[0][0] == len(_timesheet_ids(s))

    # the stored position purged: a full resync, then streaming from the new end
    stored = json.loads(s.heartbeat()[0])["binlog"]
    with s.engine.connect() as conn:
        kimai_do.update_timesheet(conn, _timesheet_ids(s)[9], now=_now(), description="unseen")
    newest = s.kimai("SHOW MASTER STATUS")[0][0]
    # MariaDB purges a file only once InnoDB's checkpoint has passed its transactions
    deadline = time.monotonic() + 60
    while stored["file"] in {r[0] for r in s.kimai("SHOW BINARY LOGS")}:
        assert time.monotonic() < deadline, s.kimai("SHOW BINARY LOGS")
        s.kimai("FLUSH BINARY LOGS")
        current = s.kimai("SHOW MASTER STATUS")[0][0]
        s.kimai(f"PURGE BINARY LOGS TO '{current}'")
        time.sleep(0.5)
    assert stored["file"] <= newest < current
    options = s.tick()
    assert options.get("reconcile") is True, options
    s.equal()
    assert json.loads(s.heartbeat()[0])["binlog"]["file"] == current


def test_a_server_without_a_binlog_is_refused_in_one_line(env: dict[str, str]) -> None:
    # the shared MariaDB keeps no binlog (log_bin off)
    result = run_cli("follow", "--no-build", "--ticks", "1", env={**env, "KIMAI_BINLOG": "on"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "log_bin is off" in lines[0], result.stderr
    assert "docs/binlog.md" in lines[0]
