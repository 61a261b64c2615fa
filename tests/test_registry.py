"""The table registry's own rules (no database)."""

from __future__ import annotations

import pytest

from pipelines.registry import TABLES, TABLES_BY_NAME

pytestmark = pytest.mark.unit


def test_references_point_at_registry_tables_with_one_key_column() -> None:
    for spec in TABLES:
        for ref in spec.references:
            parent = TABLES_BY_NAME[ref.parent]
            assert parent.primary_key == ("id",), (spec.name, ref)


def test_tables_read_by_cursor_reference_only_tables_read_whole() -> None:
    """The orphan check takes a parent's key set from its plan, which only `full` tables
    carry whole (pipelines.sync.orphans.parent_keys_after_run)."""
    for spec in TABLES:
        if spec.sync == "incremental":
            assert spec.references
            assert all(TABLES_BY_NAME[r.parent].sync == "full" for r in spec.references)


def test_the_timesheets_foreign_keys_are_declared() -> None:
    refs = {(r.column, r.parent) for r in TABLES_BY_NAME["timesheets"].references}
    assert refs == {("user", "users"), ("project_id", "projects"), ("activity_id", "activities")}
