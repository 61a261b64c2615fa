"""The zero-setup demo: the whole product on embedded databases, in one directory.

The first run generates a realistic Kimai database as a SQLite file (the generator the
tests use, without the edge cases only tests want) and realistic Atlas overlays in a DuckDB
file, both a function of the seed and the day (UTC) alone, then runs exactly what the
scheduled job runs (`pipelines.runner.execute`: the table registry, the dlt source with
its incremental state, delete detection and a reconciliation, then ``dbt build`` on the
DuckDB target ``local``) and prints a report a manager would recognise. Every later run in
the same directory first simulates a day of Kimai activity through Kimai's own write paths
(`pipelines.demo.kimai_actions`: new, edited, stopped and deleted timesheets, tags,
an export flag) and shows the changes flowing through.

The demo uses its own settings only: the ``KIMAI_*``, ``ATLAS_*`` and ``DBT_PROFILES_DIR``
variables of a production set-up (and a ``.env`` file) are ignored while it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.adapters.replica import open_replica
from pipelines.config import Settings, load_settings
from pipelines.currencies import format_money
from pipelines.errors import ConfigError
from pipelines.lock import file_lock
from pipelines.runner import RunOutcome, RunRequest, execute
from pipelines.tables import Column, number, render_table, text
from pipelines.types import SyncOptions

DEFAULT_DIR = Path("kimai-atlas-demo")
"""Where the demo keeps its files when ``--dir`` is not given (relative to the cwd)."""

DEFAULT_SCALE = 5_000
"""Timesheets of the generated Kimai (the other tables scale with it)."""

SEED = 42
"""Default seed of the generated Kimai and overlays: the same seed, scale and day (UTC)
give the same data."""

TRIGGER = "cli"
"""The demo's runs in the audit: started by a person on the command line, never by cron."""

KIMAI_TABLE_WORDS: dict[str, tuple[str, str]] = {
    "customers": ("customer", "customers"),
    "projects": ("project", "projects"),
    "activities": ("activity", "activities"),
    "users": ("user", "users"),
    "tags": ("tag", "tags"),
    "timesheet": ("timesheet", "timesheets"),
    "timesheet_tags": ("timesheet tag", "timesheet tags"),
    "teams": ("team", "teams"),
    "users_teams": ("team membership", "team memberships"),
    "user_preferences": ("user preference", "user preferences"),
    "configuration": ("configuration setting", "configuration settings"),
}
"""What the rows of each generated Kimai table are, in words (singular, plural)."""

JOURNAL_VERSION = 1


@dataclass(frozen=True)
class DemoPaths:
    """The files of one demo directory."""

    root: Path

    @property
    def kimai(self) -> Path:
        """Kimai's database (SQLite, Kimai's schema)."""
        return self.root / "kimai.sqlite"

    @property
    def atlas(self) -> Path:
        """Atlas DB (DuckDB): overlays, replica, run audit and the dbt models."""
        return self.root / "atlas.duckdb"

    @property
    def state(self) -> Path:
        """The local working state of dlt (ATLAS_SYNC_STATE_DIR)."""
        return self.root / "state"

    @property
    def dbt(self) -> Path:
        """The target and log directories of dbt."""
        return self.root / "dbt"

    @property
    def journal(self) -> Path:
        """What the demo remembers between runs (JSON)."""
        return self.root / "demo.json"

    @property
    def lock(self) -> Path:
        """Held for a whole demo run: one demo at a time per directory."""
        return self.root / "demo.lock"

    def made_by_the_demo(self) -> list[Path]:
        """Every file and directory the demo creates (what ``--reset`` removes)."""
        atlas, kimai = self.atlas, self.kimai
        return [
            self.journal,
            kimai,
            kimai.with_name(kimai.name + "-journal"),
            atlas,
            atlas.with_name(atlas.name + ".wal"),
            atlas.with_name(atlas.name + ".lock"),
            self.state,
            self.dbt,
        ]


@dataclass
class ReportTable:
    """One section of the report: a title and aligned rows."""

    title: str
    columns: tuple[Column, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    empty: str = "(none)"


@dataclass
class DemoResult:
    """What one demo run did and found."""

    paths: DemoPaths
    settings: Settings
    first_run: bool
    run_number: int
    scale: int
    seed: int = SEED
    generated: dict[str, int] = field(default_factory=dict)
    """Rows generated per Kimai table (first run)."""
    activity: list[str] = field(default_factory=list)
    """The simulated day in Kimai (later runs), one line per kind of change."""
    outcome: RunOutcome = field(default_factory=RunOutcome)
    report: list[ReportTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- settings and isolation ---------------------------------------------------------------------


def demo_settings(paths: DemoPaths) -> Settings:
    """The settings of a demo directory: SQLite Kimai, DuckDB Atlas DB, state inside it.

    Built from these values alone (no process environment, no ``.env``), so a production
    configuration in the environment can never leak into the demo.
    """
    return load_settings(
        {
            "KIMAI_DB_URL": f"sqlite:///{paths.kimai}",
            "ATLAS_DB_URL": f"duckdb:///{paths.atlas}",
            "ATLAS_SYNC_STATE_DIR": str(paths.state),
        }
    )


def _ignored_by_the_demo(name: str) -> bool:
    return name.startswith(("KIMAI_", "ATLAS_")) or name == "DBT_PROFILES_DIR"


@contextmanager
def _without_production_variables() -> Iterator[None]:
    """Hide the production variables from dbt while the demo runs.

    dbt's profile reads ATLAS_* with env_var(), and DBT_PROFILES_DIR would swap in a
    profile without the ``local`` target; the runner sets what dbt needs from the settings.
    """
    saved = {k: v for k, v in os.environ.items() if _ignored_by_the_demo(k)}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        for name in [k for k in os.environ if _ignored_by_the_demo(k)]:
            del os.environ[name]
        os.environ.update(saved)


def _utc_now() -> dt.datetime:
    """Now as naive UTC with whole seconds: how Kimai stores DATETIME."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def demo_anchor(now: dt.datetime) -> dt.datetime:
    """The generated data's "now": midnight UTC of `now`'s day (naive UTC).

    The same seed and scale then give the same data all day, not only within one minute.
    """
    return dt.datetime.combine(now.date(), dt.time())


def generate_demo_data(
    paths: DemoPaths,
    settings: Settings,
    scale: int,
    seed: int,
    anchor: dt.datetime,
    edge_cases: bool = False,
) -> dict[str, int]:
    """Write the demo's Kimai (SQLite) and Atlas overlays (DuckDB): a function of the inputs.

    Args:
        paths: The demo directory's files (neither database may exist yet).
        settings: The demo's settings (the overlay schema).
        scale: Timesheets to generate.
        seed: Seed of the Kimai generator and the overlays.
        anchor: The data's "now" (naive UTC); `demo_anchor` for the demo.
        edge_cases: Include the generators' test-only edge cases (tests turn them on).

    Returns:
        Rows generated per Kimai table.

    """
    import duckdb

    from pipelines.demo.atlas_overlays import create_atlas_overlays
    from pipelines.demo.kimai_data import build_kimai

    summary = build_kimai(
        f"sqlite:///{paths.kimai}", seed=seed, timesheets=scale, now=anchor, edge_cases=edge_cases
    )
    projects, customers = kimai_currencies(paths.kimai)
    conn = duckdb.connect(str(paths.atlas))
    try:
        create_atlas_overlays(
            conn, settings.overlay_schema, projects, customers, seed=seed, edge_cases=edge_cases
        )
    finally:
        conn.close()
    return summary.rows


# -- the demo run -------------------------------------------------------------------------------


def run_demo(
    directory: Path = DEFAULT_DIR,
    scale: int | None = None,
    reset: bool = False,
    say: Callable[[str], None] | None = None,
    seed: int | None = None,
    edge_cases: bool = False,
) -> DemoResult:
    """Run the demo in `directory`: create or change Kimai, sync, build, report.

    Args:
        directory: Where every file of the demo lives (created if missing).
        scale: Timesheets to generate on the first run (`DEFAULT_SCALE` when None;
            ignored once Kimai exists).
        reset: Delete what an earlier demo left in `directory` and start over.
        say: Called with one human line per step.
        seed: Seed of the data generated on the first run (`SEED` when None; ignored once
            Kimai exists).
        edge_cases: Generate the test-only edge cases too (first run; for tests).

    Returns:
        What was generated or simulated, the run's outcome and the report.

    Raises:
        PipelineError: As the scheduled job (a failing dbt test exits 1); `LockHeld` if
            another demo runs in the same directory.

    """
    say = say or (lambda _line: None)
    if scale is not None and scale < 100:
        raise ConfigError(f"--scale must be at least 100 timesheets, got {scale}")
    paths = DemoPaths(directory.expanduser().resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    ours = paths.lock.exists()  # every demo run starts by creating it
    with file_lock(paths.lock), _without_production_variables():
        journal = _read_journal(paths)
        if reset or journal is None:
            # nothing of ours yet, or a first run that never finished: start from scratch
            found = [p.name for p in paths.made_by_the_demo() if p.exists()]
            if found and not ours and not reset:
                raise ConfigError(
                    f"{paths.root} holds {', '.join(found)} not made by the demo;"
                    " choose another --dir (or --reset to replace them)"
                )
            _remove(paths.made_by_the_demo())
            journal = None
        now = _utc_now()
        settings = demo_settings(paths)
        if journal is None:
            scale = scale or DEFAULT_SCALE
            seed = SEED if seed is None else seed
            result = DemoResult(
                paths, settings, first_run=True, run_number=1, scale=scale, seed=seed
            )
            say(
                f"generating a Kimai database with {scale:,} timesheets in {paths.kimai}"
                f" and the Atlas overlay tables in {paths.atlas}"
            )
            anchor = demo_anchor(now)
            result.generated = generate_demo_data(
                paths, settings, scale, seed, anchor, edge_cases=edge_cases
            )
            journal = {
                "version": JOURNAL_VERSION,
                "seed": seed,
                "scale": scale,
                "anchor": anchor.isoformat(),
                "edge_cases": edge_cases,
                "created_at": now.isoformat(),
                "runs": 0,
            }
            _write_journal(paths, journal)
        else:
            run_number = int(journal.get("runs", 0)) + 1
            result = DemoResult(
                paths,
                settings,
                first_run=False,
                run_number=run_number,
                scale=journal["scale"],
                seed=int(journal.get("seed", SEED)),
            )
            for option, given, used in (
                ("--scale", scale, result.scale),
                ("--seed", seed, result.seed),
            ):
                if given is not None and given != used:
                    result.notes.append(
                        f"{option} {given} ignored: this directory's Kimai was generated with"
                        f" {option} {used} (--reset starts over)"
                    )
            # DuckDB lets one process open a file for writing: fail before changing Kimai
            # when another one (a `duckdb` shell) holds it
            replica = open_replica(settings)
            try:
                replica.check()
            finally:
                replica.close()
            say("simulating a day of activity in Kimai")
            rng = random.Random(f"demo:{result.seed}:{run_number}")
            result.activity = simulate_day(paths.kimai, now, rng)

        month = last_full_month(now.date())
        # the very same run as the scheduled job's, reconciliation included
        request = RunRequest(
            command="demo",
            trigger=TRIGGER,
            transform=True,
            options=SyncOptions(overlap_seconds=settings.overlap_seconds, reconcile=True),
            dbt_dir=paths.dbt,
        )
        say("syncing Kimai into Atlas DB, then dbt build (models and data tests)")
        result.outcome = execute(settings, request, say=say)
        previous = journal.get("hours_by_customer") if journal.get("month") == str(month) else None
        result.report, hours = build_report(paths.atlas, settings.analytics_schema, month, previous)
        journal.update(runs=result.run_number, month=str(month), hours_by_customer=hours)
        _write_journal(paths, journal)
    return result


def _read_journal(paths: DemoPaths) -> dict[str, Any] | None:
    try:
        journal = json.loads(paths.journal.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if journal.get("version") != JOURNAL_VERSION or not paths.kimai.is_file():
        return None
    return journal


def _write_journal(paths: DemoPaths, journal: dict[str, Any]) -> None:
    tmp = paths.journal.with_name(paths.journal.name + ".tmp")
    tmp.write_text(json.dumps(journal, indent=2, sort_keys=True) + "\n")
    tmp.replace(paths.journal)  # atomic: a killed run leaves the old journal or the new one


def _remove(items: Sequence[Path]) -> None:
    for item in items:
        if item.is_dir():
            shutil.rmtree(item)
        elif item.exists():
            item.unlink()


def kimai_currencies(kimai_file: Path) -> tuple[dict[int, str], dict[int, str]]:
    """Kimai project id → currency and customer id → currency (the overlays' inputs)."""
    engine = sa.create_engine(f"sqlite:///{kimai_file}", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            projects = conn.exec_driver_sql(
                "SELECT p.id, c.currency FROM kimai2_projects p"
                " JOIN kimai2_customers c ON c.id = p.customer_id"
            ).fetchall()
            customers = conn.exec_driver_sql("SELECT id, currency FROM kimai2_customers").fetchall()
    finally:
        engine.dispose()
    return {int(i): str(c) for i, c in projects}, {int(i): str(c) for i, c in customers}


# -- a day in Kimai -----------------------------------------------------------------------------


def last_full_month(today: dt.date) -> dt.date:
    """The first day of the calendar month before `today`'s."""
    first = today.replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)


def simulate_day(kimai_file: Path, now: dt.datetime, rng: random.Random) -> list[str]:
    """Change Kimai the way a day of use does, through Kimai's own write paths.

    People record today's work (one timer still running), stop timers, fill in forgotten
    hours of last month, correct and delete last month's entries, tag and untag records,
    and an invoice run flags last month's records of one customer as exported. That flag
    is a bulk UPDATE that does not touch ``modified_at``: only the reconciliation finds it.

    Args:
        kimai_file: The demo's Kimai database (SQLite).
        now: The moment of every change (naive UTC): Kimai's ``modified_at``.
        rng: Chooses who does what.

    Returns:
        One line per kind of change, for the report.

    """
    from pipelines.demo import kimai_actions as kimai
    from pipelines.demo.kimai_data import connect_engine

    month = last_full_month(now.date())
    month_end = (month + dt.timedelta(days=32)).replace(day=1)
    engine = connect_engine(f"sqlite:///{kimai_file}", poolclass=sa.pool.NullPool)
    done: list[str] = []
    try:
        # one transaction, like a day's worth of Kimai flushes that either all land or none
        with engine.begin() as conn:

            def rows(sql: str, **params: Any) -> list[Any]:
                return list(conn.execute(sa.text(sql), params).mappings())

            recent = rows(
                "SELECT user, project_id, activity_id, timezone, hourly_rate, fixed_rate"
                " FROM kimai2_timesheet WHERE end_time IS NOT NULL AND start_time >= :since"
                " ORDER BY id",
                since=str(now - dt.timedelta(days=120)),
            )
            last_month = rows(
                "SELECT t.id, t.end_time, c.id AS customer_id, t.exported"
                " FROM kimai2_timesheet t"
                " JOIN kimai2_projects p ON p.id = t.project_id"
                " JOIN kimai2_customers c ON c.id = p.customer_id"
                " WHERE t.date_tz >= :start AND t.date_tz < :end ORDER BY t.id",
                start=str(month),
                end=str(month_end),
            )
            running = rows("SELECT id, hourly_rate FROM kimai2_timesheet WHERE end_time IS NULL")
            tag_ids = [r["id"] for r in rows("SELECT id FROM kimai2_tags ORDER BY id")]
            if not recent:
                return done

            def record(
                template: Any, start: dt.datetime, end: dt.datetime | None, text: str
            ) -> int:
                return kimai.insert_timesheet(
                    conn,
                    user=template["user"],
                    project_id=template["project_id"],
                    activity_id=template["activity_id"],
                    start=start,
                    end=end,
                    now=now,
                    timezone=template["timezone"],
                    description=text,
                    hourly_rate=template["hourly_rate"],
                    fixed_rate=template["fixed_rate"],
                )

            # today's work, finished before now
            new_ids = []
            for _ in range(rng.randint(8, 14)):
                end = now - dt.timedelta(minutes=rng.randint(5, 240))
                start = end - dt.timedelta(minutes=rng.choice((30, 45, 60, 90, 120, 180, 240)))
                text = rng.choice(_WORK)
                new_ids.append(record(rng.choice(recent), start, end, text))
            started = now - dt.timedelta(minutes=rng.randint(10, 50))
            record(rng.choice(recent), started, None, "Working on it")
            done.append(f"{len(new_ids)} timesheets recorded today, 1 timer started")

            stopped = 0
            for timer in rng.sample(running, k=min(2, len(running))):
                rate = timer["hourly_rate"] if timer["hourly_rate"] is not None else 90.0
                stopped += kimai.stop_timer(conn, timer["id"], now=now, hourly_rate=rate)
            if stopped:
                done.append(f"{stopped} running timers stopped")

            # last month: forgotten hours filled in
            for _ in range(3):
                day = month + dt.timedelta(days=rng.randrange((month_end - month).days))
                start = dt.datetime.combine(day, dt.time(rng.randint(7, 13)))
                end = start + dt.timedelta(hours=rng.randint(2, 6))
                record(rng.choice(recent), start, end, "Forgotten hours, added late")
            done.append(f"3 forgotten timesheets of {month:%B %Y} added")

            finished = [r for r in last_month if r["end_time"] is not None]
            picked = rng.sample(finished, k=min(5, len(finished)))
            corrected, removed = picked[:3], picked[3:]
            for row in corrected:
                end = dt.datetime.fromisoformat(str(row["end_time"]))
                kimai.update_timesheet(
                    conn,
                    row["id"],
                    now=now,
                    end=end + dt.timedelta(minutes=rng.choice((30, 45, 60))),
                    description="Corrected: the meeting ran longer",
                )
            for row in removed:
                kimai.delete_timesheet(conn, row["id"])
            done.append(
                f"{len(corrected)} timesheets of {month:%B %Y} corrected (longer),"
                f" {len(removed)} deleted"
            )

            tagged = 0
            for timesheet_id in rng.sample(new_ids, k=min(3, len(new_ids))):
                tagged += kimai.add_tag(conn, timesheet_id, rng.choice(tag_ids), now=now)
            untagged = 0
            with_tags = rows(
                "SELECT timesheet_id, tag_id FROM kimai2_timesheet_tags"
                " WHERE timesheet_id IN (SELECT id FROM kimai2_timesheet"
                " WHERE date_tz >= :start AND date_tz < :end) ORDER BY 1, 2",
                start=str(month),
                end=str(month_end),
            )
            for pair in rng.sample(with_tags, k=min(1, len(with_tags))):
                untagged += kimai.remove_tag(conn, pair["timesheet_id"], pair["tag_id"], now=now)
            done.append(f"tags added to {tagged} timesheets, removed from {untagged}")

            # the invoice run: a bulk UPDATE that leaves modified_at alone
            gone = {r["id"] for r in removed}
            open_items = [r for r in finished if not r["exported"] and r["id"] not in gone]
            if open_items:
                customer = rng.choice(sorted({r["customer_id"] for r in open_items}))
                ids = [r["id"] for r in open_items if r["customer_id"] == customer]
                kimai.mark_exported(conn, ids)
                done.append(
                    f"{len(ids)} timesheets of {month:%B %Y} flagged as exported by an invoice"
                    " run (no modified_at change: found by the reconciliation)"
                )
    finally:
        engine.dispose()
    return done


_WORK = (
    "Client workshop",
    "Design review",
    "Site visit",
    "Drawings revised",
    "Coordination call",
    "Specification",
    "Planning application",
    "Tender documents",
)


# -- the report ---------------------------------------------------------------------------------


def build_report(
    atlas_file: Path,
    analytics_schema: str,
    month: dt.date,
    previous_hours: dict[str, float] | None = None,
) -> tuple[list[ReportTable], dict[str, float]]:
    """Read the BI views and lay out the manager's report.

    Args:
        atlas_file: The DuckDB file the demo built.
        analytics_schema: Schema of the ``vw_*`` views.
        month: First day of the month the monthly sections cover.
        previous_hours: Hours per customer of that month at the previous run, if any.

    Returns:
        The report's sections, and hours per customer (for the next run's comparison).

    """
    import duckdb

    s = analytics_schema
    month_end = (month + dt.timedelta(days=32)).replace(day=1)
    params = [month, month_end]
    in_month = "f.date_tz >= ? AND f.date_tz < ? AND NOT f.is_running"
    title = f"{month:%B %Y}"
    conn = duckdb.connect(str(atlas_file), read_only=True)
    try:
        customers = conn.execute(
            f"SELECT f.customer_name, f.currency, sum(f.duration_hours), sum(f.billable_hours),"
            f" sum(f.revenue), count(*) FROM {s}.vw_timesheet_facts f WHERE {in_month}"
            " GROUP BY ALL ORDER BY 3 DESC, 1",
            params,
        ).fetchall()
        users = conn.execute(
            f"SELECT f.user_name, sum(f.duration_hours), sum(f.billable_hours)"
            f" FROM {s}.vw_timesheet_facts f WHERE {in_month} GROUP BY ALL ORDER BY 2 DESC, 1",
            params,
        ).fetchall()
        tags = conn.execute(
            f"SELECT tag, sum(f.duration_hours), count(DISTINCT f.project_id)"
            f" FROM {s}.vw_timesheet_facts f JOIN {s}.vw_projects p USING (project_id),"
            f" unnest(p.project_tags_array) AS t(tag) WHERE {in_month}"
            " GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT 8",
            params,
        ).fetchall()
        lifetime = conn.execute(
            "SELECT project_name, currency, budget, budget_used, budget_burn_ratio,"
            " time_budget_seconds, time_budget_used_seconds, time_budget_burn_ratio"
            f" FROM {s}.vw_projects WHERE NOT is_monthly_budget"
            " AND (budget > 0 OR time_budget_seconds > 0)"
            " ORDER BY greatest(coalesce(budget_burn_ratio, 0),"
            " coalesce(time_budget_burn_ratio, 0)) DESC, project_name LIMIT 8"
        ).fetchall()
        monthly = conn.execute(
            "SELECT scope_name, currency, budget, budget_used, budget_burn_ratio,"
            " time_budget_seconds, time_budget_used_seconds, time_budget_burn_ratio"
            f" FROM {s}.vw_budget_months WHERE budget_scope = 'project'"
            " AND report_month_start_date = ?"
            " ORDER BY greatest(coalesce(budget_burn_ratio, 0),"
            " coalesce(time_budget_burn_ratio, 0)) DESC, scope_name LIMIT 5",
            [month],
        ).fetchall()
        prospects = conn.execute(
            "SELECT project_name, coalesce(customer_name, '-'), coalesce(currency, '-'),"
            " coalesce(status_name, '-'), project_tags, money_collected, money_collected_source"
            f" FROM {s}.vw_projects WHERE is_prospective ORDER BY project_name"
        ).fetchall()
    finally:
        conn.close()

    hours_now = {f"{name} ({cur})": float(h) for name, cur, h, *_ in customers}
    by_customer = ReportTable(
        f"Hours by customer, {title}",
        (
            text("customer"),
            number("hours"),
            number("billable hours"),
            number("revenue"),
            number("timesheets"),
        )
        + ((number("change"),) if previous_hours is not None else ()),
    )
    for name, currency, hours, billable, revenue, count in customers:
        row = (name, _hours(hours), _hours(billable), _money(revenue, currency), f"{count:,}")
        if previous_hours is not None:
            delta = float(hours) - previous_hours.get(f"{name} ({currency})", 0.0)
            row += (f"{delta:+.1f} h" if abs(delta) >= 0.05 else "",)
        by_customer.rows.append(row)
    if previous_hours is not None:
        for key in sorted(set(previous_hours) - set(hours_now)):
            by_customer.rows.append((key, "0.0", "0.0", "-", "0", f"{-previous_hours[key]:+.1f} h"))

    share = ReportTable(
        f"Billable share per user, {title}",
        (text("user"), number("hours"), number("billable hours"), number("billable share")),
    )
    for name, hours, billable in users:
        share.rows.append((name, _hours(hours), _hours(billable), _percent(billable, hours, 0)))

    top_tags = ReportTable(
        f"Top project tags by hours, {title}",
        (text("tag (Atlas taxonomy)"), number("hours"), number("projects")),
    )
    top_tags.rows = [(tag, _hours(h), f"{n:,}") for tag, h, n in tags]

    budgets = ReportTable(
        f"Project budgets as Kimai counts them (billable work only; monthly budgets: {title})",
        (
            text("project"),
            text("period"),
            number("money budget"),
            number("money used"),
            number("money %"),
            number("hours budget"),
            number("hours used"),
            number("hours %"),
        ),
    )
    for kind, rows in (("lifetime", lifetime), ("monthly", monthly)):
        for name, cur, budget, used, burn, t_budget, t_used, t_burn in rows:
            budgets.rows.append(
                (
                    name,
                    kind,
                    _money(budget, cur) if budget else "-",
                    _money(used, cur) if budget else "-",
                    _percent(burn, 1, 1) if budget else "-",
                    _hours(t_budget / 3600) if t_budget else "-",
                    _hours(t_used / 3600) if t_budget else "-",
                    _percent(t_burn, 1, 1) if t_budget else "-",
                )
            )

    prospective = ReportTable(
        "Prospective projects (in Atlas, not yet in Kimai)",
        (
            text("project"),
            text("customer"),
            text("status"),
            text("tags"),
            number("money collected"),
            text("from"),
        ),
    )
    for name, customer, cur, status, project_tags, money, source in prospects:
        collected = _money(money, cur if cur != "-" else None)
        prospective.rows.append((name, customer, status, project_tags or "-", collected, source))
    return [by_customer, share, top_tags, budgets, prospective], hours_now


def _hours(value: Decimal | float | None) -> str:
    return "-" if value is None else f"{float(value):,.1f}"


def _money(value: Decimal | float | None, currency: str | None) -> str:
    return "-" if value is None else format_money(value, currency)


def _percent(part: Decimal | float | None, whole: Decimal | float | None, digits: int) -> str:
    """``part / whole`` as a percentage (``-`` when either is missing or `whole` is 0)."""
    if part is None or not whole:
        return "-"
    return f"{100 * float(part) / float(whole):,.{digits}f} %"


# -- rendering ----------------------------------------------------------------------------------


def format_table(table: ReportTable) -> str:
    """A report section as text: title, then the table (`pipelines.tables`)."""
    lines = [table.title, ""]
    if not table.rows:
        return "\n".join([*lines, f"  {table.empty}"])
    return "\n".join([*lines, render_table(table.columns, table.rows, indent="  ")])


def generated_counts(generated: dict[str, int]) -> str:
    """``20 customers, 1 project, 5,000 timesheets``: generated rows per table, in words."""
    parts = []
    for table, count in generated.items():
        singular, plural = KIMAI_TABLE_WORDS.get(table, (table, table))
        parts.append(f"{count:,} {singular if count == 1 else plural}")
    return ", ".join(parts)


def render(result: DemoResult) -> str:
    """The demo's whole output: what happened, the sync, the report, and what to do next."""
    from pipelines.report import summary_table

    paths, out = result.paths, []
    if result.first_run:
        counts = generated_counts(result.generated)
        out += [f"Generated a Kimai database ({paths.kimai}, seed {result.seed}): {counts}."]
        out += [f"Created the Atlas overlay tables in {paths.atlas}.", ""]
    else:
        out += [f"Run {result.run_number}: a day of activity in Kimai ({paths.kimai}):"]
        out += [f"  - {line}" for line in result.activity] + [""]
    out += result.notes
    sync, transform = result.outcome.sync, result.outcome.transform
    if sync is not None:
        out += ["Sync into Atlas DB (inserted / updated / deleted per replica table):", ""]
        out += [summary_table(sync.tables, indent="  ")]
        out += ["", f"sync finished in {sync.seconds:.1f} s"]
    if transform is not None:
        warned = f", {len(transform.warned)} warnings" if transform.warned else ""
        out += [f"dbt build passed: {transform.passed} models and data tests ok{warned}", ""]
    for table in result.report:
        out += [format_table(table), ""]
    out += next_steps(result)
    return "\n".join(out)


def next_steps(result: DemoResult) -> list[str]:
    """How to look at the results, and how to point the product at real databases."""
    paths, s = result.paths, result.settings.analytics_schema
    atlas, kimai = paths.atlas, paths.kimai
    # in an activated venv `python` is this interpreter; otherwise (scripts/demo) name it
    py = "python" if os.environ.get("VIRTUAL_ENV") else sys.executable
    # the duckdb module of this venv: a `duckdb` command is not part of the install
    query = (
        f"import duckdb; print(duckdb.connect('{atlas}', read_only=True)"
        f".sql('select * from {s}.vw_customers'))"
    )
    return [
        "Explore the results (views vw_timesheet_facts, vw_projects, vw_customers, the tag",
        "bridges vw_timesheet_tags and vw_project_tags, vw_sync_health",
        f"in schema {s}; replica tables in {result.settings.replica_schema}):",
        f'  {py} -c "{query}"',
        f"  KIMAI_DB_URL=sqlite:///{kimai} ATLAS_DB_URL=duckdb:///{atlas} \\",
        f"    {py} -m pipelines.run status",
        "Run dbt yourself on the demo (any dbt command; e.g. after adding a mart):",
        f"  {py} -m pipelines.run dbt --demo {paths.root} build --select vw_customers+",
        "Run the demo again to simulate a day of Kimai activity and watch it flow through;",
        "`--reset` starts over.",
        "",
        "Point the same product at a real Kimai (MariaDB/MySQL) and Atlas DB (PostgreSQL):",
        "  export KIMAI_DB_HOST=kimai-db.internal KIMAI_DB_USER=atlas_ro KIMAI_DB_PASSWORD=...",
        "  export ATLAS_DB_HOST=atlas-db.internal ATLAS_DB_USER=postgres ATLAS_DB_PASSWORD=...",
        f"  {py} -m pipelines.run          # sync every table, then dbt build",
        "(all variables: docs/configuration.md)",
    ]
