"""The command line as schedulers and people use it: help, exit codes, one-line errors, and
failed runs that change nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import REPO, first_sync, kimai_url, pg_connect, pg_query, run_cli

COMMANDS = ["sync", "transform", "reconcile", "status", "demo"]


@pytest.mark.unit
@pytest.mark.parametrize("args", [[], *([c] for c in COMMANDS)])
def test_every_command_has_help(args):
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.run", *args, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Usage:" in out.stdout and "--help" in out.stdout


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words, subcommands of subcommands included."""
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


@pytest.mark.unit
def test_help_shows_plain_metavars():
    from typer.main import get_command
    from typer.testing import CliRunner

    from pipelines.run import app

    runner = CliRunner()
    seen = []
    for words in _commands(get_command(app)):
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, (words, result.output)
        # Python types and nested brackets are typer's defaults, not words for people
        for wrong in ("<", "list[", "int range", "[["):
            assert wrong not in result.output, (words, wrong, result.output)
        seen.append(" ".join(words))
    assert {"", "sync", "status", "demo", "token", "token create"} <= set(seen)
    usage = runner.invoke(app, ["sync", "--help"]).output
    assert (
        "sync [OPTIONS] [TABLE]..." in usage
        and "--runs N" in runner.invoke(app, ["status", "--help"]).output
    )


def _isolated_env(tmp_path: Path, **urls: str) -> dict[str, str]:
    return {**urls, "ATLAS_SYNC_STATE_DIR": str(tmp_path / "state")}


@pytest.mark.unit
@pytest.mark.parametrize(
    "command", [["status"], ["transform"], ["serve"], ["dbt", "build"], ["status", "--json"]]
)
def test_commands_that_read_atlas_db_refuse_a_missing_duckdb_file(tmp_path, command):
    kimai = tmp_path / "kimai.sqlite"
    kimai.touch()
    typo = tmp_path / "atals.duckdb"
    env = _isolated_env(
        tmp_path, KIMAI_DB_URL=f"sqlite:///{kimai}", ATLAS_DB_URL=f"duckdb:///{typo}"
    )
    out = run_cli(*command, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.splitlines() == [
        f"error: no DuckDB file at {typo}: check ATLAS_DB_URL (a sync creates it)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kimai.sqlite"]  # nothing created


@pytest.mark.unit
@pytest.mark.parametrize("command", [["sync"], [], ["reconcile"]])
def test_a_missing_kimai_sqlite_file_is_a_configuration_error(tmp_path, command):
    missing = tmp_path / "kimia.sqlite"
    env = _isolated_env(
        tmp_path,
        KIMAI_DB_URL=f"sqlite:///{missing}",
        ATLAS_DB_URL=f"duckdb:///{tmp_path / 'atlas.duckdb'}",
    )
    out = run_cli(*command, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.splitlines() == [
        f"error: no Kimai SQLite file at {missing}: check KIMAI_DB_URL"
    ]
    assert list(tmp_path.iterdir()) == []  # no Atlas DB file, no state, no empty Kimai


@pytest.mark.unit
def test_every_command_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for command in COMMANDS:
        assert f"python -m pipelines.run {command}" in readme, command
    for option in ("--full-refresh", "--since", "--dry-run", "--allow-mass-delete", "--wait"):
        assert option in readme, option


def _snapshot(pg_db: str, state_dir: Path) -> tuple:
    """Everything a failed run must not touch: replica contents, dlt's state, local state."""
    conn = pg_connect(pg_db)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'kimai_replica' AND table_name NOT LIKE 'sync_run%'"
                " ORDER BY table_name"
            )
            tables = [r[0] for r in cur.fetchall()]
            digests = []
            for t in tables:
                cur.execute(
                    f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
                    f' FROM kimai_replica."{t}" x'
                )
                digests.append((t, cur.fetchone()[0]))
    finally:
        conn.close()
    files = sorted(
        (str(p.relative_to(state_dir)), hashlib.md5(p.read_bytes()).hexdigest())
        for p in state_dir.rglob("*")
        # runs/ holds each run's outcome for the metrics: a failed run records its failure
        if p.is_file() and "trace" not in p.name and p.relative_to(state_dir).parts[0] != "runs"
    )
    return tuple(digests), tuple(files)


@pytest.fixture
def synced(env):
    return first_sync(env, seed=3, timesheets=300)


@pytest.mark.parametrize(
    ("override", "code", "message"),
    [
        ({"KIMAI_DB_PASSWORD": "wrong"}, 2, "Access denied"),
        ({"KIMAI_DB_DATABASE": "no_such_kimai"}, 2, "Unknown database"),
        ({"KIMAI_DB_PORT": "3999"}, 4, "Can't connect"),
        ({"KIMAI_TABLE_PREFIX": "other_"}, 2, "other_customers not found"),
        ({"KIMAI_DB_PORT": "not-a-port"}, 2, "KIMAI_DB_PORT must be an integer"),
        ({"ATLAS_DB_PASSWORD": "x", "ATLAS_DB_USER": "nobody"}, 2, "nobody"),
        ({"ATLAS_DB_PORT": "5999"}, 4, "5999"),
        ({"ATLAS_RETRY_ATTEMPTS": "several"}, 2, "ATLAS_RETRY_ATTEMPTS must be an integer"),
    ],
)
def test_bad_configuration_fails_in_one_line_and_changes_nothing(synced, override, code, message):
    env = synced
    state_dir = Path(env["ATLAS_SYNC_STATE_DIR"])
    before = _snapshot(env["ATLAS_DB_DATABASE"], state_dir)
    out = run_cli("sync", env={**env, "ATLAS_RETRY_ATTEMPTS": "1", **override})
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert message in lines[0]
    assert "Traceback" not in out.stderr and "wrong" not in out.stderr
    assert _snapshot(env["ATLAS_DB_DATABASE"], state_dir) == before


def test_usage_errors_exit_2(env):
    assert run_cli("sync", "bogus", env=env).returncode == 2
    assert run_cli("sync", "--since", "yesterday", env=env).returncode == 2
    assert run_cli("--no-such-option", env=env).returncode == 2
    # options before the command would be dropped silently: refused, naming them
    before = run_cli("--full-refresh", "--wait", "3", "sync", env=env)
    assert before.returncode == 2
    assert "options go after the command" in before.stderr
    assert "sync --full-refresh --wait" in before.stderr


def test_debug_shows_the_traceback(env):
    out = run_cli(
        "sync",
        "--debug",
        env={**env, "KIMAI_DB_PORT": "3999"},
        extra_env={"ATLAS_RETRY_ATTEMPTS": "1"},
    )
    assert out.returncode == 4 and "Traceback" in out.stderr


def test_a_second_run_exits_3_naming_the_holder_or_waits(synced):
    env = synced
    conn = pg_connect(env["ATLAS_DB_DATABASE"])
    with conn.cursor() as cur:  # hold the run lock the way a running sync does
        cur.execute("SET application_name = 'kimai-atlas-sync pid=4242 host=elsewhere'")
        cur.execute(
            "SELECT pg_advisory_lock(hashtextextended('kimai-atlas-sync:kimai_replica', 0))"
        )
    metrics = Path(env["ATLAS_SYNC_STATE_DIR"]).parent / "sync.prom"
    try:
        t0 = time.monotonic()
        out = run_cli("sync", "--metrics-file", str(metrics), env=env)
        assert out.returncode == 3
        assert "pid=4242 host=elsewhere" in out.stderr and "running since" in out.stderr
        # its own metric; the last-run gauges stay those of the last run that ended (a success)
        values = {
            s.name: s.value
            for family in text_string_to_metric_families(metrics.read_text())
            for s in family.samples
        }
        assert values["kimai_atlas_sync_lock_refused"] == 1
        assert values["kimai_atlas_sync_lock_refused_timestamp_seconds"] >= time.time() - 120
        assert values["kimai_atlas_sync_last_run_success"] == 1
        waited = run_cli("sync", "--wait", "2", env=env)
        assert waited.returncode == 3 and time.monotonic() - t0 >= 2
    finally:
        conn.close()  # the lock dies with the session
    assert run_cli("sync", "--wait", "5", "--metrics-file", str(metrics), env=env).returncode == 0
    assert "kimai_atlas_sync_lock_refused 0" in metrics.read_text()


def test_tls_parameters_of_the_url_reach_every_connection(env):
    """sslmode=require against a server without TLS: the first connection refuses, and the
    run writes nothing anywhere (no audit row, no schema); sslmode=disable works end to end."""
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=6, timesheets=200)
    atlas = env["ATLAS_DB_DATABASE"]
    url = f"postgresql://postgres@127.0.0.1:5432/{atlas}"
    parts = {k: v for k, v in env.items() if not k.startswith("ATLAS_DB_")}
    required = run_cli("sync", env={**parts, "ATLAS_DB_URL": url + "?sslmode=require"})
    assert required.returncode == 4
    assert "SSL was required" in required.stderr and len(required.stderr.splitlines()) == 1
    schemas = pg_query(
        atlas,
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
        " AND nspname NOT IN ('information_schema', 'public')",
    )
    assert schemas == []
    plain = run_cli("sync", env={**parts, "ATLAS_DB_URL": url + "?sslmode=disable"})
    assert plain.returncode == 0, plain.stderr
    # the lock, connectorx, ADBC and dlt all took the parameter (dbt's profile: unit test)
    assert pg_query(
        atlas, "SELECT count(*) FROM kimai_replica.sync_runs WHERE status = 'success'"
    ) == [(1,)]
