"""The run's pure rules, without a server: the mass-delete guard, the cursor window, the SQL
predicates for key ranges and resumed streams, and the column type mapping."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from pipelines.adapters.kimai import _after_key, window_sql
from pipelines.adapters.layout import SourceColumn, TableLayout, map_mysql_column, ranges_sql
from pipelines.errors import MassDeleteRefused
from pipelines.registry import TABLES_BY_NAME
from pipelines.sync.plan import TablePlan, check_mass_delete
from pipelines.sync.rangediff import (
    MARIADB,
    POSTGRES,
    Side,
    differing_buckets,
    digest_sql,
    rows_sql,
)
from pipelines.types import SyncOptions
from pipelines.window import Window, incremental_window

pytestmark = pytest.mark.unit

UTC = dt.UTC


def _layout(table: str, kimai_name: str, *columns: tuple[str, str, str]) -> TableLayout:
    return TableLayout(
        spec=TABLES_BY_NAME[table],
        kimai_name=kimai_name,
        columns=tuple(map_mysql_column(SourceColumn(n, t, ct)) for n, t, ct in columns),
        dialect="mysql",
    )


TIMESHEETS = _layout(
    "timesheets",
    "kimai2_timesheet",
    ("id", "int", "int(11)"),
    ("modified_at", "datetime", "datetime"),
    ("date_tz", "date", "date"),
    ("rate", "double", "double"),
    ("exported", "tinyint", "tinyint(1)"),
)
PAIRS = _layout(
    "timesheet_tags",
    "kimai2_timesheet_tags",
    ("timesheet_id", "int", "int(11)"),
    ("tag_id", "int", "int(11)"),
)


def _plan(replica_rows: int, deleted: int) -> TablePlan:
    return TablePlan(
        layout=TIMESHEETS,
        replica_columns=["id"],
        kimai_count=replica_rows - deleted,
        replica_count=replica_rows,
        deleted=pa.array(range(deleted), pa.int64()),
        missing=pa.array([], pa.int64()),
    )


@pytest.mark.parametrize(
    ("replica_rows", "deleted", "refused"),
    [
        (1000, 0, False),
        (1000, 100, False),  # exactly the share: allowed
        (1000, 101, True),  # over the share and over the minimum
        (100, 19, False),  # over the share, under the 20-row minimum
        (100, 20, True),
        (5, 5, True),  # every row, however few
        (0, 0, False),  # a first load deletes nothing
    ],
)
def test_the_guard_refuses_large_shares_and_emptied_tables(
    replica_rows: int, deleted: int, refused: bool
) -> None:
    plans = [_plan(replica_rows, deleted)]
    if refused:
        with pytest.raises(MassDeleteRefused) as info:
            check_mass_delete(plans, 0.10, 20, allowed=False)
        message = str(info.value)
        assert f"refusing to delete {deleted:,} of {replica_rows:,} rows" in message
        assert "replica_kimai_timesheets" in message and "--allow-mass-delete" in message
        assert "\n" not in message
    else:
        check_mass_delete(plans, 0.10, 20, allowed=False)
    check_mass_delete(plans, 0.10, 20, allowed=True)  # --allow-mass-delete always passes


STORED = {"cursor": "2026-03-29T01:10:00+00:00"}
CURSOR = dt.datetime(2026, 3, 29, 1, 10, tzinfo=UTC)


def _never() -> dt.datetime | None:
    raise AssertionError("the stored cursor decides; the replica is not asked")


def test_the_window_starts_the_overlap_before_the_stored_cursor() -> None:
    window = incremental_window(STORED, SyncOptions(overlap_seconds=300), True, _never)
    assert window == Window(CURSOR, changed_since=dt.datetime(2026, 3, 29, 1, 5, tzinfo=UTC))
    assert window_sql(TIMESHEETS, window) == "`modified_at` >= '2026-03-29 01:05:00'"


def test_since_adds_the_local_days_from_that_date() -> None:
    options = SyncOptions(overlap_seconds=0, since=dt.date(2025, 12, 1))
    window = incremental_window(STORED, options, True, _never)
    sql = window_sql(TIMESHEETS, window)
    assert sql == "`modified_at` >= '2026-03-29 01:10:00' OR `date_tz` >= '2025-12-01'"


def test_without_stored_state_the_replicas_newest_value_is_the_cursor() -> None:
    newest = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    window = incremental_window({}, SyncOptions(overlap_seconds=5), True, lambda: newest)
    assert window == Window(newest, changed_since=dt.datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("options", "replica_has_rows"),
    [(SyncOptions(full_refresh=True), True), (SyncOptions(), False)],
)
def test_whole_table_reads_have_no_window_but_keep_the_cursor(
    options: SyncOptions, replica_has_rows: bool
) -> None:
    window = incremental_window(STORED, options, replica_has_rows, _never)
    assert window == Window(CURSOR) and not window.reads_rows


def test_key_range_predicate_is_half_open() -> None:
    sql = ranges_sql("`id`", [(0, 64), (128, 192)])
    assert sql == "(`id` >= 0 AND `id` < 64) OR (`id` >= 128 AND `id` < 192)"


def test_a_resumed_stream_starts_after_the_last_key_in_key_order() -> None:
    assert _after_key(TIMESHEETS, (41,)) == "(`id` > 41)"
    assert (
        _after_key(PAIRS, (7, 3)) == "(`timesheet_id` > 7) OR (`timesheet_id` = 7 AND `tag_id` > 3)"
    )


@pytest.mark.parametrize(
    ("data_type", "column_type", "replica_type", "value"),
    [
        ("tinyint", "tinyint(1)", "bool", "`c`"),
        ("tinyint", "tinyint(4)", "bigint", "`c`"),
        ("int", "int(10) unsigned", "bigint", "`c`"),
        ("double", "double", "double", "`c`"),
        ("datetime", "datetime", "timestamp", "DATE_ADD(`c`, INTERVAL 0 DAY)"),
        ("date", "date", "date", "DATE_ADD(`c`, INTERVAL 0 DAY)"),
        (
            "varchar",
            "varchar(150)",
            "text",
            "REPLACE(`c`, CHAR(0 USING utf8mb4), _utf8mb4 X'EFBFBD')",
        ),
        (
            "longtext",
            "longtext",
            "text",
            "REPLACE(LEFT(`c`, 1000000), CHAR(0 USING utf8mb4), _utf8mb4 X'EFBFBD')",
        ),
        ("decimal", "decimal(10,2)", "text", "CAST(`c` AS CHAR)"),
    ],
)
def test_mysql_types_map_to_exact_replica_types(
    data_type: str, column_type: str, replica_type: str, value: str
) -> None:
    column = map_mysql_column(SourceColumn("c", data_type, column_type))
    assert (column.data_type, column.value_sql) == (replica_type, value)


def test_differing_buckets_are_clipped_to_the_range_and_include_one_sided_buckets() -> None:
    kimai = pa.table({"bucket": [0, 256, 512, 768], "n": [3, 4, 5, 1], "h0": [10, 11, 12, 13]})
    replica = pa.table({"bucket": [0, 256, 512, 1024], "n": [3, 4, 5, 2], "h0": [10, 99, 12, 14]})
    # 256: same count, another hash; 768 and 1024: on one side only; 0 and 512 agree
    assert differing_buckets(kimai, replica, 100, 1100, 256) == [
        (256, 512),
        (768, 1024),
        (1024, 1100),
    ]
    assert differing_buckets(kimai, kimai, 0, 1024, 256) == []


def test_both_dialects_hash_the_same_canonical_text_of_every_column() -> None:
    layout = _layout(
        "timesheets",
        "kimai2_timesheet",
        ("id", "int", "int(11)"),
        ("start_time", "datetime", "datetime"),
        ("exported", "tinyint", "tinyint(1)"),
        ("description", "text", "text"),
    )
    mariadb = Side(MARIADB, "`kimai2_timesheet`", lambda _c: True, lambda _p, _s: pa.table({}))
    postgres = Side(POSTGRES, '"r"."t"', lambda c: c != "description", lambda _p, _s: pa.table({}))
    on_kimai = rows_sql(mariadb, layout, "rows", [(0, 64)])
    on_replica = rows_sql(postgres, layout, "rows", [(0, 64)])
    assert "DATE_FORMAT(" in on_kimai and "to_char(" in on_replica
    assert "IF(`exported` <> 0, '1', '0')" in on_kimai
    # a column the replica lacks yet hashes as NULL there, so its rows differ
    assert '"description"' not in on_replica and "`description`" in on_kimai
    keys = digest_sql(mariadb, layout, "keys")
    assert "% 256 AS SIGNED) AS bucket" in keys and "MD5" not in keys
