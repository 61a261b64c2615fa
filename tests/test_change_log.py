"""The replica's change log against real MariaDB and PostgreSQL: it holds exactly the keys
Kimai changed, commits with the load or not at all, says `rewrite` for bulk loads, and a
pruned log makes the materialized facts recompute every row."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_exec, kimai_query, kimai_url, pg_query, run_cli, sync_now
from tests.stack import INTERNAL, make_stack, transform

LOG = "kimai_replica.sync_change_log"


@pytest.fixture
def kimai(env):
    """A realistic Kimai (600 timesheets) in this test's MariaDB database, synced once."""
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=11, timesheets=600)
    sync_now()
    return env["KIMAI_DB_DATABASE"]


def _logged(atlas_db: str, after: int) -> set[tuple]:
    """(table, key_1, key_2) of the key rows logged after position `after`."""
    rows = pg_query(
        atlas_db,
        f"select table_name, key_1, key_2 from {LOG} where change_id > %s and change <> 'rewrite'",
        (after,),
    )
    return set(rows)


def _position(atlas_db: str) -> int:
    return pg_query(atlas_db, f"select max(change_id) from {LOG}")[0][0]


def test_the_log_holds_exactly_the_keys_kimai_changed(kimai, env):
    atlas = env["ATLAS_DB_DATABASE"]
    # the first load: one rewrite row per table (bulk path), no key rows
    rewrites = pg_query(atlas, f"select table_name, count(*) from {LOG} group by 1")
    assert dict(rewrites) == {
        "*": 1,
        **{
            t: 2  # the bulk load's, and the triggers' installation after it
            for t in (
                "customers",
                "projects",
                "activities",
                "users",
                "tags",
                "timesheets",
                "timesheet_tags",
                "teams",
                "users_teams",
                "user_preferences",
                "configuration",
            )
        },
    }
    start = _position(atlas)
    assert _logged(atlas, 0) == set()

    edited = [r[0] for r in kimai_query(kimai, "SELECT id FROM kimai2_timesheet LIMIT 3")]
    gone = kimai_query(
        kimai,
        "SELECT t.id FROM kimai2_timesheet t WHERE EXISTS"
        " (SELECT 1 FROM kimai2_timesheet_tags x WHERE x.timesheet_id = t.id)"
        " ORDER BY t.id DESC LIMIT 1",
    )[0][0]
    gone_pairs = kimai_query(
        kimai,
        "SELECT timesheet_id, tag_id FROM kimai2_timesheet_tags WHERE timesheet_id = %s",
        (gone,),
    )
    removed_pair = kimai_query(
        kimai, "SELECT timesheet_id, tag_id FROM kimai2_timesheet_tags ORDER BY 1, 2 LIMIT 1"
    )[0]
    user = kimai_query(kimai, "SELECT MAX(id) FROM kimai2_users")[0][0]
    kimai_exec(
        kimai,
        "UPDATE kimai2_timesheet SET description = 'logged', modified_at = UTC_TIMESTAMP()"
        f" WHERE id IN ({', '.join(map(str, edited))})",
        f"DELETE FROM kimai2_timesheet WHERE id = {gone}",  # its tag pairs go by cascade
        "DELETE FROM kimai2_timesheet_tags"
        f" WHERE timesheet_id = {removed_pair[0]} AND tag_id = {removed_pair[1]}",
        f"UPDATE kimai2_users SET alias = 'Logged' WHERE id = {user}",
    )
    sync_now()
    expected = (
        {("timesheets", t, None) for t in [*edited, gone]}
        | {("timesheet_tags", t, g) for t, g in [*gone_pairs, removed_pair]}
        | {("users", user, None)}
    )
    assert _logged(atlas, start) == expected
    # a quiet run logs nothing
    quiet = _position(atlas)
    sync_now()
    assert _position(atlas) == quiet


def test_a_failed_load_logs_nothing_and_the_next_run_logs_it(kimai, env):
    atlas = env["ATLAS_DB_DATABASE"]
    start = _position(atlas)
    edited = [r[0] for r in kimai_query(kimai, "SELECT id FROM kimai2_timesheet LIMIT 5")]
    # a fault inside the merge's transaction: the replica refuses one of the rows
    pg_query(
        atlas,
        "create function kimai_replica.refuse() returns trigger language plpgsql as"
        " $$ begin raise exception 'refused by the test'; end $$;"
        " create trigger refuse before insert on kimai_replica.replica_kimai_timesheets"
        " for each row when (new.description = 'boom') execute function kimai_replica.refuse()",
    )
    kimai_exec(
        kimai,
        "UPDATE kimai2_timesheet SET description = 'boom', modified_at = UTC_TIMESTAMP()"
        f" WHERE id = {edited[0]}",
        "UPDATE kimai2_timesheet SET description = 'fine', modified_at = UTC_TIMESTAMP()"
        f" WHERE id IN ({', '.join(map(str, edited[1:]))})",
    )
    failed = run_cli("sync", env=env)
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "refused by the test" in failed.stderr
    # the run reached the merge (the fault fired), and nothing of it was logged or written
    assert _position(atlas) == start
    assert pg_query(
        atlas,
        "select count(*) from kimai_replica.replica_kimai_timesheets where description = 'fine'",
    ) == [(0,)]

    pg_query(atlas, "drop trigger refuse on kimai_replica.replica_kimai_timesheets")
    repaired = run_cli("sync", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _logged(atlas, start) == {("timesheets", t, None) for t in edited}


def test_a_full_refresh_logs_one_rewrite_per_table_and_no_keys(kimai, env):
    atlas = env["ATLAS_DB_DATABASE"]
    start = _position(atlas)
    sync_now(full_refresh=True)
    rows = pg_query(
        atlas, f"select table_name, change from {LOG} where change_id > %s order by 1", (start,)
    )
    tables = {"customers", "projects", "activities", "users", "tags", "timesheets"}
    tables |= {"timesheet_tags", "teams", "users_teams", "user_preferences", "configuration"}
    assert sorted(rows) == sorted((t, "rewrite") for t in tables)


@pytest.mark.heavy
def test_a_pruned_log_makes_the_facts_table_recompute_every_row(tmp_path: Path) -> None:
    incremental = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental"}
    table = f"{INTERNAL}.int_timesheet_facts_materialized"
    # the rows of the newest writing transaction (PostgreSQL's xmin), with their description
    newest = (
        f"select timesheet_id, description from {table}"
        f" where age(xmin) = (select min(age(xmin)) from {table}) order by 1"
    )
    with make_stack(tmp_path, timesheets=300, seed=21) as stack:
        for _ in range(2):  # both copies built
            result = transform(stack, **incremental)
            assert result.returncode == 0, result.stdout + result.stderr
        first, second, last = kimai_query(
            stack.kimai_db,
            "SELECT (SELECT MIN(id) FROM kimai2_timesheet),"
            " (SELECT id FROM kimai2_timesheet ORDER BY id LIMIT 1 OFFSET 1),"
            " (SELECT MAX(id) FROM kimai2_timesheet)",
        )[0]

        # a change logged after both copies' positions, then a week and a day pass: the next
        # run prunes it (a later change to another timesheet stays in the log, but the
        # earlier one is lost)
        for victim, description in ((first, "before the prune"), (second, "after the prune")):
            kimai_exec(
                stack.kimai_db,
                f"UPDATE kimai2_timesheet SET description = '{description}',"
                f" modified_at = UTC_TIMESTAMP() WHERE id = {victim}",
            )
            synced = run_cli("sync", env=stack.env)
            assert synced.returncode == 0, synced.stderr
            if description == "before the prune":
                pg_query(
                    stack.atlas_db, f"update {LOG} set logged_at = logged_at - interval '8 days'"
                )
        kept, through = pg_query(
            stack.atlas_db,
            f"select (select count(*) from {LOG} where logged_at < now() - interval '7 days'),"
            " (select max(pruned_through) from kimai_replica.sync_change_log_pruned)",
        )[0]
        assert kept == 0 and through is not None
        last_description = kimai_query(
            stack.kimai_db, "SELECT description FROM kimai2_timesheet WHERE id = %s", (last,)
        )[0][0]
        for _ in range(2):  # each copy in turn
            result = transform(stack, **incremental)
            assert result.returncode == 0, result.stdout + result.stderr
            # every row recomputed and compared; the rows that differ are written: the
            # pruned change too, which a refresh from the log alone would have missed, and
            # the newest timesheet, which every build writes
            assert pg_query(stack.atlas_db, newest) == [
                (first, "before the prune"),
                (second, "after the prune"),
                (last, last_description),
            ]
