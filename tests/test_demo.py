"""The zero-setup demo (SQLite Kimai → DuckDB Atlas DB), and the dbt project on both adapters.

Real files in temporary directories, nothing mocked. The demo runs as a user runs it: a
subprocess started from an unrelated directory, with production variables (and a `.env`
file) pointing at servers that do not exist, which it must ignore. Its results are checked
against numbers computed directly from the generated Kimai file with Python's sqlite3. The
same Kimai file is then synced into PostgreSQL, and the two targets' vw_* relations are
compared row for row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.demo.atlas_overlays import create_atlas_overlays
from pipelines.demo.runner import (
    SEED,
    DemoPaths,
    demo_anchor,
    demo_settings,
    generate_demo_data,
    kimai_currencies,
)
from pipelines.lock import file_lock
from pipelines.registry import TABLES, TableSpec
from pipelines.runner import RunRequest, execute
from pipelines.transform import run_dbt
from pipelines.types import SyncOptions
from tests.conftest import pg_connect
from tests.replica_check import ALLOWED_ROWS, assert_rows_equal
from tests.stack import mart_keys, project_copy

SCALE = 1500
REPLICA, ANALYTICS, OVERLAY = "kimai_replica", "analytics", "public"
# a production configuration the demo must not touch (nothing listens there)
PRODUCTION_ENV = {
    "KIMAI_DB_HOST": "kimai-db.invalid",
    "KIMAI_DB_URL": "mysql+pymysql://nobody@kimai-db.invalid/kimai",
    "ATLAS_DB_URL": "postgresql://nobody@atlas-db.invalid/atlas",
    "ATLAS_ANALYTICS_SCHEMA": "somewhere_else",
    "ATLAS_SYNC_STATE_DIR": "/nonexistent/state",
    "ATLAS_RETRY_ATTEMPTS": "not a number",
    "DBT_PROFILES_DIR": "/nonexistent/profiles",
}
_CONTRACT_PREFIXES = ("KIMAI_", "ATLAS_", "DBT_")


@dataclass
class DemoRun:
    """A finished `python -m pipelines.run demo`."""

    directory: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def paths(self) -> DemoPaths:
        return DemoPaths(self.directory)


def run_demo(directory: Path, cwd: Path, *args: str) -> DemoRun:
    """Run the demo command in a subprocess, as `scripts/demo` does."""
    home = cwd / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    # ... and a time zone far from UTC: nothing may depend on the process's zone
    env.update(PRODUCTION_ENV, HOME=str(home), TZ="Pacific/Chatham")
    (cwd / ".env").write_text("KIMAI_DB_URL=mysql+pymysql://dotenv@kimai-db.invalid/kimai\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", "demo", "--dir", str(directory), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return DemoRun(directory, proc.returncode, proc.stdout, proc.stderr)


def _shared_run(factory: pytest.TempPathFactory, name: str, *args: str) -> DemoRun:
    """One demo run per test session, shared read-only by every test and xdist worker."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the directory all workers share
    directory, record = root / name, root / f"{name}.json"
    with file_lock(root / f"{name}.lock", wait_seconds=900):
        if not record.exists():
            cwd = root / f"{name}-cwd"
            cwd.mkdir(exist_ok=True)
            run = run_demo(directory, cwd, "--scale", str(SCALE), *args)
            # the demo wrote nothing outside its directory: not in the cwd, not in HOME
            left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
            assert left == [".env", "home"], left
            record.write_text(json.dumps(dataclasses.asdict(run), default=str))
    data = json.loads(record.read_text())
    return DemoRun(Path(data["directory"]), data["returncode"], data["stdout"], data["stderr"])


@pytest.fixture(scope="session")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo's first run as a newcomer starts it."""
    return _shared_run(tmp_path_factory, "demo-first-run")


@pytest.fixture(scope="session")
def edge_case_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """A first run on the generators' edge cases (float traps, emoji, hostile text)."""
    return _shared_run(tmp_path_factory, "demo-edge-cases", "--edge-cases")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No contract variables in this process (in-process runs read their own settings)."""
    for key in list(os.environ):
        if key.startswith(_CONTRACT_PREFIXES):
            monkeypatch.delenv(key)


def copy_demo(run: DemoRun, target: Path) -> DemoPaths:
    """A private copy of a demo directory (tests never change the shared one)."""
    shutil.copytree(run.directory, target)
    return DemoPaths(target)


# -- reading both sides ---------------------------------------------------------------------


def sqlite_rows(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def duck_rows(path: Path, sql: str, args: list | None = None) -> list[tuple]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _kimai_value(value: Any, declared: str) -> Any:
    """A SQLite value as the replica must hold it (Kimai's declared MySQL types)."""
    if value is None:
        return None
    if declared.startswith("tinyint(1)"):
        return bool(value)
    if declared.startswith("datetime"):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    if declared.startswith("date"):
        return dt.date.fromisoformat(value)
    if "double" in declared:
        return float(value)
    return value


def kimai_table(path: Path, spec: TableSpec) -> dict[tuple, dict[str, Any]]:
    """Every row of a Kimai table keyed by primary key, secrets left out."""
    table = spec.kimai_name("kimai2_")
    info = sqlite_rows(path, f'PRAGMA table_info("{table}")')
    columns = [(r[1], r[2].lower()) for r in info if r[1] not in spec.excluded_columns]
    quoted = ", ".join(f'"{c}"' for c, _ in columns)
    out = {}
    allowed = ALLOWED_ROWS.get(spec.name)
    for row in sqlite_rows(path, f'SELECT {quoted} FROM "{table}"'):
        values = {c: _kimai_value(v, t) for (c, t), v in zip(columns, row, strict=True)}
        if allowed is not None and values[allowed[0]] not in allowed[1]:
            continue
        out[tuple(values[k] for k in spec.primary_key)] = values
    return out


def replica_table(path: Path, spec: TableSpec, columns: list[str]) -> dict[tuple, dict]:
    quoted = ", ".join(f'"{c}"' for c in columns)
    out = {}
    for row in duck_rows(path, f'SELECT {quoted} FROM {REPLICA}."{spec.replica_table}"'):
        values = {
            c: v.astimezone(dt.UTC) if isinstance(v, dt.datetime) else v
            for c, v in zip(columns, row, strict=True)
        }
        out[tuple(values[k] for k in spec.primary_key)] = values
    return out


def assert_replica_equals_kimai(paths: DemoPaths) -> None:
    """Every replica table equals its Kimai table, row for row, column for column, type too."""
    for spec in TABLES:
        expected = kimai_table(paths.kimai, spec)
        columns = list(next(iter(expected.values())))
        actual = replica_table(paths.atlas, spec, columns)
        assert_rows_equal(spec.replica_table, expected, actual, columns)


def money(value: float) -> Decimal:
    """Kimai's DOUBLE amount as the models' numeric(18,4): 15 digits, half away from zero."""
    return Decimal(f"{value:.15g}").quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / 3600).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def assert_views_match_kimai(paths: DemoPaths) -> None:
    """The vw_* totals equal totals computed directly from Kimai's SQLite file."""
    kimai, atlas = paths.kimai, paths.atlas
    relations = duck_rows(
        atlas,
        "select table_name from information_schema.tables where table_schema = ?",
        [ANALYTICS],
    )
    marts = mart_keys()
    assert sorted(r[0] for r in relations) == sorted(marts), "the BI schema holds the marts only"

    # per customer: hours, billable hours, revenue (finished work only), counts
    expected: dict[int, list] = defaultdict(lambda: [0, 0, Decimal(0), 0, 0])
    for (cid,) in sqlite_rows(kimai, "SELECT id FROM kimai2_customers"):
        expected[cid]
    for cid, duration, rate, billable, running in sqlite_rows(
        kimai,
        "SELECT p.customer_id, t.duration, t.rate, t.billable, t.end_time IS NULL"
        " FROM kimai2_timesheet t JOIN kimai2_projects p ON p.id = t.project_id",
    ):
        totals = expected[cid]
        totals[3] += 1
        if running:
            totals[4] += 1
            continue
        totals[0] += duration
        if billable == 1:
            totals[1] += duration
            totals[2] += money(rate)
    actual = {
        r[0]: r[1:]
        for r in duck_rows(
            atlas,
            "select customer_id, hours_recorded, billable_hours, revenue, timesheet_count,"
            f" running_timesheet_count from {ANALYTICS}.vw_customers",
        )
    }
    assert set(actual) == set(expected)
    for cid, (seconds, billable, revenue, count, running) in expected.items():
        assert actual[cid] == (hours(seconds), hours(billable), revenue, count, running), cid
    assert sum(t[2] for t in expected.values()) > 0 and sum(t[4] for t in expected.values()) > 0

    # row counts and keys
    kimai_ids = {r[0] for r in sqlite_rows(kimai, "SELECT id FROM kimai2_timesheet")}
    facts = duck_rows(atlas, f"select timesheet_id from {ANALYTICS}.vw_timesheet_facts")
    assert len(facts) == len(kimai_ids) and {r[0] for r in facts} == kimai_ids
    projects = {r[0] for r in sqlite_rows(kimai, "SELECT id FROM kimai2_projects")}
    prospective = {
        -r[0]
        for r in duck_rows(
            atlas, f"select id from {OVERLAY}.overrides_projects where kimai_project_id is null"
        )
    }
    shown = duck_rows(atlas, f"select project_id from {ANALYTICS}.vw_projects")
    assert (
        len(shown) == len(projects | prospective)
        and {r[0] for r in shown} == projects | prospective
    )
    health = {
        r[0]: r[1:]
        for r in duck_rows(
            atlas,
            "select table_name, replica_rows, kimai_rows, differences_unrepaired,"
            f" last_reconciled_at from {ANALYTICS}.vw_sync_health",
        )
    }
    assert set(health) == {t.name for t in TABLES}
    for spec in TABLES:
        count = len(kimai_table(kimai, spec))  # the rows that may leave Kimai
        replica_rows, kimai_rows, unrepaired, reconciled_at = health[spec.name]
        assert replica_rows == kimai_rows == count, spec.name
        assert unrepaired == 0 and reconciled_at is not None, spec.name


def summary_counts(stdout: str, table: str, read: bool = False) -> tuple[int, ...]:
    """Inserted, updated and deleted of one table in the printed sync summary.

    With `read`, the rows read come first.
    """
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == table and len(cells) == 7:
            return tuple(int(c.replace(",", "")) for c in cells[3 if read else 4 : 7])
    raise AssertionError(f"no summary line for {table} in:\n{stdout}")


def report_section(stdout: str, title: str) -> list[dict[str, str]]:
    """One table of the printed report, cut into cells along its rule of dashes."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header, rule = lines[start + 2], lines[start + 3]
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    assert spans and set(rule.strip()) <= {"-", " "}, rule
    names = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[start + 4 :]:
        if not line.strip():
            break
        # a terminal gives an emoji or a CJK character two cells: one filler after each
        wide = ("W", "F")
        cells = "".join(ch + "\0" * (unicodedata.east_asian_width(ch) in wide) for ch in line)
        row = [cells[a:b].replace("\0", "").strip() for a, b in spans]
        # nothing spills over into the gaps between the columns
        gaps = zip([0] + [b for _a, b in spans], [a for a, _b in spans] + [len(cells)], strict=True)
        assert all(cells[a:b].strip() == "" for a, b in gaps), line
        rows.append(dict(zip(names, row, strict=True)))
    return rows


# -- the demo -------------------------------------------------------------------------------


# written out from ISO 4217 for the generated customers' currencies: yen has no minor unit
DECIMALS = {"JPY": 0, "EUR": 2, "USD": 2, "GBP": 2, "SGD": 2, "AUD": 2, "CHF": 2, "INR": 2}
DECIMALS |= {"CAD": 2, "BRL": 2, "NZD": 2, "SEK": 2}
MONEY = re.compile(r"^-?\d{1,3}(,\d{3})*(\.(\d+))? ([A-Z]{3})$")


def assert_money(cell: str) -> Decimal:
    """A money cell: its currency's decimals and its code; returns the amount."""
    found = MONEY.match(cell)
    assert found, f"not an amount with its currency: {cell!r}"
    assert len(found.group(3) or "") == DECIMALS[found.group(4)], cell
    return Decimal(cell.split()[0].replace(",", ""))


def assert_the_report_reads_well(out: str) -> None:
    """Amounts with their currency and its decimals, headers that say what the cells are."""
    customers = report_section(out, "Hours by customer")
    assert customers and all(assert_money(r["revenue"]) >= 0 for r in customers)
    for row in customers:
        assert float(row["billable hours"]) <= float(row["hours"]), row
    users = report_section(out, "Billable share per user")
    assert users and all(re.fullmatch(r"\d+ %", r["billable share"]) for r in users)
    budgets = report_section(out, "Project budgets as Kimai counts them")
    assert budgets and {r["period"] for r in budgets} <= {"lifetime", "monthly"}
    for row in budgets:
        for kind in ("money", "hours"):
            if row[f"{kind} budget"] == "-":
                assert row[f"{kind} used"] == row[f"{kind} %"] == "-", row
                continue
            assert re.fullmatch(r"[\d,]+\.\d %", row[f"{kind} %"]), row
            if kind == "money":
                # a budget is a round business figure, never a float artefact like 0.30
                budget = assert_money(row["money budget"])
                assert budget >= 1000 and budget == budget.to_integral_value(), row
                assert row["money budget"].split()[1] == row["money used"].split()[1], row
    prospects = report_section(out, "Prospective projects")
    assert prospects and all(assert_money(r["money collected"]) >= 0 for r in prospects)
    assert {r["from"] for r in prospects} <= {"override", "payments", "none"}


def next_step(out: str, marker: str) -> list[str]:
    """The printed command line containing `marker`, joined over a trailing backslash."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if marker in line)
    text = lines[at]
    while text.endswith("\\"):
        at += 1
        text = text[:-1] + lines[at]
    return shlex.split(text)


def run_next_step(
    words: list[str], cwd: Path, shared: Path, copy: Path
) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a shell would (leading VAR=value words are its environment).

    It runs on `copy`, a copy of the `shared` demo directory the command names.
    """
    words = [w.replace(str(shared), str(copy)) for w in words]
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    env["HOME"] = str(cwd)
    while "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if words[0] == "python":  # printed so in an activated venv
        words[0] = sys.executable
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.heavy
def test_demo_builds_everything_from_the_embedded_kimai(first_run: DemoRun, tmp_path: Path) -> None:
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    paths = first_run.paths
    assert paths.kimai.is_file() and paths.atlas.is_file() and paths.state.is_dir()
    out = first_run.stdout
    assert summary_counts(out, "timesheets") == (SCALE, 0, 0)
    assert "dbt build passed" in out
    for section in (
        "Hours by customer",
        "Billable share per user",
        "Top project tags",
        "Project budgets as Kimai counts them",
        "Prospective projects",
    ):
        assert section in out, section
    # rows generated, in words
    generated = out.splitlines()[0]
    assert f"{SCALE:,} timesheets, " in generated and " timesheet tags, " in generated
    assert "_" not in generated.split("): ")[1], generated
    assert_the_report_reads_well(out)
    assert "KIMAI_DB_HOST=" in out

    # the printed ways to look around work from the project's venv (no `duckdb` command)
    copy = copy_demo(first_run, tmp_path / "demo").root
    query = run_next_step(next_step(out, "import duckdb"), tmp_path, paths.root, copy)
    assert query.returncode == 0, query.stderr
    assert "customer_name" in query.stdout
    status = run_next_step(next_step(out, "KIMAI_DB_URL=sqlite"), tmp_path, paths.root, copy)
    assert status.returncode == 0, status.stdout + status.stderr
    runs = report_section("Runs\n\n" + status.stdout.split("Last runs\n\n")[1], "Runs")
    # the demo's runs show as what they are: started by a person, not by cron
    assert [(r["command"], r["trigger"], r["status"]) for r in runs] == [("demo", "cli", "success")]

    assert_replica_equals_kimai(paths)
    assert_views_match_kimai(paths)


@pytest.mark.unit
def test_the_same_seed_and_day_give_the_same_demo_data(tmp_path: Path) -> None:
    # any moment of one day (UTC) anchors the data at its midnight
    morning, evening = dt.datetime(2026, 3, 29, 0, 0, 1), dt.datetime(2026, 3, 29, 23, 59, 59)
    assert demo_anchor(morning) == demo_anchor(evening) == dt.datetime(2026, 3, 29)

    def generate(name: str, seed: int) -> DemoPaths:
        paths = DemoPaths(tmp_path / name)
        paths.root.mkdir()
        generate_demo_data(paths, demo_settings(paths), 300, seed, demo_anchor(evening))
        return paths

    def contents(paths: DemoPaths) -> dict[str, list[tuple]]:
        tables = sqlite_rows(
            paths.kimai,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'kimai2_%'",
        )
        found = {
            t: sqlite_rows(paths.kimai, f'SELECT * FROM "{t}" ORDER BY 1, 2') for (t,) in tables
        }
        overlays = duck_rows(
            paths.atlas,
            "select table_schema, table_name from information_schema.tables order by all",
        )
        for schema, table in overlays:
            found[f"{schema}.{table}"] = duck_rows(
                paths.atlas, f'select * from "{schema}"."{table}" order by all'
            )
        return found

    first, again, other = (
        contents(generate("a", 7)),
        contents(generate("b", 7)),
        contents(generate("c", 8)),
    )
    assert len(first) == 11 + 8 and all(first.values()), sorted(first)
    assert first == again
    assert first["kimai2_timesheet"] != other["kimai2_timesheet"]


@pytest.mark.usefixtures("clean_env")
def test_second_run_propagates_inserts_edits_and_deletes(
    first_run: DemoRun, tmp_path: Path
) -> None:
    paths = copy_demo(first_run, tmp_path / "demo")
    incremental = dataclasses.replace(
        demo_settings(paths), timesheet_facts_materialization="table_incremental"
    )
    facts = ["build", "--select", "int_timesheet_facts_materialized+"]
    # its own dbt directory: another var value would make the demo's dbt parse anew each time
    dbt_dir = tmp_path / "dbt-incremental"
    # the materialized facts table, first built from the first run's data ...
    assert not run_dbt(incremental, facts, target_dir=dbt_dir).failed
    before = {r[0] for r in sqlite_rows(paths.kimai, "SELECT id FROM kimai2_timesheet")}

    second = run_demo(paths.root, tmp_path / "cwd")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Run 2: a day of activity in Kimai" in second.stdout
    inserted, updated, deleted = summary_counts(second.stdout, "timesheets")
    after = {r[0] for r in sqlite_rows(paths.kimai, "SELECT id FROM kimai2_timesheet")}
    assert (inserted, deleted) == (len(after - before), len(before - after)) and inserted > 0
    assert deleted > 0 and updated > 0
    read, added, changed, removed = summary_counts(second.stdout, "timesheet_tags", read=True)
    # a pair is all key: the new ones are the rows read
    assert added + removed > 0 and changed == 0 and read == added
    assert "change" in second.stdout  # the report compares with the previous run
    assert_replica_equals_kimai(paths)
    assert_views_match_kimai(paths)

    # ... then kept equal (recomputed whole on DuckDB, which has no change log; the data
    # test compares it with the view)
    result = run_dbt(incremental, facts, target_dir=dbt_dir)
    assert not result.failed and result.passed > 0
    assert_views_match_kimai(paths)  # vw_timesheet_facts reads the materialized table now


def _dbt_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.run", "dbt", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_an_analyst_adds_a_mart_and_builds_it_with_the_dbt_command(
    first_run: DemoRun, tmp_path: Path
) -> None:
    paths = copy_demo(first_run, tmp_path / "demo")
    shutil.rmtree(paths.dbt, ignore_errors=True)
    # any dbt command on the demo's DuckDB file, nothing to configure
    built = _dbt_cli("--demo", "demo", "build", "-s", "vw_customers", env={}, cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "PASS=" in built.stdout and "ERROR=0" in built.stdout
    # a relative DIR is the caller's, not the dbt project's: dbt's files land in the demo
    assert (paths.dbt / "target" / "manifest.json").is_file()

    # a new mart in a copy of the project, as docs/models.md walks through it: no grants
    # or other boilerplate, a key test of its own
    project = project_copy(tmp_path / "project")
    mart = project / "models" / "marts" / "vw_hours_per_tag.sql"
    mart.write_text(
        "-- One row per Kimai tag with recorded time: the finished hours carrying it.\n"
        "select tag_name, cast(sum(duration_hours) as numeric(18, 6)) as duration_hours\n"
        "from {{ ref('vw_timesheet_tags') }}\ngroup by tag_name\n"
    )
    # every column with its type: the marts' contract (docs/metabase.md)
    (project / "models" / "marts" / "_vw_hours_per_tag.yml").write_text(
        "version: 2\nmodels:\n  - name: vw_hours_per_tag\n"
        "    description: One row per Kimai tag with recorded time.\n"
        "    columns:\n      - name: tag_name\n        data_type: text\n"
        "        description: The tag.\n"
        "        data_tests: [unique, not_null]\n"
        "      - name: duration_hours\n        data_type: numeric(18,6)\n"
        "        description: Finished hours carrying the tag.\n"
    )
    env = {
        "KIMAI_DB_URL": f"sqlite:///{paths.kimai}",
        "ATLAS_DB_URL": f"duckdb:///{paths.atlas}",
        "ATLAS_SYNC_STATE_DIR": str(paths.state),
        "DBT_PROJECT_DIR": str(project),
    }
    built = _dbt_cli("build", "--select", "vw_hours_per_tag", env=env, cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    hours = dict(duck_rows(paths.atlas, f"select * from {ANALYTICS}.vw_hours_per_tag"))
    tags = {
        r[0]
        for r in sqlite_rows(
            paths.kimai,
            "SELECT DISTINCT g.name FROM"
            " kimai2_timesheet_tags x JOIN kimai2_tags g ON g.id = x.tag_id",
        )
    }
    assert set(hours) == tags and tags

    # its test fails the command (exit 1)
    mart.write_text(mart.read_text().replace("group by tag_name", "group by tag_name, user_id"))
    failed = _dbt_cli("build", "--select", "vw_hours_per_tag", env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr

    # a wrong path is an error, never a new empty DuckDB file
    missing = tmp_path / "missing.duckdb"
    wrong = _dbt_cli("build", env={**env, "ATLAS_DB_URL": f"duckdb:///{missing}"}, cwd=tmp_path)
    assert wrong.returncode == 2 and "no DuckDB file" in wrong.stderr
    assert not missing.exists()
    nowhere = _dbt_cli("--demo", str(tmp_path / "nowhere"), "build", env={}, cwd=tmp_path)
    assert nowhere.returncode == 2 and "no demo in" in nowhere.stderr


def test_a_second_demo_in_the_same_directory_waits_its_turn(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    with file_lock(DemoPaths(directory).lock):
        run = run_demo(directory, tmp_path / "cwd")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "another run holds the lock" in run.stderr
    assert not DemoPaths(directory).kimai.exists()


# -- the dbt project on both adapters -------------------------------------------------------


PINNED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _pin_run_metadata(execute_sql: Any) -> None:
    """Give both targets the same sync times, run id and build record.

    The two replicas come from two syncs of the same Kimai file, seconds apart; `synced_at`
    and the audit's run id, times and build record (the demo's run built and published,
    the PostgreSQL side is built by dbt directly) are the only inputs of the models that
    differ.
    """
    for spec in TABLES:
        execute_sql(f'update {REPLICA}."{spec.replica_table}" set synced_at = %s', (PINNED,))
    # rows as the sync records values read under a data rule (the demo's Kimai has none)
    execute_sql(
        f"update {REPLICA}.replica_kimai_timesheets set data_issues = %s"
        f" where id = (select min(id) from {REPLICA}.replica_kimai_timesheets)",
        ("nul_in_text|description|\ninvalid_date|end_time|2023-02-30 10:00:00",),
    )
    execute_sql(
        f"update {REPLICA}.replica_kimai_timesheet_tags set data_issues = %s"
        f" where timesheet_id = (select min(timesheet_id) from"
        f" {REPLICA}.replica_kimai_timesheet_tags)",
        ("duplicate_key|timesheet_id,tag_id|2",),
    )
    execute_sql(
        f"update {REPLICA}.sync_run_tables set run_id = 'pinned', recorded_at = %s", (PINNED,)
    )
    execute_sql(
        f"update {REPLICA}.sync_runs set run_id = 'pinned', started_at = %s, finished_at = %s,"
        " build_status = 'published', build_failures = null, published_at = %s",
        (PINNED, PINNED, PINNED),
    )


def _normalised(value: Any) -> Any:
    """One representation per value: instants in UTC (drivers give them in session zones)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def _relation(fetch: Any, view: str, key: str) -> tuple[list[str], list[tuple]]:
    columns, rows = fetch(f"select * from {ANALYTICS}.{view} order by {key}")
    return columns, [tuple(_normalised(v) for v in row) for row in rows]


@pytest.mark.usefixtures("clean_env")
def test_dbt_gives_identical_views_on_postgres_and_duckdb(
    edge_case_run: DemoRun, tmp_path: Path, pg_database: str
) -> None:
    assert edge_case_run.returncode == 0, edge_case_run.stderr
    duck = copy_demo(edge_case_run, tmp_path / "duck")
    # the edge cases made it through the demo's SQLite and DuckDB files ...
    described = {r[0] for r in sqlite_rows(duck.kimai, "SELECT description FROM kimai2_timesheet")}
    assert "'; DROP TABLE kimai2_timesheet; --" in described
    assert_replica_equals_kimai(duck)
    assert_views_match_kimai(duck)
    # ... and the report still lines up its columns (every row parses)
    assert report_section(edge_case_run.stdout, "Billable share per user")
    pg = load_settings(
        {
            "KIMAI_DB_URL": f"sqlite:///{duck.kimai}",
            "ATLAS_DB_URL": f"postgresql://postgres@127.0.0.1:5432/{pg_database}",
            "ATLAS_SYNC_STATE_DIR": str(tmp_path / "pg-state"),
        }
    )
    # the demo's Kimai file, synced into PostgreSQL the same way (reconciliation included)
    execute(pg, RunRequest(command="sync", options=SyncOptions(reconcile=True)))
    projects, customers = kimai_currencies(duck.kimai)
    conn = pg_connect(pg_database)
    try:
        create_atlas_overlays(conn, OVERLAY, projects, customers, seed=SEED)

        def pg_execute(sql: str, args: Any = None) -> None:
            with conn.cursor() as cur:
                cur.execute(sql, args)

        def pg_fetch(sql: str) -> tuple[list[str], list[tuple]]:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()

        _pin_run_metadata(pg_execute)
        built = run_dbt(pg, ["build"], target_dir=tmp_path / "pg-dbt")
        # one warning: the data issues planted above (assert_kimai_data_has_no_issues)
        assert not built.failed and len(built.warned) == 1 and built.passed > 200

        dconn = duckdb.connect(str(duck.atlas))
        try:
            _pin_run_metadata(lambda sql, args=None: dconn.execute(sql.replace("%s", "?"), args))

            def duck_fetch(sql: str) -> tuple[list[str], list[tuple]]:
                cur = dconn.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()

            for view, key in mart_keys().items():
                pg_cols, pg_rows = _relation(pg_fetch, view, key)
                duck_cols, duck_rows_ = _relation(duck_fetch, view, key)
                assert pg_cols == duck_cols, view
                assert len(pg_rows) == len(duck_rows_) > 0, view
                # lag_seconds is "now minus the last sync": the moment of the query itself
                skip = {pg_cols.index("lag_seconds")} if view == "vw_sync_health" else set()
                diffs = [
                    (row_pg[0], pg_cols[i], a, b)
                    for row_pg, row_duck in zip(pg_rows, duck_rows_, strict=True)
                    for i, (a, b) in enumerate(zip(row_pg, row_duck, strict=True))
                    if i not in skip and (a != b or type(a) is not type(b))
                ]
                assert not diffs, f"{view}: {len(diffs)} differing values, e.g. {diffs[:8]}"
        finally:
            dconn.close()
    finally:
        conn.close()
