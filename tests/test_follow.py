"""The follower (`follow`): quiet ticks, the rolling key sweep, its guard, the lock, SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as kimai_do
from tests.conftest import (
    first_sync,
    kimai_exec,
    kimai_query,
    kimai_url,
    pg_query,
    run_cli,
    start_cli,
    wait_for,
)
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import ANALYTICS, Stack, make_stack, project_copy

REPLICA = "kimai_replica"
# 0.5 s between ticks and every key range within 2.5 s: four slices per sweep cycle
FAST = {"ATLAS_FOLLOW_INTERVAL_SECONDS": "0.5", "ATLAS_DELETE_MAX_LAG_SECONDS": "2.5"}
SLICES = 4


def _runs(atlas_db: str) -> list[tuple]:
    return pg_query(
        atlas_db,
        f"SELECT command, status, build_status FROM {REPLICA}.sync_runs ORDER BY started_at",
    )


def _heartbeat(atlas_db: str) -> tuple | None:
    if not pg_query(atlas_db, f"SELECT to_regclass('{REPLICA}.sync_follower')")[0][0]:
        return None  # the follower has not started yet
    rows = pg_query(
        atlas_db,
        "SELECT position, status, error, last_tick_at, caught_up_at, now()"
        f" FROM {REPLICA}.sync_follower WHERE feed = 'poll'",
    )
    return rows[0] if rows else None


def _replica_ids(atlas_db: str) -> set[int]:
    return {r[0] for r in pg_query(atlas_db, f"SELECT id FROM {REPLICA}.replica_kimai_timesheets")}


def _follower(env: dict[str, str], lag: str | None = None, **options: object):
    """A follower in this process, on the test's databases with four slices per cycle
    (or the given ``ATLAS_DELETE_MAX_LAG_SECONDS``)."""
    from pipelines.config import load_settings
    from pipelines.follow import Follower

    fast = {**FAST, "ATLAS_DELETE_MAX_LAG_SECONDS": lag} if lag else FAST
    settings = load_settings({**env, **fast}, dotenv=False)
    return Follower(settings, build=False, **options)


def _synced_shuffled(env: dict[str, str], seed: int) -> tuple[str, str, list[int], random.Random]:
    """A synced Kimai of 1,500 timesheets: its databases, its ids in a seeded random order."""
    first_sync(env, seed=seed, timesheets=1500)
    kimai_db, atlas_db = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    ids = [r[0] for r in kimai_query(kimai_db, "SELECT id FROM kimai2_timesheet ORDER BY id")]
    rng = random.Random(seed)
    rng.shuffle(ids)
    return kimai_db, atlas_db, ids, rng


def _delete(kimai_db: str, ids: list[int]) -> None:
    engine = sa.create_engine(kimai_url(kimai_db))
    try:
        with engine.connect() as conn:
            for timesheet_id in ids:
                assert kimai_do.delete_timesheet(conn, timesheet_id)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A synced stack with overlays and one green scheduled run (sync + dbt build)."""
    with make_stack(tmp_path_factory.mktemp("follow"), timesheets=1500, seed=29) as stack:
        done = run_cli(env=stack.env, timeout=600)
        assert done.returncode == 0, done.stderr
        yield stack


@pytest.mark.heavy
def test_quiet_ticks_import_no_dbt_and_leave_only_the_heartbeat(built: Stack) -> None:
    before = _runs(built.atlas_db)
    script = textwrap.dedent(
        """
        import sys
        from pipelines.config import load_settings
        from pipelines.follow import Follower
        ticks = Follower(load_settings(dotenv=False)).run(3)
        print(ticks, sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("dbt", "dlt")}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_clean_env(), **built.env, **FAST},
    )
    assert done.returncode == 0, done.stderr
    # three ticks; dlt imported to read its state, dbt never
    assert done.stdout.split()[0] == "3" and "'dbt'" not in done.stdout, done.stdout
    assert _runs(built.atlas_db) == before
    position, status, error, last_tick, caught_up, now = _heartbeat(built.atlas_db)
    assert (status, error) == ("ok", None)
    # where the sweep stands: ticks of about a second against a 2.5 s lag compare more
    # than one slice each (`slices_due`), so the slice depends on the ticks' pace
    stored = json.loads(position)
    assert stored["slices"] == SLICES and stored["cycle_deleted"] == {}
    assert 0 <= stored["slice"] < SLICES
    ((tick_seconds, run_id),) = pg_query(
        built.atlas_db, f"SELECT last_tick_seconds, last_run_id FROM {REPLICA}.sync_follower"
    )
    assert tick_seconds > 0 and run_id is None  # a quiet tick is no run of the audit
    assert 0 <= (now - caught_up).total_seconds() < 30 and last_tick == caught_up
    # BI's health view and `status` count the quiet ticks as syncs of every table
    health = pg_query(
        built.atlas_db,
        "SELECT DISTINCT follower_status, follower_caught_up_at, last_synced_at"
        f" FROM {ANALYTICS}.vw_sync_health",
    )
    assert health == [("ok", caught_up, caught_up)]
    shown = run_cli("status", env=built.env)
    assert shown.returncode == 0, shown.stderr
    assert "Follower: ok; caught up with Kimai" in shown.stdout
    assert "STALE" not in shown.stdout


@pytest.mark.heavy
def test_an_edit_reaches_the_facts_view_in_one_recorded_tick(built: Stack) -> None:
    (timesheet_id, description) = kimai_query(
        built.kimai_db, "SELECT id, description FROM kimai2_timesheet ORDER BY id DESC LIMIT 1"
    )[0]
    engine = sa.create_engine(kimai_url(built.kimai_db))
    try:
        with engine.connect() as conn:
            kimai_do.update_timesheet(
                conn,
                timesheet_id,
                now=dt.datetime.now(dt.UTC),
                description="followed within a tick",
            )
    finally:
        engine.dispose()
    before = len(_runs(built.atlas_db))
    done = run_cli("follow", "--ticks", "1", env=built.env, extra_env=FAST, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "follower stopped after 1 tick" in done.stdout
    runs = _runs(built.atlas_db)
    assert len(runs) == before + 1 and runs[-1] == ("follow", "success", "published")
    newest = pg_query(
        built.atlas_db,
        f"SELECT run_id FROM {REPLICA}.sync_runs ORDER BY started_at DESC LIMIT 1",
    )
    assert pg_query(built.atlas_db, f"SELECT last_run_id FROM {REPLICA}.sync_follower") == newest
    # recorded once its sync had changed rows, the run still starts when the tick began
    ((started_at,),) = pg_query(
        built.atlas_db, f"SELECT started_at FROM {REPLICA}.sync_runs WHERE run_id = %s", newest[0]
    )
    ((synced_at,),) = pg_query(
        built.atlas_db,
        f"SELECT synced_at FROM {REPLICA}.replica_kimai_timesheets WHERE id = %s",
        (timesheet_id,),
    )
    assert started_at < synced_at
    seen = pg_query(
        built.atlas_db,
        f"SELECT description FROM {ANALYTICS}.vw_timesheet_facts WHERE timesheet_id = %s",
        (timesheet_id,),
    )
    assert seen == [("followed within a tick",)] != [(description,)]


def test_deletes_anywhere_are_found_within_one_sweep_cycle(env: dict[str, str]) -> None:
    first_sync(env, seed=31, timesheets=1500)
    kimai_db, atlas_db = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    ids = [r[0] for r in kimai_query(kimai_db, "SELECT id FROM kimai2_timesheet ORDER BY id")]
    low, middle, high = ids[5], ids[len(ids) // 2], ids[-1]
    _delete(kimai_db, [low, middle, high])
    follower = _follower(env)
    follower.tick()
    # the first slice holds the lowest keys, and every tick looks at the keys at the top
    held = _replica_ids(atlas_db)
    assert low not in held and high not in held and middle in held
    for _ in range(SLICES - 1):
        follower.tick()
    assert middle not in _replica_ids(atlas_db)
    assert_replica_equals_kimai(kimai_db, atlas_db)
    assert json.loads(_heartbeat(atlas_db)[0])["slice"] == 0  # a new cycle begins


def _sessions(kimai_db: str, atlas_db: str) -> tuple[set[int], set[int]]:
    """The connections open to each test database, but the one asking."""
    kimai = kimai_query(
        kimai_db,
        "SELECT id FROM information_schema.PROCESSLIST WHERE db = %s AND id <> CONNECTION_ID()",
        (kimai_db,),
    )
    atlas = pg_query(
        atlas_db,
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return {r[0] for r in kimai}, {r[0] for r in atlas}


def test_ticks_keep_their_connections_and_layouts_and_outlive_losing_them(
    env: dict[str, str],
) -> None:
    first_sync(env, seed=43, timesheets=300)
    kimai_db, atlas_db = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    ids = [r[0] for r in kimai_query(kimai_db, "SELECT id FROM kimai2_timesheet ORDER BY id")]

    follower = _follower(env, lag="600")  # layouts older than the lag are read again
    try:
        follower.tick()
        kept_kimai, kept_atlas = _sessions(kimai_db, atlas_db)
        assert kept_kimai and kept_atlas  # open between ticks
        _edit(kimai_db, ids[7:8], "kept connections")
        assert follower.tick().run_id is not None  # it changed a row (recorded)
        follower.tick()
        # the same connections served both ticks, and the layouts were read once
        assert _sessions(kimai_db, atlas_db) == (kept_kimai, kept_atlas)
        assert follower.connections.catalog_reads == 1
        assert_replica_equals_kimai(kimai_db, atlas_db)

        # both servers drop them (a restart, a DBA's KILL): the next tick connects again
        for session in kept_kimai:
            kimai_exec(kimai_db, f"KILL {session}")
        for session in kept_atlas:
            pg_query(atlas_db, "SELECT pg_terminate_backend(%s)", (session,))
        _edit(kimai_db, ids[8:9], "connected again")
        assert follower.tick().run_id is not None
        assert _heartbeat(atlas_db)[1:3] == ("ok", None)
        assert_replica_equals_kimai(kimai_db, atlas_db)
        now_kimai, now_atlas = _sessions(kimai_db, atlas_db)
        assert now_kimai and now_atlas and not (now_kimai & kept_kimai or now_atlas & kept_atlas)
    finally:
        follower.close()
    assert _sessions(kimai_db, atlas_db) == (set(), set())  # closed with the follower


def test_a_table_emptied_slice_by_slice_stops_the_follower(env: dict[str, str]) -> None:
    from pipelines.errors import MassDeleteRefused

    kimai_db, atlas_db, ids, _ = _synced_shuffled(env, seed=37)
    # before each tick Kimai loses another 12 % of its timesheets, spread over every slice:
    # each tick finds a few percent (its slice's share), far below the 20 % limit alone
    batch = len(ids) * 12 // 100
    follower = _follower(env)
    refused = None
    for tick in range(SLICES):
        _delete(kimai_db, ids[tick * batch : (tick + 1) * batch])
        before = _replica_ids(atlas_db)
        try:
            follower.tick()
        except MassDeleteRefused as exc:
            refused = (tick, str(exc), before)
            break
    assert refused is not None, "the follower deleted its way through the table"
    tick, message, before = refused
    assert tick > 0 and "over the follower's key sweep cycle" in message
    # the refused tick deleted nothing, and says why in the heartbeat
    assert _replica_ids(atlas_db) == before
    _, status, error, *_ = _heartbeat(atlas_db)
    assert status == "stopped" and error == message
    # a restart with --allow-mass-delete accepts the deletes and begins a new cycle
    follower = _follower(env, allow_mass_delete=True)
    for _ in range(SLICES):
        follower.tick()
    assert_replica_equals_kimai(kimai_db, atlas_db)


def test_cron_runs_interleave_and_sigterm_ends_the_follower_cleanly(env: dict[str, str]) -> None:
    first_sync(env, seed=41, timesheets=1500)
    kimai_db, atlas_db = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    proc = start_cli("follow", "--no-build", env=env, extra_env={**FAST, "PYTHONFAULTHANDLER": "1"})
    try:
        wait_for(lambda: _heartbeat(atlas_db) is not None, "the follower's first tick")
        # scheduled syncs take the same lock: each waits for the tick under way, then runs
        for _ in range(2):
            cron = run_cli("sync", "--wait", "60", env=env)
            assert cron.returncode == 0, cron.stderr
        gone = kimai_query(kimai_db, "SELECT MAX(id) FROM kimai2_timesheet")[0][0]
        _delete(kimai_db, [gone])
        # the tick under way may have compared one table before the delete, the other after
        wait_for(
            lambda: (
                not pg_query(
                    atlas_db,
                    f"SELECT 1 FROM {REPLICA}.replica_kimai_timesheets WHERE id = %s UNION ALL"
                    f" SELECT 1 FROM {REPLICA}.replica_kimai_timesheet_tags WHERE timesheet_id = %s",
                    (gone, gone),
                )
            ),
            "the follower to apply a delete and its cascade",
        )
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            stacks = proc.communicate(timeout=60)[1][-6000:]
            pytest.fail(f"no exit 120 s after SIGTERM; its threads:\n{stacks}")
    assert proc.returncode == 0, err
    assert "follower stopped after" in out and err == ""  # quiet ticks say nothing
    assert_replica_equals_kimai(kimai_db, atlas_db)
    # every recorded run ended: the follower's change tick and the two cron syncs
    runs = _runs(atlas_db)
    assert all(status == "success" for _, status, _ in runs)
    assert sum(command == "follow" for command, _, _ in runs) >= 1
    assert sum(command == "sync" for command, _, _ in runs) == 3


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KIMAI_", "ATLAS_", "DBT_"))}


def _edit(kimai_db: str, ids: list[int], text: str) -> None:
    engine = sa.create_engine(kimai_url(kimai_db))
    try:
        with engine.connect() as conn:
            for timesheet_id in ids:
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                kimai_do.update_timesheet(conn, timesheet_id, now=now, description=text)
    finally:
        engine.dispose()


def _run_lock_held(atlas_db: str) -> bool:
    return bool(
        pg_query(
            atlas_db,
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
        )
    )


def _ticked_since(atlas_db: str) -> Callable[[], bool]:
    """A check: has the follower ended a tick since now?"""
    started = pg_query(atlas_db, "SELECT now()")[0][0]

    def ticked() -> bool:
        beat = _heartbeat(atlas_db)
        return beat is not None and beat[3] > started

    return ticked


@pytest.mark.heavy
def test_a_killed_follower_resumes_from_its_stored_position(env: dict[str, str]) -> None:
    kimai_db, atlas_db, ids, rng = _synced_shuffled(env, seed=43)
    fast = {**FAST, "PYTHONFAULTHANDLER": "1"}
    for round_ in range(2):
        proc = start_cli("follow", "--no-build", env=env, extra_env=fast)
        try:
            wait_for(_ticked_since(atlas_db), "a tick of the restarted follower")
            # changes land while it runs; it is killed inside a tick (the run lock, held only
            # while a tick runs, is seen held), then at a moment no tick chooses
            _edit(kimai_db, ids[round_ * 10 : round_ * 10 + 5], f"round {round_}")
            _delete(kimai_db, ids[round_ * 10 + 5 : round_ * 10 + 8])
            if round_ == 0:
                wait_for(lambda: _run_lock_held(atlas_db), "a tick under way", every=0.02)
            else:
                time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.kill()
            proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        stored = json.loads(_heartbeat(atlas_db)[0])["slice"]
        # the next start goes on with the slice after the stored one: none skipped
        one = run_cli("follow", "--no-build", "--ticks", "1", env=env, extra_env=FAST)
        assert one.returncode == 0, one.stderr
        assert json.loads(_heartbeat(atlas_db)[0])["slice"] == (stored + 1) % SLICES

    # a whole cycle after the last kill: the replica is Kimai, row for row
    _edit(kimai_db, ids[100:101], "after the kills")  # a recorded tick closes the killed runs
    cycle = run_cli("follow", "--no-build", "--ticks", str(SLICES), env=env, extra_env=FAST)
    assert cycle.returncode == 0, cycle.stderr
    assert_replica_equals_kimai(kimai_db, atlas_db)
    statuses = {status for _, status, _ in _runs(atlas_db)}
    assert "running" not in statuses and statuses <= {"success", "crashed"}


def test_a_big_table_without_the_cursor_index_is_named_at_start(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import follow
    from pipelines.config import load_settings
    from pipelines.demo.kimai_data import build_kimai

    kimai_db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(kimai_db), seed=47, timesheets=1500)
    kimai_exec(kimai_db, "ANALYZE TABLE kimai2_timesheet")
    settings = load_settings(env, dotenv=False)
    monkeypatch.setattr(follow, "INDEX_NEEDED_ROWS", 1000)  # 1,500 timesheets stand for 1M
    warned = follow.warn_unindexed_cursors(settings)
    assert len(warned) == 1, warned
    about = re.match(r"kimai2_timesheet holds about ([\d,]+) rows", warned[0])
    assert about and 1000 <= int(about.group(1).replace(",", "")) <= 3000  # an estimate
    assert "no index on modified_at" in warned[0] and "docs/kimai-index.md" in warned[0]
    kimai_exec(
        kimai_db, "CREATE INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON kimai2_timesheet (modified_at)"
    )
    assert follow.warn_unindexed_cursors(settings) == []
    monkeypatch.setattr(follow, "INDEX_NEEDED_ROWS", 1_000_000)
    kimai_exec(kimai_db, "DROP INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON kimai2_timesheet")
    assert follow.warn_unindexed_cursors(settings) == []  # a small Kimai: no warning


@pytest.mark.heavy
def test_the_follower_keeps_dbts_parse_until_the_project_changes(
    built: Stack, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbt.parser.manifest import ManifestLoader

    from pipelines.config import load_settings
    from pipelines.follow import Follower

    parses: list[int] = []
    parse = ManifestLoader.get_full_manifest.__func__

    def counted(cls, *args, **kwargs):
        parses.append(1)
        return parse(cls, *args, **kwargs)

    monkeypatch.setattr(ManifestLoader, "get_full_manifest", classmethod(counted))
    project = project_copy(tmp_path / "project", marker="first")
    # the incremental facts: a model compiled with an ephemeral one in every build
    extra = {
        "DBT_PROJECT_DIR": str(project),
        "ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental",
    }
    settings = load_settings({**built.env, **FAST, **extra}, dotenv=False)
    follower = Follower(settings)
    ids = [r[0] for r in kimai_query(built.kimai_db, "SELECT id FROM kimai2_timesheet LIMIT 3")]

    def edited_and_ticked(timesheet_id: int, text: str) -> None:
        _edit(built.kimai_db, [timesheet_id], text)
        outcome = follower.tick()
        assert outcome is not None and outcome.transform is not None
        seen = pg_query(
            built.atlas_db,
            f"SELECT description, build_marker FROM {ANALYTICS}.vw_timesheet_facts"
            f" WHERE timesheet_id = {timesheet_id}",
        )
        assert seen == [(text, marker)]

    marker = "first"
    edited_and_ticked(ids[0], "parsed once")
    edited_and_ticked(ids[1], "and kept")  # a delta build: two dbt invocations, no parse
    assert len(parses) == 1
    # a model edited under the running follower: its next build parses it
    for mart in (project / "models" / "marts").glob("vw_*.sql"):
        mart.write_text(
            mart.read_text().replace("'first' as build_marker", "'second' as build_marker")
        )
    marker = "second"
    edited_and_ticked(ids[2], "parsed again")
    assert len(parses) == 2
