"""What Metabase relies on, on a real PostgreSQL: the marts' contracts and the BI role's scope.

A Kimai fixture is synced and the project built (`transform`, through the shadow schemas
and the swap) with a BI role. A copy of the project with one mart column renamed and
another retyped must fail the build with dbt's contract error naming both columns, while
BI keeps the published views. The BI role, logged in as itself, must read exactly what
ATLAS_BI_ROLE_SCOPE allows: `replica` the vw_* views and the replica_kimai_* tables,
`marts` the vw_* views only, and switching from the one to the other takes the replica
tables away at the next build.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import POSTGRES, pg_query
from tests.stack import (
    ANALYTICS,
    INTERNAL,
    OVERLAY,
    REPLICA,
    Stack,
    make_stack,
    marts_in_project,
    project_copy,
    transform,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A small synced stack, built and published once with the unchanged project."""
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with make_stack(
        tmp_path_factory.mktemp("metabase"), timesheets=300, seed=17, bi_role=role
    ) as stack:
        result = transform(stack)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "dbt build passed" in result.stdout
        yield stack


def _marts(stack: Stack) -> list[str]:
    return marts_in_project()


def _columns(stack: Stack, view: str) -> list[str]:
    return [
        r[0]
        for r in pg_query(
            stack.atlas_db,
            "select column_name from information_schema.columns"
            " where table_schema = %s and table_name = %s order by ordinal_position",
            (ANALYTICS, view),
        )
    ]


@pytest.mark.heavy
def test_a_renamed_or_retyped_mart_column_fails_the_build_and_bi_keeps_its_views(
    built: Stack, tmp_path: Path
) -> None:
    before = {view: _columns(built, view) for view in ("vw_user_teams", "vw_users")}
    assert "team_color" in before["vw_user_teams"] and "team_count" in before["vw_users"]
    copy = project_copy(tmp_path / "project")
    teams = copy / "models" / "marts" / "vw_user_teams.sql"
    text = teams.read_text()
    assert "teams.color as team_color," in text
    teams.write_text(text.replace("teams.color as team_color,", "teams.color as team_colour,"))
    users = copy / "models" / "marts" / "vw_users.sql"
    text = users.read_text()
    old = "coalesce(team_names.team_count, 0) as team_count,"
    assert old in text
    # bigint to integer: the same values, another type
    users.write_text(
        text.replace(old, "cast(coalesce(team_names.team_count, 0) as integer) as team_count,")
    )

    result = transform(built, DBT_PROJECT_DIR=str(copy))
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "enforced contract that failed" in output
    # dbt's table names each column and why
    assert any(
        "team_colour" in line and "missing in contract" in line for line in output.splitlines()
    )
    assert any(
        "team_color" in line and "missing in definition" in line for line in output.splitlines()
    )
    assert any(
        "team_count" in line and "data type mismatch" in line for line in output.splitlines()
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dbt build failed") and "vw_user_teams" in last
    assert "vw_users" in last
    # nothing was published: BI reads the last good build, columns as before
    assert {view: _columns(built, view) for view in before} == before

    # the unchanged copy builds and publishes
    unchanged = project_copy(tmp_path / "unchanged")
    again = transform(built, DBT_PROJECT_DIR=str(unchanged))
    assert again.returncode == 0, again.stdout + again.stderr


class _Reader:
    """A connection logged in as the BI role."""

    def __init__(self, stack: Stack) -> None:
        assert stack.bi_role
        self.conn = psycopg2.connect(
            host=POSTGRES["host"], port=POSTGRES["port"], user=stack.bi_role, dbname=stack.atlas_db
        )
        self.conn.autocommit = True

    def attempt(self, sql: str) -> str | None:
        """None when the query ran, else its SQLSTATE."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
            return None
        except psycopg2.Error as exc:
            return exc.pgcode

    def count(self, sql: str) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def close(self) -> None:
        self.conn.close()


def _relations(stack: Stack, schema: str) -> list[str]:
    return [
        r[0]
        for r in pg_query(
            stack.atlas_db,
            "select table_name from information_schema.tables where table_schema = %s order by 1",
            (schema,),
        )
    ]


def test_bi_role_scope_replica_then_marts(built: Stack) -> None:
    marts = _marts(built)
    assert len(marts) >= 12 and _relations(built, ANALYTICS) == marts
    replica_tables = [t for t in _relations(built, REPLICA) if t.startswith("replica_kimai_")]
    assert "replica_kimai_users" in replica_tables and len(replica_tables) >= 10
    internal = _relations(built, INTERNAL)
    assert any(t.startswith("stg_") for t in internal) and any(
        t.startswith("int_") for t in internal
    )
    # what each view holds, read by the database owner
    expected = {
        view: pg_query(built.atlas_db, f"select count(*) from {ANALYTICS}.{view}")[0][0]
        for view in marts
    }
    assert expected["vw_users"] > 0 and expected["vw_timesheet_facts"] > 0

    # replica (the default): the views and the replica tables, users' e-mails included
    reader = _Reader(built)
    try:
        for view in marts:
            assert reader.count(f"select count(*) from {ANALYTICS}.{view}") == expected[view], view
        for table in replica_tables:
            assert reader.attempt(f'select * from {REPLICA}."{table}" limit 1') is None, table
        assert reader.attempt(f"select email from {REPLICA}.replica_kimai_users limit 1") is None
        for name in internal:
            assert reader.attempt(f'select * from {INTERNAL}."{name}" limit 1') == "42501", name
    finally:
        reader.close()

    # marts: the next build takes the replica away; every view still answers in full
    result = transform(built, ATLAS_BI_ROLE_SCOPE="marts")
    assert result.returncode == 0, result.stdout + result.stderr
    reader = _Reader(built)
    try:
        for view in marts:
            assert reader.count(f"select count(*) from {ANALYTICS}.{view}") == expected[view], view
        for table in replica_tables:
            assert reader.attempt(f'select * from {REPLICA}."{table}" limit 1') == "42501", table
        assert reader.attempt(f"select email from {REPLICA}.replica_kimai_users") == "42501"
        for name in internal:
            assert reader.attempt(f'select * from {INTERNAL}."{name}" limit 1') == "42501", name
        assert reader.attempt(f"select * from {OVERLAY}.payments limit 1") == "42501"
        # a view of the analytics schema cannot be made to reach the replica either
        assert reader.attempt(f"create view {ANALYTICS}.peek as select 1") == "42501"
    finally:
        reader.close()
    # and nothing is left to the role on the replica schema itself
    assert pg_query(
        built.atlas_db,
        "select has_schema_privilege(%s, %s, 'USAGE')",
        (built.bi_role, REPLICA),
    ) == [(False,)]
