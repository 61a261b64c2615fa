"""What a binlog tick compares: logged keys, the cascades MariaDB does not log, statements."""

from __future__ import annotations

import pytest

from pipelines.adapters.binlog import MAX_KEYS, BinlogChanges, BinlogPosition
from pipelines.registry import TABLES, TABLES_BY_NAME, TableSpec
from pipelines.sync.scope import tick_plan

pytestmark = pytest.mark.unit

# a replica written out by hand: (table, column) -> {key: value}
REPLICA = {
    ("projects", "customer_id"): {10: 1, 11: 1, 12: 2},
    ("activities", "project_id"): {20: 10, 21: 12},
    ("timesheets", "project_id"): {100: 10, 101: 11, 102: 12, 103: 12},
    ("timesheets", "activity_id"): {100: 20, 101: 22, 102: 21, 103: 23},
    ("timesheets", "user"): {100: 1, 101: 2, 102: 1, 103: 2},
    ("users_teams", "user_id"): {},
    ("users_teams", "team_id"): {},
    ("user_preferences", "user_id"): {},
}


def children(spec: TableSpec, column: str, values: set[int]) -> set[int]:
    return {key for key, value in REPLICA[(spec.name, column)].items() if value in values}


def _changes() -> BinlogChanges:
    return BinlogChanges(BinlogPosition("binlog.000001", 4))


def test_logged_keys_only_and_no_table_without_events() -> None:
    changes = _changes()
    changes.add_row(TABLES_BY_NAME["timesheets"], 100, delete=False)
    changes.add_row(TABLES_BY_NAME["timesheet_tags"], 100, delete=False)
    plan = tick_plan(changes, TABLES, children)
    assert plan.tables == ["timesheets", "timesheet_tags"]
    assert plan.scopes["timesheets"].filters == (("id", (100,)),)
    assert plan.scopes["timesheet_tags"].filters == (("timesheet_id", (100,)),)


def test_a_deleted_customer_reaches_its_projects_activities_timesheets_and_tags() -> None:
    changes = _changes()
    changes.add_row(TABLES_BY_NAME["customers"], 1, delete=True)
    plan = tick_plan(changes, TABLES, children)
    # customer 1 -> projects 10, 11 -> activity 20 -> timesheets 100 (project 10,
    # activity 20) and 101 (project 11); customer 2's rows stay out
    assert plan.tables == ["customers", "projects", "activities", "timesheets", "timesheet_tags"]
    assert plan.scopes["timesheets"].filters == (("id", (100, 101)),)
    assert plan.scopes["timesheet_tags"].filters == (("timesheet_id", (100, 101)),)
    assert "projects" not in plan.scopes  # small tables are compared whole


def test_a_deleted_tag_filters_pairs_by_tag_and_a_deleted_user_reaches_timesheets() -> None:
    changes = _changes()
    changes.add_row(TABLES_BY_NAME["tags"], 7, delete=True)
    changes.add_row(TABLES_BY_NAME["users"], 2, delete=True)
    plan = tick_plan(changes, TABLES, children)
    assert plan.scopes["timesheets"].filters == (("id", (101, 103)),)
    assert dict(plan.scopes["timesheet_tags"].filters) == {
        "timesheet_id": (101, 103),
        "tag_id": (7,),
    }
    assert {"users_teams", "user_preferences"}.isdisjoint(plan.tables)  # no children there


def test_updates_do_not_cascade() -> None:
    changes = _changes()
    changes.add_row(TABLES_BY_NAME["projects"], 12, delete=False)
    assert tick_plan(changes, TABLES, children).tables == ["projects"]


def test_statements_and_too_many_keys_compare_the_table_whole() -> None:
    changes = _changes()
    changes.add_row(TABLES_BY_NAME["timesheets"], 100, delete=True)
    changes.compare_whole(TABLES_BY_NAME["timesheets"], "a statement in the binlog (UPDATE)")
    changes.add_row(TABLES_BY_NAME["timesheets"], 101, delete=False)  # ignored: whole anyway
    for key in range(MAX_KEYS + 1):
        changes.add_row(TABLES_BY_NAME["timesheet_tags"], key, delete=False)
    plan = tick_plan(changes, TABLES, children)
    assert plan.tables == ["timesheets", "timesheet_tags"]
    assert plan.scopes == {}
    assert plan.whole == {
        "timesheets": "a statement in the binlog (UPDATE)",
        "timesheet_tags": f"more than {MAX_KEYS:,} changed keys",
    }


def test_nothing_logged_is_an_empty_plan() -> None:
    changes = _changes()
    assert changes.empty
    assert tick_plan(changes, TABLES, children).tables == []
