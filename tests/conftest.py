"""Shared fixtures: throw-away MariaDB and PostgreSQL databases, environment, CLI runner.

Every test that touches a database gets its own uniquely named databases and drops them
afterwards; nothing is mocked.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from pipelines.demo.servers import (  # noqa: F401 - the tests import them from here
    MARIADB,
    POSTGRES,
    mariadb_connect,
    pg_connect,
    pg_query,
)

REPO = Path(__file__).resolve().parent.parent

# pooled SQLAlchemy connections checked out and not yet returned, by connection record
_CHECKED_OUT: dict[int, str] = {}


@sa.event.listens_for(sa.pool.Pool, "checkout")
def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    _CHECKED_OUT[id(record)] = repr(record.dbapi_connection)


@sa.event.listens_for(sa.pool.Pool, "checkin")
def _checked_in(dbapi_connection: Any, record: Any) -> None:
    _CHECKED_OUT.pop(id(record), None)


@pytest.fixture(autouse=True)
def _connections_returned() -> Iterator[None]:
    """Fail a test that leaves a pooled connection checked out.

    The garbage collector returns such a connection later, at a moment of its own choosing:
    its rollback then fails on a server whose session the test's teardown killed, and the
    error that logs (Python 3.11's traceback formatting calls `ast.parse`) broke an
    unrelated test parsing source on the same worker at that moment.
    """
    before = set(_CHECKED_OUT)
    yield
    leaked = [conn for key, conn in _CHECKED_OUT.items() if key not in before]
    if leaked:
        gc.collect()  # their failing rollbacks now, not inside the report's own `ast.parse`
    assert not leaked, f"connections left checked out (close them or use `with`): {leaked}"


# variables of the public contract: tests start from a clean slate
_CONTRACT_PREFIXES = ("KIMAI_", "ATLAS_", "DBT_")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that share a module's expensive fixture on one xdist worker.

    With `--dist loadgroup` (scripts/test), tests of one group go to one worker. A test's
    group is its `xdist_group` marker, if any, and otherwise the module- or session-scoped
    fixtures of its own module it uses (a built stack, a demo run): they are then built
    once instead of once on every worker that happens to run one of those tests, while
    the module's other tests still spread over the workers.

    Tests marked `heavy` (or, for a group, one of its tests) are handed out first.

    pytest-xdist marks a group by a suffix on the node id (``…@group``), set through an
    attribute pytest 9 no longer reads (its node ids became structured), so the suffix is
    applied here.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    # the longest first: workers that get the short ones meanwhile end near the same time
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        } or _shared_fixtures(item)
        if not groups or "@" in item.nodeid:
            continue
        suffixed = f"{item.nodeid}@{'_'.join(sorted(groups))}"
        try:
            from _pytest.nodeid import NodeId
        except ImportError:  # pytest 8: node ids are plain strings
            item._nodeid = suffixed  # type: ignore[attr-defined]
        else:
            item._id = NodeId.parse(suffixed)  # type: ignore[attr-defined]


def _shared_fixtures(item: pytest.Item) -> set[str]:
    """Module- or session-scoped fixtures defined in the item's own module that it uses."""
    module = item.nodeid.split("::")[0]
    info = getattr(item, "_fixtureinfo", None)
    shared = set()
    for name, definitions in info.name2fixturedefs.items() if info else ():
        definition = definitions[-1]
        if definition.scope in ("module", "session") and definition.baseid == module:
            shared.add(f"{Path(module).stem}.{name}")
    return shared


@pytest.fixture
def mariadb_database() -> Iterator[str]:
    """An empty MariaDB database with a unique name, dropped afterwards."""
    with throwaway_mariadb_database() as name:
        yield name


@contextmanager
def throwaway_mariadb_database() -> Iterator[str]:
    """Create an empty MariaDB database with a unique name; drop it on leaving."""
    name = f"kimai_t_{uuid.uuid4().hex[:12]}"
    conn = mariadb_connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    try:
        yield name
    finally:
        # a new connection: a long test may outlive an idle one
        conn = mariadb_connect()
        with conn.cursor() as cur:
            # as PostgreSQL's DROP DATABASE ... WITH (FORCE): a connection the test left
            # open in a transaction would make the DROP wait for ever (on this very process)
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (name,))
            for (session,) in cur.fetchall():
                with suppress(pymysql.err.OperationalError):  # gone meanwhile
                    cur.execute(f"KILL {int(session)}")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """An empty PostgreSQL database with a unique name, dropped afterwards."""
    with throwaway_pg_database() as name:
        yield name


@contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """Create an empty PostgreSQL database with a unique name; drop it on leaving."""
    name = f"atlas_t_{uuid.uuid4().hex[:12]}"
    conn = pg_connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield name
    finally:
        conn = pg_connect()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def env(
    mariadb_database: str, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Contract variables pointing at this test's databases (also set in os.environ)."""
    for key in list(os.environ):
        if key.startswith(_CONTRACT_PREFIXES):
            monkeypatch.delenv(key)
    values = {
        "KIMAI_DB_HOST": "127.0.0.1",
        "KIMAI_DB_PORT": "3306",
        "KIMAI_DB_USER": "root",
        "KIMAI_DB_PASSWORD": "",
        "KIMAI_DB_DATABASE": mariadb_database,
        "ATLAS_DB_HOST": "127.0.0.1",
        "ATLAS_DB_PORT": "5432",
        "ATLAS_DB_USER": "postgres",
        "ATLAS_DB_PASSWORD": "",
        "ATLAS_DB_DATABASE": pg_database,
        "ATLAS_SYNC_STATE_DIR": str(tmp_path / "state"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


def _cli_process(
    env: dict[str, str], extra_env: dict[str, str] | None, cwd: Path | None
) -> dict[str, Any]:
    """The environment and working directory of a CLI process started by a test."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    full_env.update(env)
    full_env.update(extra_env or {})
    where = cwd or Path(full_env.get("ATLAS_SYNC_STATE_DIR", "/tmp/x")).parent
    return {"env": full_env, "cwd": str(where)}


def run_cli(
    *args: str,
    env: dict[str, str],
    timeout: float = 300,
    extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipelines.run ARGS`` as the scheduler would, capturing its output.

    The process gets only `env` (plus PATH and the like), never the test process's own
    contract variables, and runs outside the repository unless `cwd` says otherwise.
    """
    return subprocess.run(
        [sys.executable, "-m", "pipelines.run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **_cli_process(env, extra_env, cwd),
    )


def start_cli(
    *args: str,
    env: dict[str, str],
    extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """Start ``python -m pipelines.run ARGS`` in the background, as `run_cli` would run it.

    Its stdout and stderr are pipes (text); read them with ``communicate()``.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **_cli_process(env, extra_env, cwd),
    )


def run_audit_row(
    atlas_db: str, pid: int, schema: str = "kimai_replica", conn: Any = None
) -> tuple | None:
    """The audit row of the run whose runner had this pid: (status, finished_at, build_status).

    None when there is none (yet): the process had not recorded its start, or the audit
    table does not exist. A row whose `finished_at` is NULL belongs to a run in progress
    (or to one that crashed before recording its end).

    A loop that polls should pass its own autocommit connection (`pg_connect`): a new
    session per poll costs PostgreSQL about 12 ms of CPU, most of a core at 50 polls a second.
    """
    own = conn is None
    if own:
        conn = pg_connect(atlas_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{schema}.sync_runs",))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(
                f"SELECT status, finished_at, build_status FROM {schema}.sync_runs WHERE pid = %s",
                (pid,),
            )
            return cur.fetchone()
    finally:
        if own:
            conn.close()


def first_sync(env: dict[str, str], seed: int, timesheets: int) -> dict[str, str]:
    """Fill the test's Kimai (`build_kimai`) and run a first `sync` that must succeed."""
    from pipelines.demo.kimai_data import build_kimai

    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=seed, timesheets=timesheets)
    first = run_cli("sync", env=env)
    assert first.returncode == 0, first.stderr
    return env


def free_port() -> int:
    """A local TCP port nothing listens on now (a test's own server, or a refused connect)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kimai_url(database: str) -> str:
    """SQLAlchemy URL of a test Kimai database (root)."""
    return f"mysql+pymysql://root@127.0.0.1:3306/{database}?charset=utf8mb4"


def sync_now(*tables: str, **options):
    """Run one sync in-process with the current environment; return the run's `SyncResult`.

    Keyword options are `RunRequest` fields (``allow_mass_delete``, ``dry_run``) or
    `SyncOptions` fields (``full_refresh``, ``since``, ``reconcile``).
    """
    from pipelines.config import load_settings
    from pipelines.runner import RunRequest, execute
    from pipelines.types import SyncOptions

    settings = load_settings(dotenv=False)
    request_fields = {"allow_mass_delete", "dry_run", "wait_seconds", "trigger", "transform"}
    req = {k: v for k, v in options.items() if k in request_fields}
    opts = {k: v for k, v in options.items() if k not in request_fields}
    opts.setdefault("overlap_seconds", settings.overlap_seconds)
    request = RunRequest(
        command="sync", tables=list(tables) or None, options=SyncOptions(**opts), **req
    )
    return execute(settings, request).sync


def kimai_query(db: str, sql: str, args=None) -> list[tuple]:
    """Rows of one query on a Kimai test database."""
    conn = mariadb_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def kimai_exec(db: str, *statements: str, sql_mode: str | None = None) -> None:
    """Run statements on a Kimai test database (optionally under another sql_mode)."""
    conn = mariadb_connect(db)
    try:
        with conn.cursor() as cur:
            if sql_mode is not None:
                cur.execute(f"SET SESSION sql_mode = '{sql_mode}'")
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.25
) -> Any:
    """Poll `check` until it returns something truthy, and return that; fail after `timeout`.

    A check usually opens a connection or asks the HTTP service, which asks Atlas DB: polled
    every 50 ms through a minute-long run, that was seconds of CPU taken from the run waited
    for. A quarter of a second is still far below what any waited-for step takes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
