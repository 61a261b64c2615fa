"""Constants and small helpers shared by the benchmark's modules."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
REPLICA = "kimai_replica"
TS = "kimai2_timesheet"
TAGS = "kimai2_timesheet_tags"
CONTRACT_PREFIXES = ("KIMAI_", "ATLAS_", "DBT_")
USER_PREFIX = "kb_"
PRODUCT = [sys.executable, "-m", "pipelines.run"]

# the viewer of Kimai's screens the views are built for (ATLAS_REPORT_TIMEZONE)
REPORT_ZONE = "Europe/Berlin"
# Metabase-style questions timed on the views after the view-mode build (fv)
_THIS_MONTH = f"date_trunc('month', now() AT TIME ZONE '{REPORT_ZONE}')::date"
_LAST_MONTH = "(date_trunc('month', current_date) - interval '1 month')::date"
BI_QUESTIONS = {
    # every monthly budget in this month of the report zone, most used first
    "qb": "SELECT budget_scope, scope_id, scope_name, currency, budget, budget_used,"
    " budget_burn_ratio, time_budget_seconds, time_budget_used_seconds,"
    " time_budget_burn_ratio FROM analytics.vw_budget_months"
    f" WHERE report_month_start_date = {_THIS_MONTH}"
    " ORDER BY budget_burn_ratio DESC NULLS LAST",
    # utilization per user over the last full month
    "qu": "SELECT u.user_name, sum(d.expected_seconds), sum(d.duration_seconds),"
    " sum(d.billable_seconds),"
    " sum(d.billable_seconds)::numeric / nullif(sum(d.expected_seconds), 0)"
    " FROM analytics.vw_user_days d JOIN analytics.vw_users u USING (user_id)"
    f" WHERE d.date_tz >= {_LAST_MONTH} AND d.date_tz < date_trunc('month', current_date)::date"
    " GROUP BY 1 ORDER BY 5 DESC NULLS LAST",
}

# base sizes of the changes (issue 7); scaled down below 1M timesheets (smoke runs)
BASE_CHANGES = {"updates": 10_000, "inserts": 1_000, "deletes": 1_000, "silent": 1_000}
FACTS_CHANGES = 10_000

TARGETS = {
    "b": "≤ 1.0× the raw pipe (a), same round",
    "rss": "≤ 300 MiB, every product run",
    "c": "≤ 3 s",
    "d": "≤ 5 s",
    "e0": "≤ 10 s and ≤ 1 % of the table's bytes read from Kimai",
    "fi": "≤ 5 s",
    "qb": "≤ 1 s",
    "qu": "≤ 1 s",
}


def log(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {msg}", file=sys.stderr, flush=True)


def rotate(items: Sequence[str], n: int) -> list[str]:
    k = n % len(items)
    return list(items[k:]) + list(items[:k])


def chunked(values: Sequence[int], size: int = 5000) -> Iterator[Sequence[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def id_list(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


def log_events(lines: Iterable[str], start: float = 0.0) -> list[tuple[float, str]]:
    """(seconds since `start`, message) of each of the product's JSON log lines."""
    events = []
    for line in lines:
        try:
            rec = json.loads(line)
            ts = dt.datetime.fromisoformat(rec["ts"]).timestamp()
            events.append((round(ts - start, 3), rec["msg"][:160]))
        except (ValueError, KeyError, TypeError):
            continue
    return events
