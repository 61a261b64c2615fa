"""The dbt project end to end on real MariaDB and PostgreSQL.

A Kimai fixture is synced, Atlas overlay tables are created, `python -m pipelines.run
transform` builds the BI views, and their numbers are checked against numbers computed
independently: with SQL on Kimai (MariaDB) and on the overlay tables, plus plain Python.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from pipelines.config import load_settings
from pipelines.demo import kimai_actions as kimai_do
from pipelines.transform import work_dir
from tests.conftest import POSTGRES, kimai_query, kimai_url, pg_query, run_cli
from tests.stack import (
    ANALYTICS,
    CONTRACT_COLUMNS,
    INTERNAL,
    OVERLAY,
    REPLICA,
    Stack,
    assert_customer_money_matches_kimai,
    assert_project_hours_match_kimai,
    assert_user_month_hours_match_kimai,
    hours,
    make_stack,
    marts_in_project,
    name_key,
    transform,
)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt_views")


@pytest.fixture(scope="module")
def built(module_tmp: Path) -> Iterator[Stack]:
    """2,000 timesheets synced, overlays created, views built with a BI role (shared, read-only)."""
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with make_stack(module_tmp, timesheets=2000, seed=42, bi_role=role) as stack:
        result = transform(stack)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "dbt build passed" in result.stdout and ", 0 warnings" in result.stdout
        yield stack


# -- the shared build: read-only checks ---------------------------------------------------------


# ISO 4217 minor-unit exponents, written out here (not read from the product's macros)
ISO_EXPONENTS = {"JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "CLF": 4}


def _exponent(currency: str) -> int:
    return ISO_EXPONENTS.get(currency, 2)


def _major(amount_minor: int, currency: str) -> Decimal:
    """An Atlas amount in minor units as the exact amount in major units of its currency."""
    return Decimal(amount_minor).scaleb(-_exponent(currency))


def test_every_contract_column_exists_and_is_described(built: Stack) -> None:
    for view, required in CONTRACT_COLUMNS.items():
        rows = pg_query(
            built.atlas_db,
            "select a.attname, col_description(c.oid, a.attnum), c.relkind,"
            " obj_description(c.oid, 'pg_class')"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
            " where n.nspname = %s and c.relname = %s",
            (ANALYTICS, view),
        )
        columns = {r[0]: r[1] for r in rows}
        missing = [c for c in required if c not in columns]
        assert not missing, f"{view} lacks {missing}"
        undescribed = [c for c, d in columns.items() if not d]
        assert not undescribed, f"{view}: columns without a comment {undescribed}"
        assert rows[0][2] == "v", f"{view} is not a view"
        assert rows[0][3] and "One row per" in rows[0][3]
    # nothing but the marts in the BI schema
    relations = pg_query(
        built.atlas_db,
        "select table_name from information_schema.tables where table_schema = %s",
        (ANALYTICS,),
    )
    marts = marts_in_project()
    assert sorted(r[0] for r in relations) == sorted(marts)
    assert set(CONTRACT_COLUMNS) <= set(marts)


def test_dbt_unit_tests_pass_and_builds_leave_them_out(built: Stack) -> None:
    """The scheduled build skips dbt's unit tests (they prove SQL, not data); they pass."""
    results = work_dir(load_settings(built.env, dotenv=False)) / "target" / "run_results.json"
    ran = {r["unique_id"].split(".")[0] for r in json.loads(results.read_text())["results"]}
    assert "test" in ran and "unit_test" not in ran
    result = run_cli("dbt", "test", "--select", "test_type:unit", env=built.env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"PASS (\w+)::(\w+)", result.stdout)
    assert (
        len(passed) >= 9
        and ("int_user_settings", "preferences_are_read_the_way_kimai_reads_them") in passed
    )


def test_hours_per_project_match_kimai(built: Stack) -> None:
    assert_project_hours_match_kimai(built)


def test_hours_per_user_per_month_match_kimai(built: Stack) -> None:
    assert_user_month_hours_match_kimai(built)


def test_revenue_and_cost_per_customer_match_kimai(built: Stack) -> None:
    assert_customer_money_matches_kimai(built)


def test_timesheet_tags_and_user_names_match_kimai(built: Stack) -> None:
    names: dict[int, list[str]] = defaultdict(list)
    for tid, name in kimai_query(
        built.kimai_db,
        "SELECT tt.timesheet_id, t.name FROM kimai2_timesheet_tags tt"
        " JOIN kimai2_tags t ON t.id = tt.tag_id",
    ):
        names[tid].append(name)
    hidden = {
        r[0] for r in kimai_query(built.kimai_db, "SELECT name FROM kimai2_tags WHERE visible = 0")
    }
    users = dict(
        kimai_query(
            built.kimai_db,
            "SELECT t.id, COALESCE(NULLIF(u.alias, ''), u.username)"
            " FROM kimai2_timesheet t JOIN kimai2_users u ON u.id = t.`user`",
        )
    )
    actual = {
        r[0]: r[1:]
        for r in pg_query(
            built.atlas_db,
            "select timesheet_id, timesheet_tags, user_name, timesheet_tags_array"
            f" from {ANALYTICS}.vw_timesheet_facts",
        )
    }
    assert set(actual) == set(users)
    for tid, (tags, user_name, array) in actual.items():
        assert tags == ", ".join(sorted(names.get(tid, []), key=name_key)), tid
        assert array == sorted(names.get(tid, []), key=name_key), tid
        assert user_name == users[tid], tid
    assert any(not v[0] for v in actual.values()), "some timesheets have no tags ('' expected)"
    shown_hidden = [t for t in hidden if any(t in v[0].split(", ") for v in actual.values())]
    if hidden and any(hidden & set(n) for n in names.values()):
        assert shown_hidden, "hidden tags must be listed"


def test_hours_per_tag_are_exact_in_the_tag_bridge(built: Stack) -> None:
    # per tag name, straight from Kimai: the timesheets carrying it, finished work only
    expected: dict[str, list] = defaultdict(lambda: [0, Decimal(0), Decimal(0), 0])
    for name, duration, revenue, running in kimai_query(
        built.kimai_db,
        "SELECT g.name, t.duration,"
        " CASE WHEN t.billable = 1 THEN CAST(t.rate AS DECIMAL(18, 4)) ELSE 0 END,"
        " t.end_time IS NULL"
        " FROM kimai2_timesheet_tags x JOIN kimai2_timesheet t ON t.id = x.timesheet_id"
        " JOIN kimai2_tags g ON g.id = x.tag_id",
    ):
        totals = expected[name]
        totals[3] += 1
        if not running:
            totals[0] += duration
            totals[1] += hours(duration)
            totals[2] += revenue
    rows = pg_query(
        built.atlas_db,
        "select tag_name, coalesce(sum(duration_seconds), 0), coalesce(sum(duration_hours), 0),"
        f" coalesce(sum(revenue), 0), count(*) from {ANALYTICS}.vw_timesheet_tags group by 1",
    )
    assert {r[0]: list(r[1:]) for r in rows} == dict(expected)
    # a tag whose name is the prefix of another's ("bug" and "bug-12") keeps its own hours
    assert [a for a in expected for b in expected if a != b and b.startswith(a)]


def test_projects_per_taxonomy_tag_match_overlays(built: Stack) -> None:
    data = _overlay_tables(built.atlas_db)
    overrides = {r[0]: r for r in data["overrides"]}
    kimai_projects = {r[0] for r in kimai_query(built.kimai_db, "SELECT id FROM kimai2_projects")}
    expected = set()
    for kimai_id, override_id, taxonomy, term in data["tags"]:
        project = _resolve(kimai_id, override_id, overrides)
        if project < 0 or project in kimai_projects:
            expected.add((project, f"{taxonomy}: {term}", taxonomy, term))
    actual = pg_query(
        built.atlas_db,
        f"select project_id, tag, taxonomy_name, term_name from {ANALYTICS}.vw_project_tags",
    )
    assert len(actual) == len(set(actual))
    assert set(actual) == expected and expected


def _overlay_tables(db: str) -> dict[str, list[tuple]]:
    q = {
        "overrides": "select id, kimai_project_id, money_collected, extras_json->>'name'"
        " from {s}.overrides_projects",
        "tags": "select pt.kimai_project_id, pt.override_project_id, x.name, t.name"
        " from {s}.project_tags pt join {s}.taxonomy_terms t on t.id = pt.taxonomy_term_id"
        " join {s}.taxonomies x on x.id = t.taxonomy_id",
        "payments": "select kimai_project_id, override_project_id, currency, amount_minor"
        " from {s}.payments",
    }
    return {k: pg_query(db, v.format(s=OVERLAY)) for k, v in q.items()}


def _resolve(kimai_id: int | None, override_id: int | None, overrides: dict) -> int:
    if kimai_id is not None:
        return kimai_id
    row = overrides[override_id]
    return row[1] if row[1] is not None else -row[0]


def test_project_tags_match_overlays(built: Stack) -> None:
    data = _overlay_tables(built.atlas_db)
    overrides = {r[0]: r for r in data["overrides"]}
    labels: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for kimai_id, override_id, taxonomy, term in data["tags"]:
        labels[_resolve(kimai_id, override_id, overrides)].add((taxonomy, term))
    actual = {
        r[0]: (r[1], r[2])
        for r in pg_query(
            built.atlas_db,
            f"select project_id, project_tags, project_tags_array from {ANALYTICS}.vw_projects",
        )
    }
    for pid, (text, array) in actual.items():
        pairs = sorted(labels.get(pid, set()), key=lambda p: (*name_key(p[0]), *name_key(p[1])))
        expected = [f"{a}: {b}" for a, b in pairs]
        assert text == "; ".join(expected), pid
        assert array == expected, pid
    assert any(";" in v[0] for v in actual.values()) and any(v[0] == "" for v in actual.values())
    # facts carry their project's tags
    mismatched = pg_query(
        built.atlas_db,
        f"select count(*) from {ANALYTICS}.vw_timesheet_facts f"
        f" join {ANALYTICS}.vw_projects p using (project_id) where f.project_tags <> p.project_tags",
    )
    assert mismatched == [(0,)]


def test_money_collected_and_prospective_projects_match_overlays(built: Stack) -> None:
    data = _overlay_tables(built.atlas_db)
    overrides = {r[0]: r for r in data["overrides"]}
    paid: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for kimai_id, override_id, currency, minor in data["payments"]:
        if kimai_id is None and override_id is None:
            continue
        paid[_resolve(kimai_id, override_id, overrides)][currency.strip()] += minor
    override_by_kimai = {r[1]: r for r in data["overrides"] if r[1] is not None}
    rows = pg_query(
        built.atlas_db,
        "select project_id, origin, is_prospective, project_name, currency, money_collected,"
        f" money_collected_source, payments_collected from {ANALYTICS}.vw_projects",
    )
    by_id = {r[0]: r for r in rows}
    kimai_ids = {r[0] for r in kimai_query(built.kimai_db, "SELECT id FROM kimai2_projects")}
    prospective = {-r[0]: r for r in data["overrides"] if r[1] is None}
    assert set(by_id) == kimai_ids | set(prospective), "one row per Kimai and prospective project"
    assert built.overlays.orphan_kimai_project_id not in by_id
    sources = set()
    for pid, (_, origin, is_prospective, name, currency, money, source, readable) in by_id.items():
        override = override_by_kimai.get(pid) if pid > 0 else prospective[pid]
        if pid > 0:
            assert (origin, is_prospective) == ("kimai", False)
        else:
            assert (origin, is_prospective) == ("atlas", True)
            assert name == override[3]
        override_money = override[2] if override else None
        in_currency = _major(paid[pid].get(currency, 0), currency) if currency else Decimal(0)
        expected = override_money if override_money is not None else in_currency
        assert money == expected, pid
        sources.add(source)
        assert readable == "; ".join(
            f"{c} {_major(m, c):.{_exponent(c)}f}" for c, m in sorted(paid[pid].items())
        ), pid
    assert sources == {"override", "payments", "none"}
    zero = built.overlays.money_collected_zero[0]
    assert by_id[zero][5] == Decimal("0.00") and by_id[zero][6] == "override"
    assert len(prospective) == len(built.overlays.prospective_override_ids) >= 1


def test_bi_role_reads_views_and_replica_only(built: Stack) -> None:
    role = built.bi_role
    conn = psycopg2.connect(
        host=POSTGRES["host"], port=POSTGRES["port"], user=role, dbname=built.atlas_db
    )
    conn.autocommit = True

    def attempt(sql: str) -> str | None:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
            return None
        except psycopg2.Error as exc:
            return exc.pgcode

    try:
        for view in CONTRACT_COLUMNS:
            assert attempt(f"select * from {ANALYTICS}.{view} limit 1") is None, view
        replica_tables = [
            r[0]
            for r in pg_query(
                built.atlas_db,
                "select tablename from pg_tables where schemaname = %s",
                (REPLICA,),
            )
        ]
        assert any(t.startswith("_dlt_") for t in replica_tables)
        for table in replica_tables:
            outcome = attempt(f'select * from {REPLICA}."{table}" limit 1')
            if table.startswith("replica_kimai_"):
                assert outcome is None, table
            else:  # dlt's bookkeeping and the sync's state
                assert outcome == "42501", table
        internal = pg_query(
            built.atlas_db,
            "select table_name from information_schema.tables where table_schema = %s",
            (INTERNAL,),
        )
        assert internal, "staging/intermediate models live in the internal schema"
        for (name,) in internal[:5]:
            assert attempt(f"select * from {INTERNAL}.{name} limit 1") == "42501", name
        assert attempt(f"select * from {OVERLAY}.payments limit 1") == "42501"
        for sql in (
            f"insert into {REPLICA}.replica_kimai_tags (id, name) values (999999, 'x')",
            f"delete from {REPLICA}.replica_kimai_timesheets",
            f"create table {ANALYTICS}.intruder (a int)",
            f"create table {REPLICA}.intruder (a int)",
            "create table public.intruder (a int)",
            f"create view {ANALYTICS}.intruder as select 1",
        ):
            assert attempt(sql) == "42501", sql
    finally:
        conn.close()


# -- mutations: each test owns its databases --------------------------------------------------


def _facts(stack: Stack, relation: str = f"{ANALYTICS}.vw_timesheet_facts") -> dict[int, tuple]:
    return {
        r[0]: r[1:]
        for r in pg_query(
            stack.atlas_db,
            f"select timesheet_id, project_name, timesheet_tags, project_status, duration_seconds"
            f" from {relation}",
        )
    }


def _facts_diff(stack: Stack) -> int:
    """Rows of the facts computed now (int_timesheet_facts) and of vw_timesheet_facts (over
    the materialized table) that differ, in every column the two share."""
    columns = ", ".join(
        f'"{c}"'
        for (c,) in pg_query(
            stack.atlas_db,
            "select column_name from information_schema.columns"
            " where table_schema = %s and table_name = 'int_timesheet_facts'"
            " and column_name in (select column_name from information_schema.columns"
            " where table_schema = %s and table_name = 'vw_timesheet_facts')",
            (INTERNAL, ANALYTICS),
        )
    )
    computed = f"select {columns} from {INTERNAL}.int_timesheet_facts"
    served = f"select {columns} from {ANALYTICS}.vw_timesheet_facts"
    return pg_query(
        stack.atlas_db,
        f"select count(*) from (({computed} except {served})"
        f" union all ({served} except {computed})) d",
    )[0][0]


def _change_everything(stack: Stack) -> None:
    """Change Kimai as Kimai does: edits, new rows, tags, renames, silent moves, cascades."""
    now = datetime.now(UTC).replace(microsecond=0)
    engine = sa.create_engine(kimai_url(stack.kimai_db))
    try:
        with engine.connect() as conn:
            first, last = conn.execute(
                sa.text("SELECT MIN(id), MAX(id) FROM kimai2_timesheet")
            ).one()
            row = conn.execute(
                sa.text("SELECT user, project_id, activity_id FROM kimai2_timesheet WHERE id = :i"),
                {"i": last},
            ).one()
            tag, other_tag = conn.execute(
                sa.text("SELECT id FROM kimai2_tags ORDER BY id LIMIT 2")
            ).scalars()
            projects = (
                conn.execute(
                    sa.text("SELECT DISTINCT project_id FROM kimai2_timesheet ORDER BY project_id")
                )
                .scalars()
                .all()
            )
            kimai_do.update_timesheet(conn, first, now=now, description="edited by test")
            kimai_do.insert_timesheet(
                conn,
                user=row.user,
                project_id=row.project_id,
                activity_id=row.activity_id,
                start=now - timedelta(hours=3),
                end=now - timedelta(hours=1),
                now=now,
                tags=[tag],
            )
            kimai_do.add_tag(conn, first, other_tag, now=now)
            kimai_do.rename_tag(conn, tag, "Renamed tag")
            conn.execute(
                sa.text("UPDATE kimai2_users SET alias = 'Renamed user' WHERE id = :u"),
                {"u": row.user},
            )
            conn.execute(
                sa.text(
                    "UPDATE kimai2_customers SET name = 'Renamed customer' WHERE id ="
                    " (SELECT customer_id FROM kimai2_projects WHERE id = :p)"
                ),
                {"p": projects[0]},
            )
            # silent: the timesheets move to another project without a modified_at bump
            kimai_do.delete_project(conn, projects[1], move_to=projects[2])
            conn.commit()
    finally:
        engine.dispose()


@pytest.mark.heavy
def test_facts_follow_kimai_in_both_materializations(tmp_path: Path) -> None:
    incremental = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table_incremental"}
    with make_stack(tmp_path, timesheets=600, seed=5) as stack:
        result = transform(stack, **incremental)
        assert result.returncode == 0, result.stdout + result.stderr
        table = pg_query(
            stack.atlas_db,
            "select table_type from information_schema.tables where table_schema = %s"
            " and table_name = 'int_timesheet_facts_materialized'",
            (INTERNAL,),
        )
        assert table == [("BASE TABLE",)]
        before = _facts(stack)
        victim, renamed_project, tagged = kimai_query(
            stack.kimai_db,
            "SELECT (SELECT MIN(id) FROM kimai2_timesheet),"
            " (SELECT project_id FROM kimai2_timesheet ORDER BY id DESC LIMIT 1),"
            " (SELECT MAX(timesheet_id) FROM kimai2_timesheet_tags)",
        )[0]
        assert victim in before
        kimai_query(stack.kimai_db, "DELETE FROM kimai2_timesheet WHERE id = %s", (victim,))
        kimai_query(
            stack.kimai_db,
            "UPDATE kimai2_projects SET name = 'Renamed by test' WHERE id = %s",
            (renamed_project,),
        )
        kimai_query(
            stack.kimai_db, "DELETE FROM kimai2_timesheet_tags WHERE timesheet_id = %s", (tagged,)
        )
        pg_query(
            stack.atlas_db,
            f"update {OVERLAY}.overrides_projects set status_id = 4 where kimai_project_id = %s",
            (renamed_project,),
        )
        synced = run_cli("sync", env=stack.env)
        assert synced.returncode == 0, synced.stderr

        result = transform(stack, **incremental)
        assert result.returncode == 0, result.stdout + result.stderr
        after = _facts(stack)
        kimai_count = kimai_query(stack.kimai_db, "SELECT COUNT(*) FROM kimai2_timesheet")[0][0]
        assert victim not in after and len(after) == kimai_count == len(before) - 1
        renamed = [v for v in after.values() if v[0] == "Renamed by test"]
        assert renamed and len(renamed) == sum(
            1
            for _ in kimai_query(
                stack.kimai_db,
                "SELECT id FROM kimai2_timesheet WHERE project_id = %s",
                (renamed_project,),
            )
        )
        has_override = renamed_project in stack.overlays.override_ids_by_kimai_project
        assert {v[2] for v in renamed} == ({"Tender"} if has_override else {None})
        assert after[tagged][1] == ""
        # the materialized table holds exactly what the view computes
        diff = _facts_diff(stack)
        assert diff == 0

        # second round: every kind of change the change log must bring to the table
        _change_everything(stack)
        for command in ("sync", "reconcile"):
            synced = run_cli(command, env=stack.env)
            assert synced.returncode == 0, synced.stderr
        # the sampled equality test (the default above 200k timesheets) on the same build
        sampled = {**incremental, "ATLAS_TIMESHEET_FACTS_CHECK": "sample"}
        result = transform(stack, **sampled)
        assert result.returncode == 0, result.stdout + result.stderr
        # changed rows only were written (by the newest transaction, PostgreSQL's xmin), not
        # a rebuild
        written, total = pg_query(
            stack.atlas_db,
            "select count(*) filter (where age(xmin) = (select min(age(xmin))"
            f" from {INTERNAL}.int_timesheet_facts_materialized)), count(*)"
            f" from {INTERNAL}.int_timesheet_facts_materialized",
        )[0]
        assert 0 < written < total, (written, total)
        assert _facts_diff(stack) == 0
        assert (
            len(_facts(stack))
            == kimai_query(stack.kimai_db, "SELECT COUNT(*) FROM kimai2_timesheet")[0][0]
        )
        after = _facts(stack)

        # a row lost behind the change log's back from the copy the next build refreshes
        # (the shadow schema's, brought up to date by one more build first; the row is not
        # the newest timesheet, which every build rewrites): the sampled check still sees
        # it, and BI keeps the last good build
        result = transform(stack, **sampled)
        assert result.returncode == 0, result.stdout + result.stderr
        pg_query(
            stack.atlas_db,
            f"delete from {INTERNAL}_build.int_timesheet_facts_materialized"
            f" where timesheet_id = (select min(timesheet_id) from {INTERNAL}.int_timesheet_facts)",
        )
        result = transform(stack, **sampled)
        assert result.returncode == 1
        assert "assert_timesheet_facts_materialized_matches_view" in result.stdout + result.stderr
        assert _facts(stack) == after

        # back to the plain view: same rows
        result = transform(stack)
        assert result.returncode == 0, result.stdout + result.stderr
        definition = pg_query(
            stack.atlas_db, f"select pg_get_viewdef('{ANALYTICS}.vw_timesheet_facts'::regclass)"
        )[0][0]
        assert "int_timesheet_facts_materialized" not in definition
        assert _facts(stack) == after
