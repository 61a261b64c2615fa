"""The dbt project's structure, without a database: layout rules, documentation, parse.

The rules are the project's review habits (docs/development.md): sources mirror the registry, only
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
    # a user's supervisor is a user
    ("vw_users", "supervisor_user_id"): ("vw_users", "user_id"),
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


# Metabase's field visibilities and the semantic types the marts may use, as Metabase
# names them (its type hierarchy, metabase.types), written out here
VISIBILITIES = {"normal", "details-only", "hidden", "sensitive"}
SEMANTIC_TYPES = {
    "type/PK",
    "type/FK",
    "type/Category",
    "type/Name",
    "type/Title",
    "type/Company",
    "type/Country",
    "type/Description",
    "type/Comment",
    "type/Quantity",
    "type/Percentage",
    "type/CreationTimestamp",
    "type/UpdatedTimestamp",
    "type/JoinTimestamp",
}
FIELD_VALUES = {"list", "search", "none", "auto-list"}
NUMBER_STYLES = {"decimal", "percent", "scientific", "currency"}


def _metabase_marts(manifest: Path) -> dict:
    from dbtmetabase.manifest import Manifest

    return {m.name: m for m in Manifest(manifest).read_models() if m.name.startswith("vw_")}


@pytest.mark.unit
def test_dbt_metabase_reads_a_display_name_for_every_mart_and_column(parsed: Path) -> None:
    import json

    nodes = json.loads(parsed.read_text())["nodes"]
    declared = {
        n["name"]: list(n["columns"])
        for n in nodes.values()
        if n["resource_type"] == "model" and n["original_file_path"].startswith("models/marts/")
    }
    marts = _metabase_marts(parsed)
    assert set(marts) == set(declared) and len(marts) >= 12
    for name, mart in marts.items():
        assert mart.display_name and mart.display_name != name, name
        assert [c.name for c in mart.columns] == declared[name], name
        for column in mart.columns:
            label = f"{name}.{column.name}"
            assert column.display_name, label
            # plain English, not the column name with its underscores
            assert "_" not in column.display_name, label
            assert (column.visibility_type or "normal") in VISIBILITIES, label
            assert column.semantic_type is None or column.semantic_type in SEMANTIC_TYPES, label
            assert column.has_field_values is None or column.has_field_values in FIELD_VALUES, label
            assert column.number_style is None or column.number_style in NUMBER_STYLES, label
        # units stay visible: a seconds column says so in its display name
        for column in mart.columns:
            if column.name.endswith("_seconds"):
                assert "seconds" in column.display_name, f"{name}.{column.name}"
            if column.name.endswith("_hours"):
                assert "hours" in column.display_name.lower(), f"{name}.{column.name}"


@pytest.mark.unit
def test_dbt_metabase_shows_no_technical_column_as_normal(parsed: Path) -> None:
    """The sync's bookkeeping, the arrays (for SQL; the bridges serve the query builder) and
    ids that lead to no mart are out of the pickers: details-only or hidden."""
    checked = 0
    for name, mart in _metabase_marts(parsed).items():
        for column in mart.columns:
            is_key = column.semantic_type in {"type/PK", "type/FK"}
            technical = (
                column.name == "synced_at"
                or column.name.endswith("_array")
                or (column.name.endswith("_id") and not is_key)
            )
            if technical:
                checked += 1
                assert column.visibility_type in {"details-only", "hidden"}, f"{name}.{column.name}"
            if is_key:
                assert (column.visibility_type or "normal") == "normal", f"{name}.{column.name}"
    assert checked >= 15  # not vacuous


@pytest.mark.unit
def test_every_foreign_key_dbt_metabase_reads_points_at_a_mart_key(parsed: Path) -> None:
    import json

    manifest = json.loads(parsed.read_text())
    # every model of the manifest by schema.relation name, with its columns
    relations = {
        f"{n['schema']}.{n['alias']}": set(n["columns"])
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model"
    }
    marts = _metabase_marts(parsed)
    pks = {
        (f"{m.schema}.{m.alias}", c.name)
        for m in marts.values()
        for c in m.columns
        if c.semantic_type == "type/PK"
    }
    fks = 0
    for name, mart in marts.items():
        for column in mart.columns:
            if column.semantic_type != "type/FK":
                continue
            fks += 1
            label = f"{name}.{column.name}"
            assert column.fk_target_table in relations, label
            assert column.fk_target_field in relations[column.fk_target_table], label
            assert (column.fk_target_table, column.fk_target_field) in pks, label
    assert fks == len(FOREIGN_KEYS)


@pytest.mark.unit
def test_every_mart_has_an_enforced_contract_with_typed_columns(parsed: Path) -> None:
    import json

    nodes = json.loads(parsed.read_text())["nodes"]
    marts = [
        n
        for n in nodes.values()
        if n["resource_type"] == "model" and n["original_file_path"].startswith("models/marts/")
    ]
    assert len(marts) >= 12
    for node in marts:
        assert node["config"]["contract"]["enforced"] is True, node["name"]
        assert node["config"]["materialized"] == "view", node["name"]
        untyped = [c for c, spec in node["columns"].items() if not spec.get("data_type")]
        assert not untyped, (node["name"], untyped)
