"""The benchmark's MariaDB connection and its throw-away PostgreSQL databases.

Plain connections come from `pipelines.demo.servers`, as in the tests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from benchlib.common import log
from pipelines.demo import servers
from pipelines.demo.servers import mariadb_connect, pg_query

# -- databases -------------------------------------------------------------------------------------


class Maria:
    """Root connection to MariaDB that reconnects, holding the benchmark's liveness lock."""

    def __init__(self, lock_name: str) -> None:
        self.lock_name = lock_name
        self.conn: Any = None

    def _connect(self) -> None:
        self.conn = mariadb_connect()
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SELECT GET_LOCK(%s, 0)", (self.lock_name,))

    def q(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        import pymysql

        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self._connect()
                with self.conn.cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall()) if cur.description else []
            except pymysql.err.OperationalError as exc:
                if attempt == 2 or exc.args[0] not in (2003, 2006, 2013):
                    raise
                log(f"MariaDB connection lost ({exc.args[0]}); reconnecting")
                self.conn = None
                time.sleep(2)
        return []

    def one(self, sql: str, args: Any = None) -> Any:
        rows = self.q(sql, args)
        return rows[0][0] if rows else None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


@contextlib.contextmanager
def binlog_server(buffer_pool_mib: int) -> Iterator[None]:
    """A MariaDB of the benchmark's own keeping a ROW binlog, in place of the shared one.

    The shared server keeps no binlog and ``log_bin`` cannot be switched on at runtime; every
    connection of the benchmark (and of the product it runs) goes to this one meanwhile.
    """
    from tests.private_servers import private_mariadb

    pool = f"--innodb-buffer-pool-size={max(buffer_pool_mib, 128)}M"
    options = ("--log-bin=binlog", "--binlog-format=ROW", "--server-id=1", "--userstat=1", pool)
    with private_mariadb(*options) as server:
        log(f"a MariaDB of its own with a ROW binlog on port {server.port}")
        before = dict(servers.MARIADB)
        servers.MARIADB["port"] = server.port
        try:
            yield
        finally:
            servers.MARIADB.update(before)


def pg_create(name: str) -> None:
    pg_query("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_query("postgres", f'CREATE DATABASE "{name}"')


def pg_drop(name: str) -> None:
    with contextlib.suppress(Exception):
        pg_query("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
