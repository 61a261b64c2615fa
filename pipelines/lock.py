"""One run at a time per Atlas DB and replica schema.

PostgreSQL: session-level advisory locks held on a dedicated connection for the whole
run, one for the replica schema and one for the analytics schema (and the shadow schemas
named after it), which is also claimed for one replica schema for good
(`_check_analytics_owner`). They die with the session, so a crashed or killed runner never
blocks the next one.
That session can also die under a running run (a server restart the retries ride through,
a proxy dropping idle connections, a killed backend), and the next scheduled run would then
start beside it. So the run calls `HeldLock.check` before each write (each table's load,
the merge, the audit, the dbt build and its publication) and stops, exit 4, when the lock
is gone. TCP keepalives and ``idle_session_timeout = 0`` keep the idle session alive.
DuckDB (the embedded demo): an exclusive ``flock`` on a file next to the database; the
kernel holds it until the process ends.
dlt itself has no run lock; two overlapping pipelines would overwrite each other's state.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines import deadline
from pipelines.config import Settings
from pipelines.dberrors import database_failure
from pipelines.errors import ConfigError, LockHeld, LockLost

POLL_SECONDS = 0.5

_SAME_KEY = (
    "l.locktype = 'advisory' AND l.granted"
    # advisory locks are per database; pg_locks lists every database's
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)"
)


class HeldLock:
    """The run lock while a run holds it; `check` it before each write."""

    def __init__(self, conn: Any = None, key: str = "") -> None:
        self._conn = conn
        self._key = key
        self._pid = conn.get_backend_pid() if conn is not None else None
        self._mutex = threading.Lock()  # loads check from several threads

    def fence(self) -> tuple[str, tuple[Any, ...]] | None:
        """An SQL condition that holds only while this run holds the lock (PostgreSQL).

        A write that carries it (the audit's) is made, or not, by the server in the same
        statement that checks the lock, so no write can slip in after the lock was lost.
        None for a flock (the demo): the process holds it until it ends.
        """
        if self._conn is None:
            return None
        return (
            f"EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = %s AND {_SAME_KEY})",
            (self._pid, self._key),
        )

    def check(self, before: str) -> None:
        """Make sure the run still holds the lock.

        Args:
            before: The write about to happen, for the message.

        Raises:
            LockLost: The lock's session ended (exit 4); the run must write nothing more.

        """
        deadline.check()
        if self._conn is None:
            return  # a flock: the kernel holds it until the process ends
        import psycopg2

        why = "another session holds it"
        try:
            with self._mutex, self._conn.cursor() as cur:
                cur.execute(
                    f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid()"
                    f" AND {_SAME_KEY})",
                    (self._key,),
                )
                if cur.fetchone()[0]:
                    return
        except psycopg2.Error as exc:
            why = "its session ended: " + (str(exc).strip().splitlines() or ["?"])[0]
        raise LockLost(
            f"the run lock was lost before {before} ({why}); stopped without writing more,"
            " the next run repairs what this one left"
        )

    def cancel_statements(self) -> int:
        """Cancel the statements this process is running on Atlas DB (the run's deadline).

        The run's sessions belong to several clients (psycopg2, ADBC, dlt, dbt), none of
        which can be reached from here; the server knows each by its client address and
        port, and this process's sockets are listed in /proc (Linux). A session reached
        over a Unix socket, or through a proxy, is not found: its statement timeout ends it.

        Returns:
            How many statements were cancelled.

        """
        ports = sorted(own_tcp_ports())
        if self._conn is None or not ports:
            return 0
        with self._mutex, self._conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND state = 'active' AND client_port = ANY(%s)"
                " AND client_addr IS NOT DISTINCT FROM inet_client_addr()",
                (ports,),
            )
            return int(cur.fetchone()[0])


def own_tcp_ports() -> set[int]:
    """Local ports of this process's TCP connections (empty where /proc is not Linux's)."""
    inodes = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is ADDR:PORT in hex; the inode is the tenth field
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _lock_key(settings: Settings) -> str:
    return f"kimai-atlas-sync:{settings.replica_schema}"


def _analytics_key(settings: Settings) -> str:
    # the analytics schema and the shadow schemas derived from it: two deployments that
    # would build the same ones never build at the same moment
    return f"kimai-atlas-analytics:{settings.analytics_schema}"


def _holder_label() -> str:
    return f"kimai-atlas-sync pid={os.getpid()} host={socket.gethostname()}"


@contextmanager
def run_lock(settings: Settings, wait_seconds: float = 0.0) -> Iterator[HeldLock]:
    """Hold the run lock for the duration of the block.

    Args:
        settings: Runtime settings (which Atlas DB and schema).
        wait_seconds: How long to wait for a running holder to finish; 0 fails at once.

    Raises:
        LockHeld: Another run holds the lock (exit code 3); the message names it.

    """
    if settings.atlas_dialect == "duckdb":
        with _file_lock(settings, wait_seconds):
            yield HeldLock()
        return
    with _advisory_lock(settings, wait_seconds) as held:
        yield held


@contextmanager
def _advisory_lock(settings: Settings, wait_seconds: float) -> Iterator[HeldLock]:
    import psycopg2

    try:
        conn = psycopg2.connect(**settings.atlas_connect_args(_holder_label()))
    except psycopg2.Error as exc:
        raise database_failure(
            f"cannot connect to Atlas DB at {settings.describe_atlas()}", exc
        ) from exc
    conn.autocommit = True
    key, analytics = _lock_key(settings), _analytics_key(settings)
    give_up_at = time.monotonic() + wait_seconds
    held: list[str] = []
    try:
        with conn.cursor() as cur:
            if conn.server_version >= 140000:
                # the session is idle for the whole run: a server-wide timeout must not end it
                cur.execute("SET idle_session_timeout = 0")
            _acquire(cur, key, give_up_at)
            held.append(key)
            # refused before waiting for the analytics lock: that deployment may be running
            _check_analytics_owner(cur, settings)
            _acquire(cur, analytics, give_up_at)
            held.append(analytics)
            _check_analytics_owner(cur, settings)  # a first build may have claimed it meanwhile
        yield HeldLock(conn, key)
    finally:
        for name in reversed(held):
            _unlock(conn, name)
        conn.close()


def _acquire(cur: Any, key: str, give_up_at: float) -> None:
    while True:
        cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
        if cur.fetchone()[0]:
            return
        if time.monotonic() >= give_up_at:
            holder, public = _pg_holder(cur, key)
            raise LockHeld(
                f"another run holds the lock: {holder}",
                public=f"another run holds the lock: {public}",
            )
        time.sleep(POLL_SECONDS)


OWNER_COMMENT = "kimai-atlas: the analytics of replica schema {replica}; built by its runs only"
"""The comment on an analytics schema and its shadow naming the deployment that builds them.

The live and the shadow schema swap names at every publication, and a comment moves with
its schema, so both carry it (`pipelines.publish.swap`)."""

_OWNER = re.compile(r"^kimai-atlas: the analytics of replica schema ([a-z_][a-z0-9_]*);")


def _check_analytics_owner(cur: Any, settings: Settings) -> None:
    """Refuse a deployment whose analytics schema another deployment's runs publish.

    Two deployments with different replica schemas and the same analytics schema would
    each build views over their own replica and publish them in turn, so that BI reads
    one's replica or the other's depending on which built last, and a failed build of one
    could leave the other's build live. The claim is persistent (the schemas' comment,
    written by the first publication), so the second deployment is refused whether or not
    the first is running.

    Raises:
        ConfigError: The analytics schema belongs to another replica schema (exit 2).

    """
    from pipelines.publish import BUILD_SUFFIX

    analytics = settings.analytics_schema
    cur.execute(
        "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace"
        " WHERE nspname = ANY(%s) ORDER BY nspname",
        ([analytics, analytics + BUILD_SUFFIX],),
    )
    for _schema, comment in cur.fetchall():
        found = _OWNER.match(comment or "")
        if found and found.group(1) != settings.replica_schema:
            raise ConfigError(
                f"analytics schema '{analytics}' belongs to replica schema"
                f" '{found.group(1)}' (another deployment builds it), not to"
                f" '{settings.replica_schema}': give this deployment its own"
                " ATLAS_ANALYTICS_SCHEMA, or, if that deployment is gone, release the schema"
                f" (COMMENT ON SCHEMA {analytics} IS NULL, and on {analytics}{BUILD_SUFFIX};"
                " docs/security.md)"
            )


def _unlock(conn: Any, key: str) -> None:
    # explicitly: closing alone lets the server end the session a moment later, and a run
    # started right after this one would find the lock still held
    import psycopg2

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    except psycopg2.Error:
        pass  # the session is gone (server restarted), and the lock with it


def _pg_holder(cur: Any, key: str) -> tuple[str, str]:
    """Who holds the lock: in full, and without its database role and client address."""
    cur.execute(
        "SELECT a.application_name, a.usename, a.client_addr, a.backend_start, l.pid"
        f" FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_SAME_KEY}",
        (key,),
    )
    row = cur.fetchone()
    if row is None:
        gone = "(it has just finished; try again)"
        return gone, gone
    name, role, addr, since, pid = row
    # another role's session shows only some columns unless this role has pg_read_all_stats
    parts = [name or f"backend pid {pid}"]
    public = list(parts)
    if role:
        parts.append(f"role {role}")
    if addr:
        parts.append(f"from {addr}")
    when = f"running since {since:%Y-%m-%d %H:%M:%S %Z}" if since else "start time not visible"
    return f"{', '.join(parts)}, {when}", f"{', '.join(public)}, {when}"


@contextmanager
def _file_lock(settings: Settings, wait_seconds: float) -> Iterator[None]:
    path = Path(settings.atlas_url.database or "atlas.duckdb").resolve()
    with file_lock(path.with_name(path.name + ".lock"), wait_seconds):
        yield


@contextmanager
def file_lock(lock_path: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on `lock_path` (created if missing) for the block.

    The kernel drops the lock when the process dies, so a killed holder never blocks the
    next run. The file names the holder, for the message of whoever finds it locked.

    Raises:
        LockHeld: Another process holds the lock after `wait_seconds` (exit code 3).

    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with open(lock_path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LockHeld(f"another run holds the lock: {holder}") from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{_holder_label()}, running since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
