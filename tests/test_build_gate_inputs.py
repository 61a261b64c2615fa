"""What the build gate compares: the project's digest and the overlay tables it reads."""

from __future__ import annotations

import pytest

from pipelines.build_gate import BuildInputs, overlay_tables
from pipelines.config import load_settings
from pipelines.transform import project_digest
from tests.conftest import REPO
from tests.stack import project_copy

pytestmark = pytest.mark.unit


def digest(project, **env: str) -> str:
    return project_digest(load_settings(env, dotenv=False), project)


def test_a_copy_digests_the_same_and_any_edit_or_setting_changes_it(tmp_path):
    project = project_copy(tmp_path / "project")
    base = digest(project)
    assert digest(REPO) == base
    assert digest(project, ATLAS_REPORT_TIMEZONE="Europe/Berlin") != base
    assert digest(project, ATLAS_ANALYTICS_SCHEMA="bi") != base
    # the password is not part of it: the digest is stored in the audit
    assert digest(project, ATLAS_DB_PASSWORD="secret") == base
    for path in ("macros/report_timezone.sql", "tests/dbt", "models/marts/_marts__models.yml"):
        target = project / path
        if target.is_dir():
            (target / "assert_new.sql").write_text("select 1 where false\n")
        else:
            target.write_text(target.read_text() + "\n")
        edited = digest(project)
        assert edited != base, path
        base = edited


def test_the_overlay_tables_are_atlas_s_own():
    assert sorted(overlay_tables(REPO)) == [
        "overrides_projects",
        "payment_sources",
        "payments",
        "project_payments_rollup",
        "project_statuses",
        "project_tags",
        "taxonomies",
        "taxonomy_terms",
    ]


def test_inputs_round_trip_and_name_what_changed():
    before = BuildInputs(replica="10", overlays="a", project="p")
    assert BuildInputs.from_json(before.to_json()) == before
    assert BuildInputs.from_json(None) is None
    assert BuildInputs.from_json("{not json") is None
    assert BuildInputs.from_json('{"replica": "1"}') is None
    after = BuildInputs(replica="11", overlays="a", project="q")
    assert after.changed_since(before) == ["replica", "project"]
    assert before.changed_since(before) == []
