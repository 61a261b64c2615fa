"""The service's health page: one server-rendered screen, nothing fetched from elsewhere.

Per table the lag, replica against Kimai rows and the last reconcile; the last runs'
durations as an inline SVG chart; the dbt build BI reads and the last failure; and a
"Sync now" button. This module turns a `Status` into plain values; the markup is the
template ``templates/health.html.j2``, rendered by Jinja2 with autoescaping on, so every
text from the database is escaped by the template engine, none by hand.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from pipelines.record.status import BuildHealth, Status, TableHealth, ago, follower_line

_COLOURS = {
    "success": "#2e7d32",
    "failed": "#c62828",
    "crashed": "#ef6c00",
    "running": "#1565c0",
}
CHART_WIDTH = 760
CHART_HEIGHT = 140

_TEMPLATES = Environment(
    loader=PackageLoader("pipelines.serve", "templates"),
    # on for every template whatever its name: no value is ever written unescaped
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: dt.datetime | None) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _duration(run: dict[str, Any], now: dt.datetime) -> float:
    """Wall time of a run; a running one so far, a crashed one as far as it is known."""
    start, end = run.get("started_at"), run.get("finished_at")
    if start is None:
        return 0.0
    if end is None:
        end = now if run.get("status") == "running" else start
    return max((end - start).total_seconds(), 0.0)


@dataclass(frozen=True)
class Bar:
    """One run in the chart: its bar's place and size, colour and tooltip."""

    x: str
    y: str
    width: str
    height: str
    colour: str
    label: str


@dataclass(frozen=True)
class Chart:
    """The runs' durations as bars, oldest on the left (no bars: no runs yet)."""

    top: str
    """The longest duration, which the full height stands for."""
    bars: list[Bar] = field(default_factory=list)
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    baseline: int = CHART_HEIGHT - 20


def runs_chart(runs: list[dict[str, Any]], now: dt.datetime) -> Chart:
    """The runs' durations as bars, oldest on the left, coloured by outcome.

    Args:
        runs: Audit rows, newest first (as `collect` returns them).
        now: For the duration of a run still going.

    """
    ordered = list(reversed(runs))
    durations = [_duration(r, now) for r in ordered]
    top = max([*durations, 1.0])
    step = CHART_WIDTH / max(len(ordered), 1)
    width = min(max(step * 0.8, 1.0), 24.0)  # a few runs: narrow bars, not slabs
    plot = CHART_HEIGHT - 20
    bars = []
    for i, (run, seconds) in enumerate(zip(ordered, durations, strict=True)):
        height = max(plot * seconds / top, 1.0)
        bars.append(
            Bar(
                x=f"{i * step + (step - width) / 2:.1f}",
                y=f"{plot - height:.1f}",
                width=f"{width:.1f}",
                height=f"{height:.1f}",
                colour=_COLOURS.get(str(run.get("status")), "#757575"),
                label=f"{_when(run.get('started_at'))} {run.get('command')}"
                f" {run.get('trigger')} {run.get('status')} {seconds:.1f} s",
            )
        )
    return Chart(top=f"{top:.1f} s", bars=bars, baseline=plot)


def _table_row(t: TableHealth, stale: list[str]) -> dict[str, Any]:
    if t.last_reconciled_at is None:
        reconcile = "never"
    else:
        reconcile = (
            f"{_when(t.last_reconciled_at)}: {_count(t.differences_found)} found,"
            f" {_count(t.differences_unrepaired)} unrepaired"
        )
    return {
        "name": t.table_name,
        "stale": t.table_name in stale,
        "lag": ago(t.lag_seconds),
        "replica_rows": _count(t.replica_rows),
        "kimai_rows": _count(t.kimai_rows),
        "differ": t.replica_rows is not None
        and t.kimai_rows is not None
        and t.replica_rows != t.kimai_rows,
        "reconcile": reconcile,
    }


def _build(b: BuildHealth) -> dict[str, Any]:
    if b.served_published_at is None:
        served = "BI reads no published build yet."
    elif b.built_at is not None:
        served = (
            f"BI reads the build published {_when(b.built_at)}, confirmed current"
            f" {_when(b.served_published_at)} by run {b.served_run_id} (nothing it reads changed)."
        )
    else:
        served = (
            f"BI reads the build published {_when(b.served_published_at)} (run {b.served_run_id})."
        )
    return {
        "served": served,
        "failed": b.last_status in {"failed", "crashed"},
        "last_status": b.last_status,
        "last_ended": _when(b.last_ended_at),
        "failures": b.last_failures or "(no message)",
    }


def _recent_row(r: dict[str, Any], now: dt.datetime) -> dict[str, str]:
    return {
        "run_id": str(r["run_id"]),
        "started": _when(r.get("started_at")),
        "command": str(r["command"]),
        "trigger": str(r["trigger"]),
        "started_by": str(r["started_by"]),
        "status": str(r["status"]),
        "took": f"{_duration(r, now):.1f} s",
        "error": str(r.get("error") or ""),
    }


def render(status: Status, token_name: str, can_execute: bool, nonce: str) -> str:
    """The whole page.

    Args:
        status: What `collect` read (with the last runs to chart).
        token_name: Who is looking (shown, so a wrong login is noticed).
        can_execute: Whether the token may start runs; the button is disabled otherwise.
        nonce: The Content-Security-Policy nonce of the inline style and script.

    """
    issues = status.data_issues or {}
    return _TEMPLATES.get_template("health.html.j2").render(
        nonce=nonce,
        now=_when(status.now),
        token_name=token_name,
        can_execute=can_execute,
        stale=status.stale,
        data_issues=", ".join(f"{t} {n}" for t, n in issues.items()),
        tables=[_table_row(t, status.stale) for t in status.tables],
        chart=runs_chart(status.runs, status.now),
        build=_build(status.build),
        follower=(
            {"line": follower_line(status.follower), "bad": status.follower.status != "ok"}
            if status.follower is not None
            else None
        ),
        recent=[_recent_row(r, status.now) for r in status.runs[:10]],
    )
