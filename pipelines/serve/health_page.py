"""The service's health page: one server-rendered screen, nothing fetched from elsewhere.

Per table the lag, replica against Kimai rows and the last reconcile; the last runs'
durations as an inline SVG chart; the dbt build BI reads and the last failure; and a
"Sync now" button. Every text from the database goes through `html.escape`.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from pipelines.status import Status, ago

_COLOURS = {
    "success": "#2e7d32",
    "failed": "#c62828",
    "crashed": "#ef6c00",
    "running": "#1565c0",
}
CHART_WIDTH = 760
CHART_HEIGHT = 140


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


def runs_chart(runs: list[dict[str, Any]], now: dt.datetime) -> str:
    """The runs' durations as bars, oldest on the left, coloured by outcome.

    Args:
        runs: Audit rows, newest first (as `collect` returns them).
        now: For the duration of a run still going.

    """
    ordered = list(reversed(runs))
    if not ordered:
        return '<p id="runs-chart-empty">No runs recorded yet.</p>'
    durations = [_duration(r, now) for r in ordered]
    top = max(max(durations), 1.0)
    step = CHART_WIDTH / max(len(ordered), 1)
    bar = min(max(step * 0.8, 1.0), 24.0)  # a few runs: narrow bars, not slabs
    plot = CHART_HEIGHT - 20
    parts = [
        f'<svg id="runs-chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}"'
        f' height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img"'
        f' aria-label="Durations of the last {len(ordered)} runs">',
        f'<line x1="0" y1="{plot}" x2="{CHART_WIDTH}" y2="{plot}" stroke="#999"/>',
        f'<text x="2" y="12" font-size="11" fill="#555">{top:.1f} s</text>',
    ]
    for i, (run, seconds) in enumerate(zip(ordered, durations, strict=True)):
        height = max(plot * seconds / top, 1.0)
        colour = _COLOURS.get(str(run.get("status")), "#757575")
        label = (
            f"{_when(run.get('started_at'))} {run.get('command')} {run.get('trigger')}"
            f" {run.get('status')} {seconds:.1f} s"
        )
        parts.append(
            f'<rect class="run" x="{i * step + (step - bar) / 2:.1f}" y="{plot - height:.1f}"'
            f' width="{bar:.1f}" height="{height:.1f}" fill="{colour}">'
            f"<title>{escape(label)}</title></rect>"
        )
    parts.append(
        f'<text x="2" y="{CHART_HEIGHT - 4}" font-size="11" fill="#555">oldest</text>'
        f'<text x="{CHART_WIDTH - 2}" y="{CHART_HEIGHT - 4}" font-size="11" fill="#555"'
        ' text-anchor="end">newest</text></svg>'
    )
    return "".join(parts)


def _tables(status: Status) -> str:
    rows = []
    for t in status.tables:
        stale = " stale" if t.table_name in status.stale else ""
        differ = (
            t.replica_rows is not None
            and t.kimai_rows is not None
            and t.replica_rows != t.kimai_rows
        )
        if t.last_reconciled_at is None:
            reconcile = "never"
        else:
            reconcile = (
                f"{_when(t.last_reconciled_at)}: {_count(t.differences_found)} found,"
                f" {_count(t.differences_unrepaired)} unrepaired"
            )
        rows.append(
            f'<tr class="table{stale}" data-table="{escape(t.table_name)}">'
            f"<td>{escape(t.table_name)}</td><td>{escape(ago(t.lag_seconds))}</td>"
            f'<td class="num{" differ" if differ else ""}">{_count(t.replica_rows)}</td>'
            f'<td class="num">{_count(t.kimai_rows)}</td><td>{escape(reconcile)}</td></tr>'
        )
    return (
        '<table id="tables"><thead><tr><th>table</th><th>last sync</th><th>replica rows</th>'
        "<th>Kimai rows (last sync)</th><th>last reconcile: differences</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _build(status: Status) -> str:
    b = status.build
    if b.served_published_at is None:
        served = "BI reads no published build yet."
    else:
        served = (
            f"BI reads the build published {_when(b.served_published_at)} (run {b.served_run_id})."
        )
    lines = [f'<p id="served-build">{escape(served)}</p>']
    if b.last_status in {"failed", "crashed"}:
        lines.append(
            f'<p id="last-failure" class="bad">The last build {escape(b.last_status)}'
            f" at {escape(_when(b.last_ended_at))}:</p>"
            f"<pre>{escape(b.last_failures or '(no message)')}</pre>"
        )
    else:
        lines.append('<p id="last-failure">No failed build since the one BI reads.</p>')
    return "".join(lines)


def _recent(status: Status, count: int = 10) -> str:
    rows = []
    for r in status.runs[:count]:
        seconds = _duration(r, status.now)
        rows.append(
            f'<tr class="run-row" data-run-id="{escape(str(r["run_id"]))}">'
            f"<td><code>{escape(str(r['run_id']))}</code></td>"
            f"<td>{escape(_when(r.get('started_at')))}</td><td>{escape(str(r['command']))}</td>"
            f"<td>{escape(str(r['trigger']))}</td><td>{escape(str(r['started_by']))}</td>"
            f'<td class="status-{escape(str(r["status"]))}">{escape(str(r["status"]))}</td>'
            f'<td class="num">{seconds:.1f} s</td>'
            f"<td>{escape(str(r.get('error') or ''))}</td></tr>"
        )
    return (
        '<table id="runs"><thead><tr><th>run</th><th>started</th><th>command</th>'
        "<th>trigger</th><th>by</th><th>status</th><th>took</th><th>error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .4em; } h2 { font-size: 1.05em; margin: 1em 0 .3em; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; }
th { border-bottom: 1px solid #999; } .num { text-align: right; }
tr.stale td:first-child::after { content: " (stale)"; color: #c62828; }
.differ, .bad, .status-failed, .status-crashed { color: #c62828; }
.status-success { color: #2e7d32; } code { font-size: 12px; }
pre { white-space: pre-wrap; background: #fbe9e7; padding: 4px; max-height: 6em; overflow: auto; }
#sync { margin: .6em 0; } #sync-result { margin-left: .6em; }
"""

# posts with the page's own credentials (the browser's Basic login); the API checks the scope
_SCRIPT = """
const button = document.getElementById("sync-now");
const result = document.getElementById("sync-result");
button.addEventListener("click", async () => {
  button.disabled = true;
  result.textContent = "starting…";
  try {
    const answer = await fetch(new URL("/sync", location.origin), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: "{}",
    });
    const body = await answer.json().catch(() => ({}));
    if (answer.status === 202) {
      result.textContent = "run " + body.run_id + " started";
      setTimeout(() => location.reload(), 1500);
    } else {
      result.textContent = "HTTP " + answer.status + ": " + (body.detail || "");
      button.disabled = false;
    }
  } catch (error) {
    result.textContent = String(error);
    button.disabled = false;
  }
});
"""


def render(status: Status, token_name: str, can_execute: bool, nonce: str) -> str:
    """The whole page.

    Args:
        status: What `collect` read (with the last runs to chart).
        token_name: Who is looking (shown, so a wrong login is noticed).
        can_execute: Whether the token may start runs; the button is disabled otherwise.
        nonce: The Content-Security-Policy nonce of the inline style and script.

    """
    if can_execute:
        button = '<button id="sync-now" type="button">Sync now</button>'
    else:
        button = (
            '<button id="sync-now" type="button" disabled'
            ' title="this token lacks the sync:execute scope">Sync now</button>'
        )
    stale = f'<p class="bad">STALE: {escape(", ".join(status.stale))}</p>' if status.stale else ""
    if status.data_issues:
        counts = ", ".join(f"{t} {n}" for t, n in status.data_issues.items())
        stale += (
            f'<p class="bad" id="data-issues">Data issues in Kimai: {escape(counts)}'
            " (rows listed in vw_data_issues; the views count them as Kimai does)</p>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Kimai → Atlas DB sync</title>"
        f'<style nonce="{nonce}">{_STYLE}</style></head><body>'
        f"<h1>Kimai → Atlas DB sync</h1><p>{escape(_when(status.now))}, signed in as"
        f" <b>{escape(token_name)}</b></p>{stale}"
        f'<div id="sync">{button}<span id="sync-result"></span></div>'
        f"<h2>Tables</h2>{_tables(status)}"
        f"<h2>Last {len(status.runs)} runs</h2>{runs_chart(status.runs, status.now)}"
        f"<h2>BI build</h2>{_build(status)}"
        f"<h2>Recent runs</h2>{_recent(status)}"
        f'<script nonce="{nonce}">{_SCRIPT}</script></body></html>'
    )
