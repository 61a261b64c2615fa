"""`sync --dry-run`: counts what a run would write, first loads included, and writes nothing."""

from __future__ import annotations

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_exec, kimai_query, kimai_url, pg_query, run_cli
from tests.replica_check import assert_replica_equals_kimai

pytestmark = pytest.mark.slow

# the summary's table names and Kimai's, written out here (not read from the registry)
KIMAI_TABLES = {
    "customers": "kimai2_customers",
    "projects": "kimai2_projects",
    "activities": "kimai2_activities",
    "users": "kimai2_users",
    "tags": "kimai2_tags",
    "timesheets": "kimai2_timesheet",
    "timesheet_tags": "kimai2_timesheet_tags",
}
COLUMNS = ("kimai rows", "replica before", "read", "inserted", "updated", "deleted")


def _summary(stdout: str) -> dict[str, dict[str, int]]:
    """The run's printed summary: table → column → count."""
    counts = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in KIMAI_TABLES and len(cells) == 1 + len(COLUMNS):
            counts[cells[0]] = {
                c: int(v.replace(",", "")) for c, v in zip(COLUMNS, cells[1:], strict=True)
            }
    assert set(counts) == set(KIMAI_TABLES), stdout
    return counts


def _replica_snapshot(atlas_db: str) -> list[tuple]:
    """Every replica table's row count and an order-independent digest of its rows."""
    names = pg_query(
        atlas_db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kimai_replica'"
        " ORDER BY table_name",
    )
    return [
        (
            name,
            *pg_query(
                atlas_db,
                f"SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)"
                f" FROM kimai_replica.{name} t",
            )[0],
        )
        for (name,) in names
    ]


def test_dry_run_counts_a_first_load_and_a_change_set_and_writes_nothing(env):
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=21, timesheets=3_000)
    in_kimai = {
        t: kimai_query(db, f"SELECT COUNT(*) FROM {k}")[0][0] for t, k in KIMAI_TABLES.items()
    }

    dry = run_cli("sync", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was written" in dry.stdout
    previewed = _summary(dry.stdout)
    for table, n in in_kimai.items():
        assert (previewed[table]["kimai rows"], previewed[table]["inserted"]) == (n, n), table
        assert previewed[table]["updated"] == previewed[table]["deleted"] == 0, table
    assert pg_query(atlas, "SELECT to_regclass('kimai_replica.replica_kimai_timesheets')") == [
        (None,)
    ]

    first = run_cli("sync", env=env)
    assert first.returncode == 0, first.stderr
    loaded = _summary(first.stdout)
    assert {t: c["inserted"] for t, c in loaded.items()} == in_kimai

    # a change set: 7 timesheets edited through Kimai, 3 deleted (their tags go by cascade)
    edited = [r[0] for r in kimai_query(db, "SELECT id FROM kimai2_timesheet ORDER BY id LIMIT 7")]
    gone = [
        r[0] for r in kimai_query(db, "SELECT id FROM kimai2_timesheet ORDER BY id DESC LIMIT 3")
    ]
    gone_sql = ", ".join(map(str, gone))
    gone_tags = kimai_query(
        db, f"SELECT COUNT(*) FROM kimai2_timesheet_tags WHERE timesheet_id IN ({gone_sql})"
    )[0][0]
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET description = CONCAT('dry ', id),"
        f" modified_at = UTC_TIMESTAMP() WHERE id IN ({', '.join(map(str, edited))})",
        f"DELETE FROM kimai2_timesheet WHERE id IN ({gone_sql})",
    )
    before = _replica_snapshot(atlas)
    for _ in range(2):  # the second dry run sees the same: nothing was stored
        dry = run_cli("sync", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        previewed = _summary(dry.stdout)
        ts, tags = previewed["timesheets"], previewed["timesheet_tags"]
        assert (ts["inserted"], ts["updated"], ts["deleted"]) == (0, 7, 3)
        assert (tags["inserted"], tags["updated"], tags["deleted"]) == (0, 0, gone_tags)
        assert _replica_snapshot(atlas) == before

    applied = run_cli("sync", env=env)
    assert applied.returncode == 0, applied.stderr
    assert _summary(applied.stdout) == previewed
    assert_replica_equals_kimai(db, atlas)


def test_dry_run_previews_the_deletes_the_guard_would_refuse(env):
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=22, timesheets=1_000)
    assert run_cli("sync", env=env).returncode == 0
    kimai_exec(db, "DELETE FROM kimai2_timesheet WHERE id % 2 = 0")
    gone = 1_000 - kimai_query(db, "SELECT COUNT(*) FROM kimai2_timesheet")[0][0]
    before = _replica_snapshot(atlas)
    dry = run_cli("sync", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert _summary(dry.stdout)["timesheets"]["deleted"] == gone
    assert "a real run would stop here: refusing to delete" in dry.stdout
    assert _replica_snapshot(atlas) == before
    real = run_cli("sync", env=env)
    assert real.returncode == 4 and "refusing to delete" in real.stderr

    def replica_tables(snapshot: list[tuple]) -> list[tuple]:
        return [t for t in snapshot if t[0].startswith("replica_kimai_")]

    # the refused run wrote its audit row, and nothing else
    assert replica_tables(_replica_snapshot(atlas)) == replica_tables(before)
