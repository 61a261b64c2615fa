"""What a delta build's tests read: the tests that depend on the changed tables, and (with
`view`) the timesheets the change log names, only when no parent of a timesheet changed."""

from __future__ import annotations

import pytest

from pipelines.publish import delta_env, delta_tests
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_only_timesheet_changes_narrow_the_view_tests_to_the_logged_timesheets():
    on = {"ATLAS_BUILD_DELTA": "on"}
    since = {**on, "ATLAS_BUILD_DELTA_SINCE": "1765000000000042"}
    assert delta_env(("timesheets",), "1765000000000042") == since
    assert delta_env(("timesheet_tags", "timesheets"), "1765000000000042") == since
    # a parent changed too: its timesheets' rows changed without a log row of their own
    assert delta_env(("projects", "timesheets"), "1765000000000042") == on
    assert delta_env(("users", "timesheet_tags"), "1765000000000042") == on
    assert delta_env((), "1765000000000042") == on
    assert delta_env(("timesheets",), None) == on


def test_a_delta_build_selects_the_tests_downstream_of_what_changed():
    assert delta_tests(REPO, ["timesheets"]) == [
        "source:kimai.replica_kimai_timesheets+,test_type:data",
        "source:sync.sync_runs+,test_type:data",
        "source:sync.sync_run_tables+,test_type:data",
        "source:sync.sync_follower+,test_type:data",
        "source:sync.sync_change_log+,test_type:data",
        "source:sync.sync_change_log_pruned+,test_type:data",
    ]
    # a table no source declares: every data test
    assert delta_tests(REPO, ["timesheets", "no_such_table"]) == ["test_type:data"]
    assert delta_tests(REPO, []) == ["test_type:data"]
