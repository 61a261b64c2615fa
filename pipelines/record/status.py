"""Freshness and completeness from the run audit, for ``status``, the metrics and the service."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.adapters.layout import quote_ansi
from pipelines.adapters.replica import Replica, open_replica
from pipelines.config import Settings
from pipelines.record import follower
from pipelines.record.audit import RUNS, TABLE_RUNS, last_build, last_published_at
from pipelines.registry import TABLES
from pipelines.tables import number, render_table, text


@dataclass
class TableHealth:
    """Health of one replicated table, as the last runs recorded it."""

    table_name: str
    last_synced_at: dt.datetime | None = None
    lag_seconds: float | None = None
    newest_modified_at: dt.datetime | None = None
    replica_rows: int | None = None
    kimai_rows: int | None = None
    last_reconciled_at: dt.datetime | None = None
    differences_found: int | None = None
    differences_unrepaired: int | None = None


@dataclass
class BuildHealth:
    """Which dbt build BI reads, and how the last build ended."""

    served_published_at: dt.datetime | None = None
    """When the build BI reads was published, or last confirmed current (`built_at`)."""
    served_run_id: str | None = None
    built_at: dt.datetime | None = None
    """When the build BI reads was published, if a later run found it current (unchanged)."""
    last_status: str | None = None
    """published, unchanged, failed or crashed (the last build that ended)."""
    last_ended_at: dt.datetime | None = None
    last_failures: str | None = None


@dataclass
class FollowerHealth:
    """The follower's heartbeat (`pipelines.record.follower`), when one has run."""

    status: str
    """ok, waiting, failed or stopped: the newest tick's outcome."""
    last_tick_at: dt.datetime
    caught_up_at: dt.datetime | None
    """Start of the newest good tick: the replica holds Kimai as of then."""
    lag_seconds: float | None
    error: str | None = None


@dataclass
class Status:
    """What `status` reports."""

    now: dt.datetime
    runs: list[dict[str, Any]] = field(default_factory=list)
    tables: list[TableHealth] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    upserts_total: dict[str, int] = field(default_factory=dict)
    errors_total: int = 0
    build: BuildHealth = field(default_factory=BuildHealth)
    data_issues: dict[str, int] | None = None
    """Rows of vw_data_issues per table (None: the view is not built yet)."""
    warnings: list[str] = field(default_factory=list)
    """Settings to review (a remote database reached without a TLS mode)."""
    follower: FollowerHealth | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO strings)."""

        def conv(v: Any) -> Any:
            return v.isoformat() if isinstance(v, dt.datetime) else v

        return {
            "now": conv(self.now),
            "stale_tables": self.stale,
            "warnings": self.warnings,
            "bi_build": {k: conv(v) for k, v in asdict(self.build).items()},
            "tables": [{k: conv(v) for k, v in asdict(t).items()} for t in self.tables],
            "runs": [{k: conv(v) for k, v in r.items()} for r in self.runs],
            "upserts_total": self.upserts_total,
            "errors_total": self.errors_total,
            "data_issues": self.data_issues,
            "follower": (
                {k: conv(v) for k, v in asdict(self.follower).items()} if self.follower else None
            ),
        }


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def collect(settings: Settings, last_runs: int = 10, max_lag_seconds: float = 3600) -> Status:
    """Read the audit tables (and live replica counts) into a `Status`."""
    replica = open_replica(settings)
    try:
        status = _collect(replica, last_runs, max_lag_seconds)
        status.data_issues = data_issue_counts(replica, settings.analytics_schema)
    finally:
        replica.close()
    status.warnings = settings.tls_warnings()
    return status


def _collect(replica: Replica, last_runs: int, max_lag_seconds: float) -> Status:
    now = dt.datetime.now(dt.UTC)
    status = Status(now=now)
    if not replica.exists(RUNS):
        status.stale = [t.name for t in TABLES]
        status.tables = [TableHealth(t.name) for t in TABLES]
        return status
    runs, table_runs = replica.qualified(RUNS), replica.qualified(TABLE_RUNS)
    cols = ["run_id", "command", "trigger", "started_by", "host", "started_at", "finished_at"]
    cols += ["status", "exit_code", "error"]
    rows = replica.query(
        f"SELECT {', '.join(cols)} FROM {runs} ORDER BY started_at DESC LIMIT {int(last_runs)}"
    )
    status.runs = [dict(zip(cols, r, strict=True)) for r in rows]
    status.errors_total = int(
        replica.query(f"SELECT count(*) FROM {runs} WHERE status IN ('failed', 'crashed')")[0][0]
    )
    for name, upserts in replica.query(
        f"SELECT table_name, coalesce(sum(inserted + updated), 0) FROM {table_runs}"
        " GROUP BY table_name"
    ):
        status.upserts_total[name] = int(upserts)
    status.build = _build_health(replica, runs)
    beat = follower.read(replica)
    if beat is not None:
        status.follower = FollowerHealth(
            beat.status, beat.last_tick_at, beat.caught_up_at, beat.lag_seconds(now), beat.error
        )
    for spec in TABLES:
        health = TableHealth(spec.name)
        last = replica.query(
            f"SELECT recorded_at, kimai_rows, cursor_after FROM {table_runs}"
            " WHERE table_name = %s ORDER BY recorded_at DESC LIMIT 1",
            (spec.name,),
        )
        if last:
            health.last_synced_at = _utc(last[0][0])
            health.kimai_rows = last[0][1]
            health.newest_modified_at = _utc(last[0][2])
        # the follower's quiet ticks prove every table current without recording a result
        caught_up = beat.caught_up_at if beat is not None else None
        if caught_up is not None and (health.last_synced_at or caught_up) <= caught_up:
            health.last_synced_at = caught_up
        if health.last_synced_at is not None:
            health.lag_seconds = (now - health.last_synced_at).total_seconds()
        rec = replica.query(
            f"SELECT recorded_at, differences_found, differences_unrepaired FROM {table_runs}"
            " WHERE table_name = %s AND reconciled ORDER BY recorded_at DESC LIMIT 1",
            (spec.name,),
        )
        if rec:
            health.last_reconciled_at = _utc(rec[0][0])
            health.differences_found, health.differences_unrepaired = rec[0][1], rec[0][2]
        if replica.exists(spec.replica_table):
            health.replica_rows = int(
                replica.query(f"SELECT count(*) FROM {replica.qualified(spec.replica_table)}")[0][0]
            )
        if health.lag_seconds is None or health.lag_seconds > max_lag_seconds:
            status.stale.append(spec.name)
        status.tables.append(health)
    return status


def data_issue_counts(replica: Replica, analytics_schema: str) -> dict[str, int] | None:
    """Rows of the served vw_data_issues per table; None when it is not built yet."""
    found = replica.query(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = %s AND table_name = 'vw_data_issues'",
        (analytics_schema,),
    )
    if not found[0][0]:
        return None
    view = f"{quote_ansi(analytics_schema)}.vw_data_issues"
    rows = replica.query(f"SELECT table_name, count(*) FROM {view} GROUP BY table_name")
    return {str(name): int(n) for name, n in sorted(rows)}


def _build_health(replica: Replica, runs: str) -> BuildHealth:
    health = BuildHealth()
    served = replica.query(
        f"SELECT published_at, run_id, build_status FROM {runs} WHERE published_at IS NOT NULL"
        " ORDER BY published_at DESC LIMIT 1"
    )
    if served:
        health.served_published_at, health.served_run_id = _utc(served[0][0]), served[0][1]
        if served[0][2] == "unchanged":
            health.built_at = _utc(last_published_at(replica, runs))
    last = last_build(replica, runs)
    if last is not None:
        health.last_status, health.last_failures = last.status, last.failures
        health.last_ended_at = _utc(last.ended_at)
    return health


def ago(seconds: float | None) -> str:
    """An age for people: ``45 s ago``, ``12 min ago``, ``3.5 h ago`` or ``never``."""
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def when(value: dt.datetime | None) -> str:
    """An instant as the report prints it (UTC), or ``-``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def render(status: Status) -> str:
    """Human-readable status report."""
    lines = [f"WARNING: {w}" for w in status.warnings]
    lines += [""] if lines else []
    lines += ["Tables", ""]
    columns = (
        text("table"),
        text("last sync"),
        number("replica rows"),
        number("kimai rows"),
        text("newest modified_at (UTC)"),
        text("last reconcile (UTC)"),
        number("unrepaired"),
    )
    body = [
        (
            t.table_name,
            ago(t.lag_seconds),
            "-" if t.replica_rows is None else f"{t.replica_rows:,}",
            "-" if t.kimai_rows is None else f"{t.kimai_rows:,}",
            when(t.newest_modified_at),
            when(t.last_reconciled_at),
            "-" if t.differences_unrepaired is None else str(t.differences_unrepaired),
        )
        for t in status.tables
    ]
    lines.append(render_table(columns, body))
    lines += ["", "BI build", "", *_build_lines(status.build)]
    if status.follower is not None:
        lines += ["", follower_line(status.follower)]
    lines += ["", "Last runs", ""]
    runs = []
    for r in status.runs:
        took = "-"
        if r["finished_at"] and r["started_at"]:
            took = f"{(r['finished_at'] - r['started_at']).total_seconds():,.1f}"
        runs.append(
            (
                when(_utc(r["started_at"])),
                r["command"],
                r["trigger"],
                r["status"],
                took,
                r["error"] or "",
            )
        )
    if runs:
        run_columns = (
            text("started (UTC)"),
            text("command"),
            text("trigger"),
            text("status"),
            number("seconds"),
            text("error"),
        )
        lines.append(render_table(run_columns, runs))
    else:
        lines.append("no runs recorded yet")
    if status.data_issues:
        counts = ", ".join(f"{t} {n}" for t, n in status.data_issues.items())
        lines += ["", f"DATA ISSUES in Kimai (vw_data_issues): {counts}"]
    if status.stale:
        lines += ["", f"STALE: {', '.join(status.stale)}"]
    return "\n".join(lines)


def _build_lines(b: BuildHealth) -> list[str]:
    if b.served_published_at is None:
        lines = ["BI reads no published build yet"]
    elif b.built_at is not None:
        lines = [
            f"BI reads the build published {when(b.built_at)} UTC, confirmed current"
            f" {when(b.served_published_at)} UTC (nothing it reads changed since)"
        ]
    else:
        lines = [f"BI reads the build published {when(b.served_published_at)} UTC"]
    if b.last_status in {"failed", "crashed"}:
        why = f": {b.last_failures}" if b.last_failures else ""
        lines.append(f"the last build {b.last_status} at {when(b.last_ended_at)} UTC{why}")
    return lines


def follower_line(f: FollowerHealth) -> str:
    """The follower's state in one line: its newest tick's outcome, and its lag."""
    caught_up = "never" if f.caught_up_at is None else f"{when(f.caught_up_at)} UTC"
    error = f": {f.error}" if f.error else ""
    lag = "-" if f.lag_seconds is None else f"{f.lag_seconds:,.0f} s"
    return f"Follower: {f.status}{error}; caught up with Kimai {caught_up} (lag {lag})"


_RUN_COLUMNS = (
    "run_id",
    "command",
    "trigger",
    "started_by",
    "host",
    "pid",
    "started_at",
    "finished_at",
    "status",
    "exit_code",
    "error",
    "build_status",
    "build_failures",
    "published_at",
    "options",
)
_TABLE_COLUMNS = (
    "table_name",
    "kimai_rows",
    "replica_rows_before",
    "replica_rows_after",
    "rows_read",
    "inserted",
    "updated",
    "deleted",
    "seconds",
    "reconciled",
    "differences_found",
    "differences_unrepaired",
)


def run_detail(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """One run's audit record with its per-table counts, JSON-ready; None if unknown."""
    replica = open_replica(settings)
    try:
        if not replica.exists(RUNS):
            return None
        rows = replica.query(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM {replica.qualified(RUNS)} WHERE run_id = %s",
            (run_id,),
        )
        if not rows:
            return None
        run = dict(zip(_RUN_COLUMNS, rows[0], strict=True))
        if run["options"]:
            run["options"] = json.loads(run["options"])
        tables = replica.query(
            f"SELECT {', '.join(_TABLE_COLUMNS)} FROM {replica.qualified(TABLE_RUNS)}"
            " WHERE run_id = %s ORDER BY table_name",
            (run_id,),
        )
        run["tables"] = [dict(zip(_TABLE_COLUMNS, t, strict=True)) for t in tables]
        return run
    finally:
        replica.close()
