"""BI never goes dark: Kimai's silent record moves are caught by the scheduled run, and no
failed transform takes a vw_* relation away or serves half of a build.

Real MariaDB and PostgreSQL; the expected numbers come from SQL on Kimai.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as kimai_do
from tests.conftest import (
    POSTGRES,
    kimai_query,
    kimai_url,
    pg_connect,
    pg_query,
    run_audit_row,
    run_cli,
    start_cli,
)
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import (
    ANALYTICS,
    CONTRACT_COLUMNS,
    INTERNAL,
    OVERLAY,
    REPLICA,
    Stack,
    assert_customer_money_matches_kimai,
    assert_project_hours_match_kimai,
    assert_user_month_hours_match_kimai,
    make_stack,
    project_copy,
    transform,
)

# vw_user_days and vw_budget_months run their calendars up to today (each user's, the report
# zone's): a test that spans some user's midnight would count a row more. Rows before a fixed
# day do not move with the clock.
_FIXED_DAY = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
_CLOCK_FREE = {
    "vw_user_days": f"where date_tz < date '{_FIXED_DAY}'",
    "vw_budget_months": f"where report_month_start_date < date '{_FIXED_DAY}' - interval '1 month'",
}


def _bi_rows(stack: Stack) -> dict[str, int]:
    """Row count of every vw_* relation, read as the BI role (fails if one is missing).

    The calendars count only their days before `_FIXED_DAY` (the views are still read
    whole: a missing or broken view fails the query).
    """
    assert stack.bi_role
    conn = psycopg2.connect(
        host=POSTGRES["host"], port=POSTGRES["port"], user=stack.bi_role, dbname=stack.atlas_db
    )
    try:
        with conn.cursor() as cur:
            counts = {}
            for view in CONTRACT_COLUMNS:
                cur.execute(f"select count(*) from {ANALYTICS}.{view} {_CLOCK_FREE.get(view, '')}")
                counts[view] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


def _last_run_orphans(stack: Stack) -> dict[str, int | None]:
    return dict(
        pg_query(
            stack.atlas_db,
            f"select table_name, orphans_reread from {REPLICA}.sync_run_tables"
            f" where run_id = (select run_id from {REPLICA}.sync_runs"
            "  order by started_at desc limit 1)",
        )
    )


@pytest.mark.heavy
def test_delete_and_move_is_caught_by_the_scheduled_run_alone(tmp_path: Path) -> None:
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with make_stack(tmp_path, timesheets=1500, seed=11, bi_role=role) as stack:
        first = run_cli(env=stack.env, timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr

        def busiest(column: str, where: str = "1 = 1") -> list[int]:
            return [
                r[0]
                for r in kimai_query(
                    stack.kimai_db,
                    f"SELECT t.{column} FROM kimai2_timesheet t"
                    f" JOIN kimai2_activities a ON a.id = t.activity_id WHERE {where}"
                    f" GROUP BY t.{column} ORDER BY COUNT(*) DESC, t.{column} LIMIT 2",
                )
            ]

        user, user_to = busiest("`user`")
        project, project_to = busiest("project_id")
        activity, activity_to = busiest("activity_id", "a.project_id IS NULL")
        moved = {
            r[0]
            for r in kimai_query(
                stack.kimai_db,
                "SELECT id FROM kimai2_timesheet WHERE `user` = %s OR project_id = %s"
                " OR activity_id = %s",
                (user, project, activity),
            )
        }
        assert len(moved) > 50
        engine = sa.create_engine(kimai_url(stack.kimai_db))
        try:
            with engine.connect() as conn:
                kimai_do.delete_user(conn, user, move_to=user_to)
                kimai_do.delete_activity(conn, activity, move_to=activity_to)
            # the users alone first: the replica then holds timesheets whose user it lacks
            # (as a run of an earlier version, or `sync users`, would leave it)
            alone = run_cli("sync", "users", env=stack.env)
            assert alone.returncode == 0, alone.stderr
            dangling = pg_query(
                stack.atlas_db,
                f"select count(*) from {REPLICA}.replica_kimai_timesheets t where not exists"
                f" (select 1 from {REPLICA}.replica_kimai_users u where u.id = t.user)",
            )[0][0]
            assert dangling > 0
            with engine.connect() as conn:
                kimai_do.delete_project(conn, project, move_to=project_to)
        finally:
            engine.dispose()
        modified = kimai_query(
            stack.kimai_db,
            "SELECT COUNT(*) FROM kimai2_timesheet WHERE modified_at >= UTC_TIMESTAMP() - INTERVAL 1 HOUR",
        )[0][0]
        assert modified == 0, "Kimai's moves must not bump modified_at"

        run = run_cli(env=stack.env, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert_replica_equals_kimai(stack.kimai_db, stack.atlas_db)
        assert_project_hours_match_kimai(stack)
        assert_user_month_hours_match_kimai(stack)
        assert_customer_money_matches_kimai(stack)
        assert _last_run_orphans(stack)["timesheets"] == len(moved)
        counts = _bi_rows(stack)
        assert (
            counts["vw_timesheet_facts"]
            == kimai_query(stack.kimai_db, "SELECT COUNT(*) FROM kimai2_timesheet")[0][0]
        )

        # the repair is complete: the next sync finds nothing to re-read (its build would
        # prove nothing more than the one above)
        again = run_cli("sync", env=stack.env, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _last_run_orphans(stack)["timesheets"] == 0


# -- failed and interrupted builds ---------------------------------------------------------------


def _bi_connect(stack: Stack):
    conn = psycopg2.connect(
        host=POSTGRES["host"], port=POSTGRES["port"], user=stack.bi_role, dbname=stack.atlas_db
    )
    conn.autocommit = True
    return conn


def _served(stack: Stack) -> dict[str, str]:
    """Per vw_*, the build BI reads: the marker of a marked build, else "A" (the original).

    Read as the BI role; a missing relation raises.
    """
    conn = _bi_connect(stack)
    try:
        served = {}
        for view in CONTRACT_COLUMNS:
            with conn.cursor() as cur:
                cur.execute(f"select * from {ANALYTICS}.{view} limit 0")
                names = [d[0] for d in cur.description]
                if "build_marker" not in names:
                    served[view] = "A"
                    continue
                cur.execute(f"select distinct build_marker from {ANALYTICS}.{view}")
                markers = {r[0] for r in cur.fetchall()}
                if not markers:  # an empty view (vw_data_issues): its definition says
                    cur.execute("select pg_get_viewdef(%s::regclass)", (f"{ANALYTICS}.{view}",))
                    found = re.search(r"'(\w+)'::text AS build_marker", cur.fetchone()[0])
                    markers = {found.group(1) if found else "A"}
                (served[view],) = markers
        return served
    finally:
        conn.close()


WATCH_PAUSE = 1.0
"""Seconds between two sweeps of `_bi_watch`.

A build that replaced views where BI reads them would leave a view missing for seconds (dbt
drops it with CASCADE and creates it again model by model), many sweeps long at this pause.
"""

WATCH_PROBE = "select 1 from {schema}.{view} where false"
"""What a sweep asks of each view: it must exist, the BI role must be allowed to read it
(PostgreSQL checks that when the query starts, rows or not) and its query must plan, over
relations that all still exist.

Counting every view's rows cost PostgreSQL about 0.3 s a sweep, most of a core over a test
that watches for minutes; this costs a twelfth of that. The rows themselves are compared
with `_bi_rows` before and after every fault.
"""


@contextmanager
def _bi_watch(stack: Stack) -> Iterator[list[str]]:
    """Query every vw_* as the BI role, over and over, while the block runs.

    Yields the list of errors seen (a missing relation, a failed query); the block should
    assert it is empty at its end. Also counts the sweeps, so a test can tell it watched.
    """
    errors: list[str] = []
    sweeps = [0]
    stop = threading.Event()

    def watch() -> None:
        conn = _bi_connect(stack)
        try:
            while not stop.is_set():
                for view in CONTRACT_COLUMNS:
                    try:
                        with conn.cursor() as cur:
                            cur.execute(WATCH_PROBE.format(schema=ANALYTICS, view=view))
                            cur.fetchall()
                    except psycopg2.Error as exc:
                        errors.append(f"{view}: {exc.pgcode} {str(exc).strip()}")
                sweeps[0] += 1
                stop.wait(WATCH_PAUSE)
        finally:
            conn.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(timeout=30)
    assert sweeps[0] > 0


def _health(stack: Stack) -> dict:
    row = pg_query(
        stack.atlas_db,
        "select served_build_published_at, last_build_status, last_build_failures"
        f" from {ANALYTICS}.vw_sync_health limit 1",
    )[0]
    out = run_cli("status", "--json", env=stack.env)
    build = json.loads(out.stdout)["bi_build"]
    assert build["last_status"] == row[1] and build["last_failures"] == row[2]
    return {"served_at": row[0], "last_status": row[1], "last_failures": row[2]}


def _start_transform(stack: Stack, project: Path) -> subprocess.Popen:
    return start_cli(
        "transform", env=stack.env, extra_env={"DBT_PROJECT_DIR": str(project)}, cwd=project.parent
    )


def _run_row(stack: Stack, pid: int) -> tuple | None:
    return run_audit_row(stack.atlas_db, pid, REPLICA)


def _wait_for_build(stack: Stack, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until `proc`'s run has started its dbt build and dbt works in Atlas DB.

    dbt opens its sessions once it has parsed the project and starts on the nodes: a session
    of it, busy or between two statements, means the build is going.
    """
    deadline = time.monotonic() + timeout
    conn = pg_connect(stack.atlas_db)  # one session: a new one per poll costs Atlas DB more
    try:
        while time.monotonic() < deadline:
            row = run_audit_row(stack.atlas_db, proc.pid, REPLICA, conn=conn)
            with conn.cursor() as cur:
                cur.execute(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and application_name = 'kimai-atlas-dbt'"
                )
                busy = cur.fetchone()[0]
            if row is not None and row[2] == "running" and busy:
                return
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
    finally:
        conn.close()
    raise TimeoutError("the build did not start")


@pytest.mark.heavy
def test_failed_builds_leave_bi_on_the_last_good_build(tmp_path: Path) -> None:
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with make_stack(tmp_path, timesheets=400, seed=8, bi_role=role) as stack:
        # a stale payments rollup cache (newer than its payments, yet different) is a
        # warning only: the build passes and is published
        pg_query(
            stack.atlas_db,
            f"update {OVERLAY}.project_payments_rollup set amount_minor = amount_minor + 1"
            f" where id = (select min(id) from {OVERLAY}.project_payments_rollup)",
        )
        good = transform(stack)
        assert good.returncode == 0, good.stdout + good.stderr
        assert "0 warnings" not in good.stdout
        assert set(_served(stack).values()) == {"A"}
        counts = _bi_rows(stack)
        published = _health(stack)["served_at"]

        marked = project_copy(tmp_path / "b", marker="B")
        broken = {
            "intermediate": project_copy(tmp_path / "b-int", marker="B"),
            # a failing mart test and a model error: neither is downstream of the other, so
            # one build meets both
            "mart": project_copy(tmp_path / "b-mart", marker="B"),
        }
        (broken["intermediate"] / "tests/dbt/assert_intermediate_breaks.sql").write_text(
            "select * from {{ ref('int_project_timesheet_totals') }}\n"
        )
        (broken["mart"] / "tests/dbt/assert_mart_breaks.sql").write_text(
            "select * from {{ ref('vw_customers') }}\n"
        )
        (broken["mart"] / "models/marts/vw_broken.sql").write_text(
            "select no_such_column from {{ ref('vw_projects') }}\n"
        )

        def fails(expected_exit: set[int], names: str | None, **extra: str) -> None:
            result = transform(stack, **extra)
            assert result.returncode in expected_exit, result.stdout + result.stderr
            if names is not None:
                assert names in result.stderr
                # one line, naming the failing nodes
                assert result.stderr.strip().splitlines()[-1].startswith("error: dbt build failed")
            # the last good build's views (over the live data: views compute on read)
            assert set(_served(stack).values()) == {"A"}
            health = _health(stack)
            assert health["served_at"] == published
            assert health["last_status"] == "failed"
            if names is not None:
                assert names in health["last_failures"]

        with _bi_watch(stack) as errors:
            # a failing data test on a source: two overrides for one Kimai project
            pid = next(iter(stack.overlays.override_ids_by_kimai_project))
            pg_query(
                stack.atlas_db,
                f"alter table {OVERLAY}.overrides_projects"
                " drop constraint overrides_projects_kimai_project_id_key",
            )
            pg_query(
                stack.atlas_db,
                f"insert into {OVERLAY}.overrides_projects"
                " (id, kimai_project_id, created_at, updated_at) values (99999, %s, now(), now())",
                (pid,),
            )
            fails(
                {1},
                "source_unique_atlas_overrides_projects_kimai_project_id",
                DBT_PROJECT_DIR=str(marked),
            )
            pg_query(stack.atlas_db, f"delete from {OVERLAY}.overrides_projects where id = 99999")
            # ... in staging: a Kimai project's overlay row flagged prospective
            pg_query(
                stack.atlas_db,
                f"update {OVERLAY}.overrides_projects set is_prospective = true where id ="
                f" (select min(id) from {OVERLAY}.overrides_projects"
                "  where kimai_project_id is not null)",
            )
            fails(
                {1}, "expression_is_true_stg_atlas__overrides_projects", DBT_PROJECT_DIR=str(marked)
            )
            pg_query(
                stack.atlas_db,
                f"update {OVERLAY}.overrides_projects set is_prospective = false"
                " where kimai_project_id is not null",
            )
            # failing data tests in the intermediate and mart layers, and a model error
            assert _bi_rows(stack) == counts
            fails({1}, "assert_intermediate_breaks", DBT_PROJECT_DIR=str(broken["intermediate"]))
            fails({1}, "assert_mart_breaks", DBT_PROJECT_DIR=str(broken["mart"]))
            assert "vw_broken" in _health(stack)["last_failures"]
            assert _bi_rows(stack) == counts
            assert not pg_query(
                stack.atlas_db,
                "select 1 from information_schema.tables where table_name = 'vw_broken'"
                " and table_schema = %s",
                (ANALYTICS,),
            )

            # Atlas DB lost mid-build: no new sessions, and dbt's are terminated while it
            # builds (BI's open session lives on, as a pooled Metabase connection would)
            proc = _start_transform(stack, marked)
            _wait_for_build(stack, proc)
            fault_at = pg_query(stack.atlas_db, "select clock_timestamp()")[0][0]
            admin = f'alter database "{stack.atlas_db}" allow_connections'
            pg_query("postgres", f"{admin} false")
            try:
                pg_query(
                    "postgres",
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = %s and application_name = 'kimai-atlas-dbt'",
                    (stack.atlas_db,),
                )
                out, err = proc.communicate(timeout=300)
            finally:
                pg_query("postgres", f"{admin} true")
            assert proc.returncode == 4, out + err
            status, finished_at, build_status = _run_row(stack, proc.pid)
            # the fault hit the run while it was building: it ended after, unpublished
            assert status == "failed" and build_status == "failed" and finished_at > fault_at
            assert _health(stack)["served_at"] == published
            assert set(_served(stack).values()) == {"A"}

            # the complete new build, once it passes
            good = transform(stack, DBT_PROJECT_DIR=str(marked))
            assert good.returncode == 0, good.stdout + good.stderr
            assert set(_served(stack).values()) == {"B"}
            health = _health(stack)
            assert health["last_status"] == "published" and health["served_at"] > published
            assert health["last_failures"] is None
        assert errors == []
        assert _bi_rows(stack) == counts


KILLS = 3


@pytest.mark.heavy
def test_killed_transforms_never_take_a_view_away(tmp_path: Path) -> None:
    """SIGKILL `transform` 3 times at points spread over its dbt build: every vw_* stays
    queryable by the BI role throughout, and BI reads either the old build or the complete
    new one."""
    role = f"bi_{uuid.uuid4().hex[:10]}"
    rng = random.Random(20261204)
    with make_stack(tmp_path, timesheets=300, seed=4, bi_role=role) as stack:
        # the first build: how long its run goes on once dbt works in Atlas DB
        first = start_cli("transform", env=stack.env)
        _wait_for_build(stack, first)
        building_since = time.monotonic()
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
        building = time.monotonic() - building_since
        marked = project_copy(tmp_path / "b", marker="B")
        mid_build = 0
        with _bi_watch(stack) as errors:
            for kill in range(KILLS):
                proc = _start_transform(stack, marked)
                _wait_for_build(stack, proc)
                # one kill in each quarter of the first 75 % of the build: early to late, and
                # early enough that a build a little faster than the first is still going
                delay = (kill + rng.random()) / KILLS * 0.75 * building
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    row = _run_row(stack, proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
                    after = _run_row(stack, proc.pid)
                    # the kill hit the build while it was going only if the run recorded no
                    # end and had recorded the build's start before the kill
                    hit = after is not None and after[1] is None
                    if hit and row is not None and row[2] == "running":
                        assert after[0] == "running"
                        mid_build += 1
                else:
                    proc.communicate()
                assert len(set(_served(stack).values())) == 1, _served(stack)
        assert errors == []
        assert mid_build >= KILLS - 1, f"only {mid_build} of {KILLS} kills hit a build"
        done = transform(stack, DBT_PROJECT_DIR=str(marked))
        assert done.returncode == 0, done.stdout + done.stderr
        assert set(_served(stack).values()) == {"B"}


@pytest.mark.heavy
def test_transform_passes_select_and_full_refresh_to_dbt(tmp_path: Path) -> None:
    """Also: a changed column set of the facts rebuilds each copy of the table whole."""
    incremental = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental"}
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with make_stack(tmp_path, timesheets=300, seed=12, bi_role=role) as stack:
        whole = transform(stack, **incremental)
        assert whole.returncode == 0, whole.stdout + whole.stderr
        nodes = int(whole.stdout.split("dbt build passed: ")[1].split()[0])

        # a selection builds and tests that node only, and BI gets the whole project as
        # it is now: the models left out were brought up to date in the shadow first
        marked = project_copy(tmp_path / "b", marker="B")
        env = {**stack.env, **incremental, "DBT_PROJECT_DIR": str(marked)}
        one = run_cli("transform", "--select", "vw_customers", env=env, timeout=600)
        assert one.returncode == 0, one.stdout + one.stderr
        selected = int(one.stdout.split("dbt build passed: ")[1].split()[0])
        assert 0 < selected < nodes / 4, (selected, nodes)
        assert set(_served(stack).values()) == {"B"}

        def rewritten() -> tuple[int, int]:
            # rows of the newest writing transaction (PostgreSQL's xmin), of all rows
            return pg_query(
                stack.atlas_db,
                "select count(*) filter (where age(xmin) = (select min(age(xmin))"
                f" from {INTERNAL}.int_timesheet_facts_materialized)), count(*)"
                f" from {INTERNAL}.int_timesheet_facts_materialized",
            )[0]

        # without changes an incremental build rewrites one row (the newest timesheet, which
        # carries the log position); --full-refresh every row
        quiet = run_cli("transform", env=env, timeout=600)
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        written, total = rewritten()
        assert written == 1 and total > 1
        full = run_cli(
            "transform",
            "--full-refresh",
            "-s",
            "int_timesheet_facts_materialized",
            env=env,
            timeout=600,
        )
        assert full.returncode == 0, full.stdout + full.stderr
        assert rewritten() == (total, total)

        # both copies (live and shadow) exist now; a model that gains a column rebuilds
        # each copy whole, in turn
        wider = project_copy(tmp_path / "wider")
        facts = wider / "models" / "intermediate" / "int_timesheet_facts.sql"
        text = facts.read_text()
        old = "        timesheets.synced_at\n\n    from timesheets"
        assert old in text
        facts.write_text(
            text.replace(
                old,
                "        timesheets.synced_at,\n        2 * timesheets.timesheet_id as twice_id"
                "\n\n    from timesheets",
            )
        )
        for _ in range(2):  # each copy in turn
            result = run_cli("transform", env={**env, "DBT_PROJECT_DIR": str(wider)}, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
            assert pg_query(
                stack.atlas_db,
                "select count(*), count(*) filter (where twice_id = 2 * timesheet_id)"
                f" from {INTERNAL}.int_timesheet_facts_materialized",
            ) == [(total, total)]
