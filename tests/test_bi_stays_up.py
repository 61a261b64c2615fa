"""BI never goes dark: Kimai's silent record moves are caught by the scheduled run, and no
failed transform takes a vw_* relation away or serves half of a build.

Real MariaDB and PostgreSQL; the expected numbers come from SQL on Kimai.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg2
import sqlalchemy as sa

from pipelines.fixtures import kimai_actions as kimai_do
from tests.conftest import POSTGRES, kimai_query, kimai_url, pg_query, run_cli
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import (
    ANALYTICS,
    CONTRACT_COLUMNS,
    REPLICA,
    Stack,
    assert_customer_money_matches_kimai,
    assert_project_hours_match_kimai,
    assert_user_month_hours_match_kimai,
    make_stack,
)


def _bi_rows(stack: Stack) -> dict[str, int]:
    """Row count of every vw_* relation, read as the BI role (fails if one is missing)."""
    assert stack.bi_role
    conn = psycopg2.connect(
        host=POSTGRES["host"], port=POSTGRES["port"], user=stack.bi_role, dbname=stack.atlas_db
    )
    try:
        with conn.cursor() as cur:
            counts = {}
            for view in CONTRACT_COLUMNS:
                cur.execute(f"select count(*) from {ANALYTICS}.{view}")
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

        again = run_cli(env=stack.env, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _last_run_orphans(stack)["timesheets"] == 0
