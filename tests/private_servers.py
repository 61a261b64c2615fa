"""Private PostgreSQL and MariaDB servers that a test starts, restarts and stops itself.

The shared servers (127.0.0.1:5432 and :3306) serve every test at once; a test that needs a
server set up differently (TLS only) or brought down mid-run (the fault tests) gets its own:
a fresh data directory on a free port, removed afterwards. Both are reached over TCP for
the product, and over their own local socket for the test's own reads and writes.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pymysql

from tests.conftest import free_port

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:]


def _as_postgres(*cmd: str) -> None:
    # initdb and postgres refuse to run as root
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, timeout=120)


def _wait_until(ready: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready()
            return
        except (psycopg2.OperationalError, pymysql.err.OperationalError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not come up in {timeout:g} s") from None
            time.sleep(0.2)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (trust authentication, user postgres)."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def connect(self, database: str = "postgres") -> Any:
        """An autocommit psycopg2 connection over the cluster's local socket."""
        conn = psycopg2.connect(
            host=str(self.root), port=self.port, user="postgres", dbname=database
        )
        conn.autocommit = True
        return conn

    def query(self, database: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Rows of one statement (empty for statements without rows)."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def start(self) -> None:
        _as_postgres(
            str(Path(PG_BIN[0]) / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "start",
        )  # fmt: skip
        _wait_until(lambda: self.connect().close(), "the private PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(Path(PG_BIN[0]) / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def restart(self) -> None:
        """Stop it (fast: every session is terminated) and start it again."""
        self.stop()
        self.start()


@contextmanager
def private_postgres(settings: str = "", hba: str | None = None) -> Iterator[PrivatePostgres]:
    """Start a private PostgreSQL; `settings` are appended to its postgresql.conf and `hba`
    replaces its pg_hba.conf (trust for everyone by default)."""
    if not PG_BIN:
        raise RuntimeError("PostgreSQL's server binaries are needed (scripts/services)")
    # not under pytest's own temporary directory: its parents are private to root
    root = Path(tempfile.mkdtemp(prefix="private-postgres-"))
    server = PrivatePostgres(root, free_port())
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        _as_postgres(str(Path(PG_BIN[0]) / "initdb"), "-D", str(server.data), "-A", "trust",
                     "-U", "postgres", "--no-sync")  # fmt: skip
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{root}'\nfsync = off\n{settings}"
            )
        if hba is not None:
            (server.data / "pg_hba.conf").write_text(hba)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrivateMariaDB:
    """A MariaDB server of the test's own (root, no password)."""

    root: Path
    port: int
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "sock"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of one of its databases, over TCP as the product connects."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def connect(self, database: str | None = None) -> Any:
        """An autocommit PyMySQL connection over the server's local socket."""
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, charset="utf8mb4",
            autocommit=True,
        )  # fmt: skip

    def start(self) -> None:
        user = ["--user=root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.root / 'data'}",
             f"--port={self.port}", f"--socket={self.socket}", "--bind-address=127.0.0.1",
             *user, "--skip-log-bin", "--innodb-buffer-pool-size=128M",
             f"--pid-file={self.root / 'pid'}", *self.args],
            stdout=subprocess.DEVNULL, stderr=(self.root / "log").open("a"),
        )  # fmt: skip
        process = self.process

        def ready() -> None:
            if process.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {(self.root / 'log').read_text()[-2000:]}")
            self.connect().close()

        _wait_until(ready, "the private MariaDB")

    def stop(self) -> None:
        """Shut it down cleanly and wait until it has exited."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(120)

    def restart(self, while_down: Callable[[], None] | None = None) -> None:
        """Shut it down, call `while_down()`, and start it again."""
        self.stop()
        if while_down is not None:
            while_down()
        time.sleep(1.0)  # stay down long enough for a running client to notice
        self.start()


@contextmanager
def private_mariadb(*args: str) -> Iterator[PrivateMariaDB]:
    """Start a private MariaDB with the extra server options `args`."""
    root = Path(tempfile.mkdtemp(prefix="private-mariadb-"))
    server = PrivateMariaDB(root, free_port(), list(args))
    user = ["--user=root"] if os.geteuid() == 0 else []
    try:
        installed = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={root / 'data'}", *user,
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {installed.stderr[-2000:]}")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
