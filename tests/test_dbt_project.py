"""The dbt project's structure, without a database: layout rules, documentation, parse.

The rules are the project's review habits (style.md): sources mirror the registry, only
staging reads sources, every model states its grain and tests its key, no adapter checks
scattered in models, and `dbt parse` succeeds with the example profile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.registry import TABLES

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


def _yaml_files() -> list[Path]:
    return sorted(MODELS.rglob("*.yml"))


def _model_entries() -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for path in _yaml_files():
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            entries[model["name"]] = model
    return entries


def _sources() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path in _yaml_files():
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            out[source["name"]] = source
    return out


def _tests_of(entry: dict) -> list[str]:
    names = []
    for t in entry.get("data_tests", []) or []:
        names.append(t if isinstance(t, str) else next(iter(t)))
    return names


def test_kimai_source_mirrors_the_registry() -> None:
    source = _sources()["kimai"]
    assert [t["name"] for t in source["tables"]] == [t.replica_table for t in TABLES]
    assert "ATLAS_REPLICA_SCHEMA" in source["schema"]
    assert "freshness" in source["config"]
    for table, spec in zip(source["tables"], TABLES, strict=True):
        query = " ".join(table["config"]["loaded_at_query"].split())
        assert "sync_run_tables" in query and f"where table_name = '{spec.name}'" in query, query
    assert "ATLAS_OVERLAY_SCHEMA" in _sources()["atlas"]["schema"]


def test_only_staging_models_read_sources_and_no_adapter_checks_in_models() -> None:
    for path in MODELS.rglob("*.sql"):
        text = path.read_text()
        relative = path.relative_to(MODELS).as_posix()
        if "source(" in text:
            assert relative.startswith("staging/"), relative
        assert "target.type" not in text, f"{relative}: use adapter.dispatch macros"
        assert not re.search(r"\b(kimai_replica|analytics|public)\.", text), relative


def test_data_issues_read_every_replicated_table_by_its_key() -> None:
    """stg_kimai__data_issues names each replica table with its key (dbt needs static
    source() calls): a table added to the registry must be added there too."""
    sql = (MODELS / "staging" / "kimai" / "stg_kimai__data_issues.sql").read_text()
    listed = [
        (name, relation, re.findall(r"'(\w+)'", key))
        for name, relation, key in re.findall(r"\('(\w+)', '(\w+)', \[([^\]]*)\]\)", sql)
    ]
    assert listed == [(t.name, t.replica_table, list(t.primary_key)) for t in TABLES]


def test_every_model_states_its_grain_and_tests_its_key() -> None:
    entries = _model_entries()
    sql_models = {p.stem for p in MODELS.rglob("*.sql")}
    assert sql_models == set(entries), "every model has exactly one YAML entry"
    for name, entry in entries.items():
        sql = (next(MODELS.rglob(f"{name}.sql"))).read_text()
        assert "One row per" in entry.get("description", "") or "One row per" in sql, name
        assert entry.get("description"), name
        columns = entry.get("columns", [])
        assert columns, name
        # a key column: `unique`, and NOT NULL in the model's one not_null_columns test
        required = {
            c
            for t in entry.get("data_tests", []) or []
            if isinstance(t, dict) and "not_null_columns" in t
            for c in t["not_null_columns"]["arguments"]["columns"]
        }
        keyed = any("unique" in _tests_of(c) and c["name"] in required for c in columns)
        combination = "unique_combination_of_columns" in _tests_of(entry)
        assert keyed or combination, f"{name} does not test its key"
        if name.startswith(("vw_", "stg_")):
            assert all(c.get("description") for c in columns), name
    for name in ("vw_projects", "vw_timesheet_facts", "vw_customers"):
        assert entries[name]["description"].strip().startswith("One row per"), name


def test_generic_tests_and_macros_are_documented() -> None:
    documented = {
        m["name"] for m in yaml.safe_load((REPO / "macros" / "_macros.yml").read_text())["macros"]
    }
    defined = set()
    for path in (REPO / "macros").rglob("*.sql"):
        for kind, name in re.findall(r"{%-?\s*(macro|test)\s+(\w+)\(", path.read_text()):
            if "__" in name:  # adapter implementations of a dispatched macro
                continue
            defined.add(f"test_{name}" if kind == "test" else name)
    assert defined <= documented, sorted(defined - documented)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dbt parse` with the example profile and no settings; the manifest's path."""
    tmp_path = tmp_path_factory.mktemp("parse")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copyfile(REPO / "profiles.example.yml", profiles / "profiles.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_", "DBT_"))}
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    dbt = Path(sys.executable).with_name("dbt")
    result = subprocess.run(
        [
            str(dbt),
            "parse",
            "--project-dir",
            str(REPO),
            "--profiles-dir",
            str(profiles),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / "target" / "manifest.json"


def test_dbt_parse_succeeds_with_the_example_profile(parsed: Path) -> None:
    manifest = parsed.read_text()
    assert (
        '"unit_test.kimai_atlas.int_project_money_collected.money_collected_precedence"' in manifest
    )


# the drill-through Metabase should get (issue "BI-ready"), written out here
PRIMARY_KEYS = {
    ("vw_timesheet_facts", "timesheet_id"),
    ("vw_projects", "project_id"),
    ("vw_customers", "customer_id"),
    ("vw_users", "user_id"),
    ("vw_activities", "activity_id"),
}
FOREIGN_KEYS = {
    ("vw_timesheet_facts", "project_id"): ("vw_projects", "project_id"),
    ("vw_timesheet_facts", "customer_id"): ("vw_customers", "customer_id"),
    ("vw_projects", "customer_id"): ("vw_customers", "customer_id"),
    ("vw_timesheet_tags", "timesheet_id"): ("vw_timesheet_facts", "timesheet_id"),
    ("vw_timesheet_tags", "project_id"): ("vw_projects", "project_id"),
    ("vw_timesheet_tags", "customer_id"): ("vw_customers", "customer_id"),
    ("vw_project_tags", "project_id"): ("vw_projects", "project_id"),
    # every user_id and activity_id links to its dimension (issue "Kimai report parity")
    ("vw_timesheet_facts", "user_id"): ("vw_users", "user_id"),
    ("vw_timesheet_facts", "activity_id"): ("vw_activities", "activity_id"),
    ("vw_timesheet_tags", "user_id"): ("vw_users", "user_id"),
    ("vw_timesheet_tags", "activity_id"): ("vw_activities", "activity_id"),
    ("vw_user_teams", "user_id"): ("vw_users", "user_id"),
    ("vw_user_days", "user_id"): ("vw_users", "user_id"),
    ("vw_activities", "project_id"): ("vw_projects", "project_id"),
    ("vw_activities", "customer_id"): ("vw_customers", "customer_id"),
}


def test_dbt_metabase_reads_every_declared_key_and_relationship(parsed: Path) -> None:
    from dbtmetabase.manifest import Manifest

    marts = {m.name: m for m in Manifest(parsed).read_models() if m.name.startswith("vw_")}
    schemas = {m.schema for m in marts.values()}
    assert len(schemas) == 1, schemas  # every mart in the one BI schema
    pks, fks = set(), {}
    for mart in marts.values():
        for column in mart.columns:
            if column.semantic_type == "type/PK":
                pks.add((mart.name, column.name))
            elif column.semantic_type == "type/FK":
                schema, table = column.fk_target_table.split(".")
                assert schema in schemas, (mart.name, column.name, column.fk_target_table)
                fks[(mart.name, column.name)] = (table, column.fk_target_field)
    assert pks == PRIMARY_KEYS
    assert fks == FOREIGN_KEYS
