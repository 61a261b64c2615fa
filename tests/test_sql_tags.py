"""Every query the sync sends to Kimai names its purpose and table in a leading comment."""

from __future__ import annotations

import re
from collections.abc import Iterator

import connectorx
import pymysql.cursors
import pytest

from pipelines.demo.kimai_data import build_kimai
from pipelines.sqltag import read_tag, tagged
from pipelines.sync import changes, plan
from tests.conftest import kimai_exec, kimai_url, sync_now

# Kimai's eleven tables, and what a sync asks Kimai for, written out here
KIMAI_TABLES = {
    "kimai2_customers",
    "kimai2_projects",
    "kimai2_activities",
    "kimai2_users",
    "kimai2_tags",
    "kimai2_timesheet",
    "kimai2_timesheet_tags",
    "kimai2_teams",
    "kimai2_users_teams",
    "kimai2_user_preferences",
    "kimai2_configuration",
}
# tables whose rows are read by allow-list of names: every query on them carries it
FILTERED = {"kimai2_user_preferences", "kimai2_configuration"}
SERVER_WIDE = {"ping", "catalog"}
# what SQLAlchemy's MySQL dialect asks on its first connection
SQLALCHEMY_PROBES = {
    "SELECT VERSION()",
    "SELECT DATABASE()",
    "SELECT @@sql_mode",
    "SELECT @@lower_case_table_names",
    "SELECT @@tx_isolation",
    "SELECT @@transaction_isolation",
}


@pytest.fixture
def kimai_statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement this process sends to MariaDB, through either driver."""
    sent: list[str] = []
    read_sql = connectorx.read_sql

    def logged_read_sql(conn, query, *args, **kwargs):
        if str(conn).startswith("mysql"):
            sent.append(str(query))
        return read_sql(conn, query, *args, **kwargs)

    execute = pymysql.cursors.Cursor.execute

    def logged_execute(self, query, args=None):
        sent.append(str(self.mogrify(query, args) if args is not None else query))
        return execute(self, query, args)

    monkeypatch.setattr(connectorx, "read_sql", logged_read_sql)
    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", logged_execute)
    yield sent


@pytest.mark.unit
def test_a_tag_reads_back_and_cannot_be_broken_out_of() -> None:
    sql = tagged("key ranges", "kimai2_timesheet", "SELECT `id` FROM `kimai2_timesheet`")
    assert (
        sql == "/* kimai-atlas: key ranges; kimai2_timesheet */ SELECT `id` FROM `kimai2_timesheet`"
    )
    assert read_tag(sql) == ("key ranges", "kimai2_timesheet")
    assert read_tag("SELECT 1") is None
    with pytest.raises(ValueError):
        tagged("whole table", "x */ DROP TABLE y; /*", "SELECT 1")


def test_every_query_of_every_kind_of_run_is_tagged(env, kimai_statements, monkeypatch) -> None:
    db = env["KIMAI_DB_DATABASE"]
    build_kimai(kimai_url(db), seed=8, timesheets=2_000)
    kimai_statements.clear()  # the sync's statements only
    sync_now()  # first load
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET description = 'tagged', modified_at = UTC_TIMESTAMP()"
        " WHERE id % 50 = 0",
        "DELETE FROM kimai2_timesheet WHERE id % 97 = 0",
        "UPDATE kimai2_timesheet SET rate = rate + 1 WHERE id % 101 = 0",  # silent
    )
    sync_now()  # cursor window, keys, rows by key
    sync_now(reconcile=True)  # range digests and row hashes
    monkeypatch.setenv("KIMAI_KEY_DIGESTS", "true")
    sync_now()  # key digests (range digests of keys)
    # a window over the in-memory limit: counted, then read in pages
    monkeypatch.setattr(plan, "ROWS_AHEAD", 20)
    monkeypatch.setattr(changes, "ROWS_AHEAD", 20)
    kimai_exec(db, "UPDATE kimai2_timesheet SET modified_at = UTC_TIMESTAMP() WHERE id % 40 = 0")
    sync_now()

    purposes: set[str] = set()
    filtered: set[str] = set()
    for sql in kimai_statements:
        tag = read_tag(sql)
        if tag is None:
            # untagged: only the drivers' session handling and SQLAlchemy's probes on connect
            query = re.match(r"\s*(SELECT|SHOW|WITH)\b", sql, re.I)
            assert not query or sql.strip() in SQLALCHEMY_PROBES, sql
            continue
        purpose, table = tag
        purposes.add(purpose)
        if purpose in SERVER_WIDE:
            assert table == "", sql
        else:
            assert table in KIMAI_TABLES, sql
            assert f"`{table}`" in sql, sql  # the tag names the table the query reads
            if table in FILTERED:
                assert re.search(rf"FROM `{table}` WHERE BINARY `name` IN \('", sql), sql
                filtered.add(table)
    assert purposes >= {
        "ping",
        "catalog",
        "ordered stream",
        "ordered pages",
        "row count",
        "key bounds",
        "key ranges",
        "range digests",
        "row hashes",
        "cursor window",
        "rows by key",
        "whole table",
    }, purposes
    assert filtered == FILTERED
