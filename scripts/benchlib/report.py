"""Renders the Markdown report from the JSON a run saved."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from typing import Any

from benchlib.common import MIB, TARGETS, TS

# -- report ----------------------------------------------------------------------------------------

TITLES = {
    "a": "(a) raw pipe `mariadb --batch --quick \\| psql \\copy`, timesheets",
    "a7": "(a7) raw pipe, every replicated table (what (b) moves; info)",
    "a7i": "(a7i) raw pipe, every replicated table, then the product's CREATE INDEX / PRIMARY"
    " KEY statements",
    "b": "(b) initial full load, `pipelines.run sync` into an empty Atlas DB",
    "c": "(c) no-change scheduled run, all tables (quiet: nothing in the overlap window)",
    "c2": "(c2) no-change run right after (d) (changed rows still in the 300 s overlap; info)",
    "d": "(d) run after {updates} updates + {inserts} inserts + {deletes} deletes",
    "e0": "(e0) `reconcile`, no differences",
    "e0t": "(e0t) `reconcile timesheets`, no differences (the timesheet table alone; info)",
    "e1": "(e1) `reconcile`, {silent} silent differences",
    "f0": "(f0) first `transform` in a new Atlas DB (cold dbt parse; info)",
    "fv": "(fv) `transform` (dbt build), view mode",
    "cr": "(cr) no-change scheduled `run` right after (fv): sync, and its build gate finds"
    " nothing changed (no dbt; info)",
    "qb": "(qb) Metabase question: `vw_budget_months`, every monthly budget this month",
    "qu": "(qu) Metabase question: `vw_user_days` with `vw_users`, utilization per user over"
    " the last full month",
    "fi0": "(fi0) first build with table_incremental (whole facts table; info)",
    "fi1": "(fi1) second first build with table_incremental (the other copy; info)",
    "fis": "(fis) sync of the {facts} timesheet changes before (fi) (info)",
    "fi": "(fi) incremental facts refresh after {facts} changes (`transform`, table_incremental)",
    "s": "(s) `sync --since` over the whole history (the whole table: rewritten; info)",
    "m": "(m) run after a bump of every `modified_at` (an upgrade migration: rewritten; info)",
}
ORDER = [
    "a",
    "a7",
    "a7i",
    "b",
    "c",
    "c2",
    "d",
    "e0",
    "e0t",
    "e1",
    "f0",
    "fv",
    "cr",
    "qb",
    "qu",
    "fi0",
    "fi1",
    "fis",
    "fi",
    "s",
    "m",
]
PRODUCT_SCENARIOS = [
    *["b", "c", "c2", "d", "e0", "e0t", "e1", "f0", "fv", "cr", "fi0", "fi1", "fis", "fi", "s"],
    "m",
]
FACTS_MODEL = "int_timesheet_facts_materialized"


def header(add: Callable[[str], None], *cells: str) -> None:
    add("| " + " | ".join(cells) + " |")
    add("|" + "---|" * len(cells))


def _fmt_s(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _fmt_bytes(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f} MB"
    if v >= 1e3:
        return f"{v / 1e3:.1f} kB"
    return f"{int(v)} B"


def _spread(values: list[float], fmt: Callable[[float], str] = _fmt_s) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _int(v: float) -> str:
    return f"{int(round(v)):,}"


def render_report(data: dict[str, Any]) -> str:
    meta, samples = data["meta"], data["samples"]
    ch = data["changes"]
    fmt_args = {
        "updates": f"{ch['updates']:,}", "inserts": f"{ch['inserts']:,}",
        "deletes": f"{ch['deletes']:,}", "silent": f"{ch['silent']:,}",
        "facts": f"{data['facts_changes']:,}",
    }  # fmt: skip
    by: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        if s["round"].startswith("r"):
            by.setdefault(s["scenario"], []).append(s)
    rounds = sorted({s["round"] for s in samples if s["round"].startswith("r")})
    ratios: dict[str, list[float]] = {"b": [], "a7": [], "a7i": [], "b/a7": [], "b/a7i": []}
    for r in rounds:
        w = {s["scenario"]: s["wall"] for s in samples if s["round"] == r}
        if w.get("a"):
            if "b" in w:
                ratios["b"].append(w["b"] / w["a"])
            for ref in ("a7", "a7i"):
                if ref in w:
                    ratios[ref].append(w[ref] / w["a"])
        for ref in ("a7", "a7i"):
            if w.get(ref) and "b" in w:
                ratios[f"b/{ref}"].append(w["b"] / w[ref])

    lines: list[str] = []
    add = lines.append
    n = data["timesheets"]
    add(f"# Benchmark: Kimai → Atlas DB sync at {n:,} timesheets")
    add("")
    add(
        f"Generated {meta.get('finished') or meta.get('started')} by `{meta.get('command', '')}`"
        f" ({len(rounds)} interleaved round(s); benchmark id {meta.get('id')})."
        " Figures are medians (min–max) over the rounds;"
        " ratios to the raw pipe are taken per round (same round, adjacent runs) and then the"
        " median is reported. Absolute seconds are indicative on a shared host; use the ratios."
    )
    add("")
    m = meta.get("machine", {})
    if m:
        add("## Machine")
        add("")
        header(
            add,
            "CPU",
            "cores",
            "RAM",
            "OS / kernel",
            "MariaDB",
            "PostgreSQL",
            "Python",
            "dlt",
            "connectorx",
            "pyarrow",
            "ADBC postgresql",
            "dbt-core / dbt-postgres",
        )
        p = m["packages"]
        add(
            f"| {m['cpu']} | {m['cores']} | {m['ram_gib']} GiB | {m['os']} / {m['kernel']} |"
            f" {m['mariadb']} | {m['postgresql']} | {m['python']} | {p['dlt']} |"
            f" {p['connectorx']} | {p['pyarrow']} | {p['adbc-driver-postgresql']} |"
            f" {p['dbt-core']} / {p['dbt-postgres']} |"
        )
        add("")
        sh = data.get("shared", {})
        pgs = m.get("pg_settings", {})
        add(
            f"Clients: {m.get('mariadb_client', '')}; {m.get('psql', '')}. PostgreSQL settings:"
            f" {', '.join(f'{k} {v}' for k, v in sorted(pgs.items()))} (defaults). MariaDB"
            f" `innodb_buffer_pool_size` {sh.get('buffer_pool_during', 0) // MIB} MiB during the"
            f" run (was {sh.get('buffer_pool_before', 0) // MIB} MiB; raised at runtime so the"
            " table is cached as in the baseline, and restored at the end); `userstat` switched on"
            f" at runtime for the per-user and per-table counters (was {sh.get('userstat_before')};"
            " restored at the end). Both are runtime-only (`SET GLOBAL`, never persisted)."
        )
        add("")
    code, code_end = meta.get("code_start"), meta.get("code_end")
    if code:
        changed = code_end and code_end["sources_sha256"] != code["sources_sha256"]
        add(
            f"Product code measured: commit {code['commit']}"
            + (f"; uncommitted changes in {', '.join(code['dirty'])}" if code["dirty"] else "")
            + f"; sources hash {code['sources_sha256']}"
            + (
                f" at the start and {code_end['sources_sha256']} at the end (**the code changed"
                " while the benchmark ran**: other sessions were editing it)."
                if changed
                else "."
            )
        )
        add("")
    tables = meta.get("kimai_tables", {})
    if tables:
        ts = tables.get(TS, {})
        add(
            f"Kimai data: the tests' generator (`build_kimai`, seed {meta.get('seed', 42)}),"
            f" {n:,} timesheets; `{TS}` ≈ {_fmt_bytes(ts.get('data', 0))} data +"
            f" {_fmt_bytes(ts.get('index', 0))} indexes (InnoDB);"
            + (f" built in {meta['build_seconds']:.0f} s;" if meta.get("build_seconds") else "")
            + " rows per table: "
            + ", ".join(f"{k} {v['rows']:,}" for k, v in tables.items())
            + " (InnoDB estimates)."
        )
        add("")

    # noise
    others = [
        s["others_cpu"] / s["wall"]
        for s in samples
        if s["wall"] > 0.5 and s["round"].startswith("r")
    ]
    restarts = [s for s in samples if any("restarted" in x for x in s.get("notes", []))]
    add("## Conditions and noise")
    add("")
    lb, la = meta.get("load_before"), meta.get("load_after")
    add(
        "The database servers are shared with other sessions running test suites at the same"
        " time. Load average at the start "
        + (f"{lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}" if lb else "–")
        + ", at the end "
        + (f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}" if la else "–")
        + f" (2 cores). CPU used by other processes during the timed runs: median"
        f" {_med(others):.2f} cores (max {max(others, default=0):.2f}) — the column 'others CPU'"
        " in the tables. MariaDB rows/bytes/CPU are per-user and per-table counters of the"
        " benchmark's own login and database, so they are not affected by other sessions;"
        " the PostgreSQL CPU column is the whole server (includes others)."
        + (f" {len(restarts)} run(s) saw a server restart (marked)." if restarts else "")
    )
    add("")

    # summary vs targets
    add("## Summary and targets (issue 7)")
    add("")
    header(
        add,
        "scenario",
        "wall s, median (min–max)",
        "ratio to (a)",
        "CPU s",
        "peak RSS MiB",
        "rows/s",
        "Kimai rows examined",
        "Kimai bytes sent",
        "target",
        "met?",
    )

    verdicts: dict[str, str] = {}

    def walls(k: str) -> list[float]:
        return [s["wall"] for s in by.get(k, [])]

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**not met**")

    if ratios["b"]:
        verdicts["b"] = verdict(_med(ratios["b"]) <= 1.0)
    if walls("c"):
        verdicts["c"] = verdict(_med(walls("c")) <= 3.0)
    if walls("d"):
        verdicts["d"] = verdict(_med(walls("d")) <= 5.0)
    if walls("fi"):
        verdicts["fi"] = verdict(_med(walls("fi")) <= 5.0)
    for k in ("qb", "qu"):
        if walls(k):
            verdicts[k] = verdict(_med(walls(k)) <= 1.0)
    shares: dict[str, float] = {}
    if by.get("e0") and by.get("b"):
        prod_b = _med([s["product_ts_bytes"] for s in by["b"]])
        prod_e0 = _med([s["product_ts_bytes"] for s in by["e0"]])
        if prod_b:
            shares["product"] = prod_e0 / prod_b
        wire_b = _med([s["kimai_bytes_sent"] for s in by["b"]])
        if wire_b:
            shares["all7"] = _med([s["kimai_bytes_sent"] for s in by["e0"]]) / wire_b
        wire_a = _med([s["kimai_bytes_sent"] for s in by.get("a", [])])
        if wire_a and by.get("e0t"):
            shares["wire"] = _med([s["kimai_bytes_sent"] for s in by["e0t"]]) / wire_a
        share = shares.get("wire", shares.get("product"))
        ok = _med(walls("e0")) <= 10.0 and share is not None and share <= 0.01
        verdicts["e0"] = verdict(ok)
    for k in ORDER:
        rows = by.get(k)
        if not rows:
            continue
        title = TITLES[k].format(**fmt_args)
        ratio = {
            "a": "1.0×",
            "a7": _spread(ratios["a7"], lambda v: f"{v:.2f}×"),
            "a7i": _spread(ratios["a7i"], lambda v: f"{v:.2f}×"),
            "b": _spread(ratios["b"], lambda v: f"{v:.2f}×"),
        }.get(k, "")
        rps = ""
        if any(s["rows"] for s in rows):
            rps = _int(_med([s["rows"] / s["wall"] for s in rows if s["wall"]]))
        target = TARGETS.get(k, "")
        add(
            f"| {title} | {_spread([s['wall'] for s in rows])} | {ratio} |"
            f" {_fmt_s(_med([s['cpu'] for s in rows]))} | {max(s['rss_mib'] for s in rows):.0f} |"
            f" {rps} | {_int(_med([s['kimai_rows_examined'] for s in rows]))} |"
            f" {_fmt_bytes(_med([s['kimai_bytes_sent'] for s in rows]))} | {target} |"
            f" {verdicts.get(k, '')} |"
        )
    model = [s["dbt"].get("node_times", {}).get(FACTS_MODEL) for s in by.get("fi", [])]
    model = [v for v in model if v is not None]
    if model:
        ok = _med(model) <= 5.0
        add(
            f"| (fi) the same, the model `{FACTS_MODEL}` alone (dbt node time) |"
            f" {_spread(model)} | | | | | | | {TARGETS['fi']} (model only) | {verdict(ok)} |"
        )
    prod = [s for k in PRODUCT_SCENARIOS for s in by.get(k, [])]
    if prod:
        worst = max(prod, key=lambda s: s["rss_mib"])
        ok = worst["rss_mib"] <= 300
        add(
            f"| peak RSS of the runner, every product run | | | | {worst['rss_mib']:.0f}"
            f" (in ({worst['scenario']})) | | | | {TARGETS['rss']} | {verdict(ok)} |"
        )
        verdicts["rss"] = verdict(ok)
    add("")
    if ratios["b/a7"]:
        add(
            f"(b) moves every replicated table; against their raw pipe (a7) its ratio is"
            f" {_spread(ratios['b/a7'], lambda v: f'{v:.2f}×')}."
        )
        add("")
    if ratios["b/a7i"]:
        ok = _med(ratios["b/a7i"]) <= 1.0
        add(
            "(b) builds the replica's keys and indexes too; against the raw pipe of every table"
            " followed by the same CREATE INDEX / PRIMARY KEY statements (a7i) its ratio is"
            f" {_spread(ratios['b/a7i'], lambda v: f'{v:.2f}×')} (target ≤ 1.0×:"
            f" {verdict(ok)})."
        )
        add("")
    if shares:
        add(
            "Reconcile bytes read from Kimai, as a share of the table's bytes: the timesheet"
            " table on the wire (MariaDB `BYTES_SENT` of (e0t) ÷ of (a), which sends the whole"
            f" table) **{shares.get('wire', float('nan')):.2%}** (the verdict); as the product"
            " counts it (`sync_run_tables.kimai_bytes_read` of timesheets, (e0) ÷ (b))"
            f" {shares.get('product', float('nan')):.2%}; every table on the wire ((e0) ÷"
            f" (b)) {shares.get('all7', float('nan')):.2%}."
        )
        add("")

    # per scenario tables
    add("## Scenarios, round by round")
    add("")
    add(
        "wall and CPU (user+sys of the whole process tree) in seconds; peak RSS = largest single"
        " process (wait4 `ru_maxrss`), 'at' = when the sampled peak happened; Kimai rows examined"
        " = `TABLE_STATISTICS.ROWS_READ` of the benchmark's database; sent/bytes/MariaDB CPU ="
        " `USER_STATISTICS` of the benchmark's login; 'product bytes' ="
        " `sync_run_tables.kimai_bytes_read` (Arrow bytes the product counts); others CPU ="
        " host CPU used by processes other than this run and the two database servers."
    )
    add("")
    for k in ORDER:
        rows = by.get(k)
        if not rows:
            continue
        add(f"### {TITLES[k].format(**fmt_args)}")
        add("")
        header(
            add,
            "round",
            "pos",
            "wall s",
            "ratio to (a)",
            "CPU s",
            "peak RSS MiB (at s)",
            "rows/s",
            "Kimai rows examined",
            "rows sent",
            "bytes sent",
            "product bytes",
            "MariaDB CPU s",
            "PG CPU s",
            "others CPU s",
            "check",
        )
        for s in sorted(rows, key=lambda s: s["round"]):
            a = next((x for x in by.get("a", []) if x["round"] == s["round"]), None)
            ratio = f"{s['wall'] / a['wall']:.2f}×" if a and k in ("b", "a7", "a7i") else ""
            rps = _int(s["rows"] / s["wall"]) if s["rows"] and s["wall"] else ""
            notes = "; ".join(s.get("notes", []))
            add(
                f"| {s['round']} | {s['position']} | {_fmt_s(s['wall'])} | {ratio} |"
                f" {_fmt_s(s['cpu'])} | {s['rss_mib']:.0f} ({s['rss_peak_at']:.1f}) | {rps} |"
                f" {_int(s['kimai_rows_examined'])} | {_int(s['kimai_rows_sent'])} |"
                f" {_fmt_bytes(s['kimai_bytes_sent'])} |"
                f" {_fmt_bytes(s['product_bytes']) if s['product_bytes'] else ''} |"
                f" {s['kimai_cpu']:.2f} | {s['pg_cpu']:.2f} | {s['others_cpu']:.2f} |"
                f" {s['check']}{' — ' + notes if notes else ''} |"
            )
        add(
            f"| **median** | | **{_fmt_s(_med([s['wall'] for s in rows]))}** | | "
            f"{_fmt_s(_med([s['cpu'] for s in rows]))} | {_med([s['rss_mib'] for s in rows]):.0f} |"
            f" | {_int(_med([s['kimai_rows_examined'] for s in rows]))} |"
            f" {_int(_med([s['kimai_rows_sent'] for s in rows]))} |"
            f" {_fmt_bytes(_med([s['kimai_bytes_sent'] for s in rows]))} | | | | | |"
        )
        add("")
        add(_breakdown(k, rows))
        add("")

    if data.get("impact"):
        add(render_impact(data["impact"]))
    if data.get("follow"):
        add(render_follow(data["follow"]))
    if data.get("delta"):
        add(render_delta(data["delta"]))
    add("## Method")
    add("")
    add(
        "* One command: `scripts/bench` (defaults: 1,000,000 timesheets, 3 rounds). Kimai is"
        " built with the tests' generator in a database of its own, the product reads it with a"
        " login that has SELECT only, every Atlas DB is a fresh PostgreSQL database per round"
        " (and a fresh dlt state directory), the raw pipe writes a fresh table per round. All"
        " are dropped at the end unless `--keep`."
    )
    add(
        "* Each round: the pair (a), (a7), (b) in rotated order; Atlas overlays + (f0);"
        " then (c), (e0)+(e1), (fv) in rotated order (each starts and ends with the replica equal"
        " to Kimai and nothing in the cursor's overlap window); then (d), (c2), (fi0), (fis), (fi),"
        " (s), (m) (these bump `modified_at`, so they come last; (m) sets every timesheet's"
        " `modified_at` to now and restores the values after the run). Kimai is then restored to"
        " the generated state (changed rows re-inserted from a copy), so every round measures"
        " the same data."
    )
    add(
        "* Changes: updates append to `description` and set `modified_at = UTC_TIMESTAMP()` (what"
        " an edit in Kimai does); inserts copy existing rows with a new id; deletes cascade to the"
        " tag pairs (Kimai's FKs); silent differences flip `exported` without touching"
        " `modified_at` (Kimai's bulk export does this)."
    )
    add(
        "* Timed: the whole command (`/proc`-free `wait4` rusage), interpreter start-up and exit"
        " included. Checks (not timed): row count, sum(id), count and total length of"
        " descriptions, sum(exported), count and epoch sum of modified_at, and the tag-pair count"
        " and id sum, Kimai vs replica after every sync/reconcile."
    )
    add(
        "* The raw pipe drops carriage returns server-side (`REPLACE(col, CHAR(13), '')` on text"
        " columns): psql's text COPY rejects a raw CR and `mariadb --batch` does not escape it; it"
        " also turns the string 'NULL' into NULL. It is a speed reference, not an exact copy."
    )
    add("")
    return "\n".join(lines) + "\n"


def _breakdown(k: str, rows: list[dict[str, Any]]) -> str:
    """The median round's breakdown: per-table seconds, phases from the log, dbt nodes."""
    rows = sorted(rows, key=lambda s: s["wall"])
    s = rows[len(rows) // 2]
    parts = []
    if s.get("tables"):
        t = s["tables"]
        total = sum(float(v.get("seconds") or 0) for v in t.values())
        sync_s = s["phases"].get("sync_seconds")
        items = ", ".join(
            f"{name} {float(v.get('seconds') or 0):.2f} s ({int(v.get('rows_read') or 0):,} rows"
            f" read, {_fmt_bytes(int(v.get('kimai_bytes_read') or 0))})"
            for name, v in sorted(t.items(), key=lambda kv: -float(kv[1].get("seconds") or 0))
        )
        parts.append(
            f"Median round {s['round']}: wall {_fmt_s(s['wall'])} s ="
            + (
                f" sync() {sync_s:.2f} s + start-up/lock/audit/exit {s['wall'] - sync_s:.2f} s;"
                if sync_s
                else ""
            )
            + f" per-table extract time (audit) {total:.2f} s: {items}."
        )
        events = s["phases"].get("events") or []
        if events:
            first = events[0][0]
            last = events[-1][0]
            parts.append(
                f"First progress line at {first:.2f} s (start-up, connect, reflection, dlt"
                f" pipeline, key sets, first table), last at {last:.2f} s; after it"
                f" {s['wall'] - last:.2f} s (dlt normalize + load/merge, key indexes, audit, exit)."
            )
        diffs = {n: v.get("differences_found") for n, v in t.items() if v.get("differences_found")}
        if diffs:
            parts.append(f"Differences found: {diffs}.")
        ups = {n: (v.get("inserted"), v.get("updated"), v.get("deleted")) for n, v in t.items()
               if any((v.get("inserted"), v.get("updated"), v.get("deleted")))}  # fmt: skip
        if ups and k != "b":
            parts.append(f"Written (inserted, updated, deleted): {ups}.")
    if s.get("dbt"):
        d = s["dbt"]
        top = ", ".join(f"{name} {sec:.2f} s" for name, sec, _ in d.get("top", []))
        parts.append(
            f"dbt ({s['round']}): {d.get('nodes')} nodes, dbt elapsed"
            f" {float(d.get('elapsed') or 0):.2f} s"
            f" of {_fmt_s(s['wall'])} s wall (the rest: interpreter, imports, parse, lock, audit);"
            f" slowest nodes: {top}."
        )
    return " ".join(parts)


def render_delta(delta: dict[str, Any]) -> str:
    """The delta-build study (`benchlib.delta`): dbt's work per scheduled run or tick."""
    lines = [
        f"## Delta builds: {delta['updates']:,} timesheets updated before each scheduled run"
        " (then each follower tick)",
        "",
        "| materialization | run | build | dbt work (verdict → published), s | whole run, s |",
        "|---|---|---|---|---|",
    ]
    for materialization, builds in delta.items():
        if not isinstance(builds, list):
            continue
        for i, b in enumerate(builds):
            cells = (materialization, i, b["kind"], b["dbt_seconds"], b["run_seconds"])
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("")
    return "\n".join(lines)


def render_follow(follow: dict[str, Any]) -> str:
    """The follower study (`benchlib.follow`): latency, tick times, Kimai's CPU."""
    lines: list[str] = []
    add = lines.append
    feed = follow.get("feed", "poll")
    builds = "with builds" if follow.get("builds", True) else "without builds (--no-build)"
    index = {True: ", Kimai's modified_at index", False: ", no modified_at index"}.get(
        follow.get("kimai_index"), ""
    )
    add(
        f"## The follower, {feed} feed {builds}{index}: {follow['interval_seconds']:g} s ticks"
        f" for {follow['seconds']:,.0f} s, {follow['edits']} edits (exit {follow['exit_code']})"
    )
    add("")
    header(add, "figure", "n", "p50", "p95", "max")
    for key, label in (
        ("latency_seconds", "edit saved in Kimai → row in vw_timesheet_facts, s"),
        ("quiet_tick_seconds", "quiet tick, s"),
        ("change_tick_seconds", "tick that changed rows, s"),
    ):
        q = follow.get(key) or {}
        cells = [str(q.get(k, "-")) for k in ("n", "p50", "p95", "max")]
        add(f"| {label} | {' | '.join(cells)} |")
    add("")
    bulk = follow.get("bulk_change")
    if bulk:
        add(
            f"Then {bulk['rows']:,} timesheet changes saved at once (scenario (d)): in the"
            f" replica {bulk['seconds_until_taken']:g} s later, by ticks of"
            f" {', '.join(f'{s:g}' for s in bulk['tick_seconds'])} s."
        )
        add("")
    add(
        f"Kimai CPU of the follower's login (MariaDB USER_STATISTICS):"
        f" {follow['kimai_cpu_seconds']:.2f} s in {follow['seconds']:,.0f} s ="
        f" {100 * follow['kimai_cpu_share_of_one_core']:.2f} % of one core"
        + (
            f"; after the first tick {follow['kimai_cpu_after_first_tick_seconds']:.2f} s ="
            f" {100 * follow['kimai_cpu_after_first_tick_share']:.2f} %."
            if "kimai_cpu_after_first_tick_share" in follow
            else "."
        )
    )
    add("")
    return "\n".join(lines)


def render_impact(impact: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"## Kimai impact at {impact['timesheets']:,} timesheets")
    add("")
    add(
        "Every statement a run sends to Kimai was captured inside the product process"
        " (connectorx and PyMySQL calls), then replayed one by one in a MariaDB session,"
        " measuring the session's `Rows_read` (rows examined), `Rows_sent`, `Bytes_sent` (text"
        " protocol; the product uses connectorx's binary protocol for data) and time,"
        " first without and then with `CREATE INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON"
        " kimai2_timesheet (modified_at)`. Plans: `ANALYZE FORMAT=JSON` of the statement of each"
        " kind with the most rows examined (access type, key, estimated rows → actual r_rows"
        " per loop, buffer-pool pages accessed)."
    )
    add("")
    for run in impact.get("runs", []):
        add(f"### {run['name']} (`pipelines.run {' '.join(run['args'])}`)")
        add("")
        header(
            add,
            "kind",
            "table",
            "statements",
            "rows examined, no index → index",
            "rows sent",
            "bytes sent",
            "ms, no index → index",
            "plan, no index",
            "plan, index",
        )
        idx = {(g["kind"], g["table"]): g for g in run.get("index", [])}
        tot = {"n": 0, "rr": 0, "rri": 0, "ms": 0.0, "msi": 0.0, "rs": 0, "bs": 0}
        for g in sorted(run.get("no_index", []), key=lambda g: -g["Rows_read"]):
            gi = idx.get((g["kind"], g["table"]), {})
            tot["n"] += g["statements"]
            tot["rr"] += g["Rows_read"]
            tot["rri"] += gi.get("Rows_read", 0)
            tot["ms"] += g["ms"]
            tot["msi"] += gi.get("ms", 0)
            tot["rs"] += g["Rows_sent"]
            tot["bs"] += g["Bytes_sent"]
            add(
                f"| {g['kind']} | {g['table']} | {g['statements']} |"
                f" {_int(g['Rows_read'])} → {_int(gi.get('Rows_read', 0))} |"
                f" {_int(g['Rows_sent'])} |"
                f" {_fmt_bytes(g['Bytes_sent'])} | {g['ms']:.0f} → {gi.get('ms', 0):.0f} |"
                f" {_plan(g.get('plan'))} | {_plan(gi.get('plan'))} |"
            )
        add(
            f"| **total** | | {tot['n']} | **{_int(tot['rr'])} → {_int(tot['rri'])}** |"
            f" {_int(tot['rs'])} | {_fmt_bytes(tot['bs'])} |"
            f" {tot['ms']:.0f} → {tot['msi']:.0f} | | |"
        )
        add("")
        s = run.get("sample", {})
        if s:
            add(
                f"The captured run itself: {_fmt_s(s['wall'])} s wall, Kimai rows examined"
                f" {_int(s['kimai_rows_examined'])}, sent {_int(s['kimai_rows_sent'])} rows /"
                f" {_fmt_bytes(s['kimai_bytes_sent'])} (binary protocol), MariaDB CPU"
                f" {s['kimai_cpu']:.2f} s."
                + (
                    f" Creating the index took {run['index_create_seconds']:.1f} s."
                    if run.get("index_create_seconds")
                    else ""
                )
            )
            add("")
        examples = [g for g in run.get("no_index", []) if g["kind"] not in ("catalog", "session")]
        if examples:
            add("<details><summary>example statements</summary>")
            add("")
            for g in examples:
                sql = " ".join(g["example"].split())
                sql = re.sub(r"IN \(([0-9, ]{60})[0-9, ]*\)", r"IN (\1…)", sql)
                if len(sql) > 400:
                    sql = sql[:200] + " … " + sql[-150:]
                add(f"* {g['kind']} ({g['table']}): `{sql}`")
            add("")
            add("</details>")
            add("")
    ab = impact.get("ab") or []
    if ab:
        add("### End to end, without and with the index (interleaved)")
        add("")
        header(
            add,
            "run",
            "index",
            "wall s, median (min–max)",
            "CPU s",
            "Kimai rows examined",
            "Kimai bytes sent",
            "MariaDB CPU s",
            "n",
        )
        for scen, label in (("c", "quiet sync (c)"), ("d", "sync after the changes of (d)")):
            for on in (False, True):
                rows = [r for r in ab if r["scenario"] == scen and r["index"] == on]
                if not rows:
                    continue
                add(
                    f"| {label} | {'yes' if on else 'no'} | {_spread([r['wall'] for r in rows])} |"
                    f" {_fmt_s(_med([r['cpu'] for r in rows]))} |"
                    f" {_int(_med([r['rows_examined'] for r in rows]))} |"
                    f" {_fmt_bytes(_med([r['bytes_sent'] for r in rows]))} |"
                    f" {_med([r['kimai_cpu'] for r in rows]):.2f} | {len(rows)} |"
                )
        add("")
    return "\n".join(lines)


def plan_summary(doc: Any) -> list[dict[str, Any]]:
    """The table accesses of an ``ANALYZE FORMAT=JSON`` document, in execution order."""
    tables: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            t = node.get("table")
            if isinstance(t, dict) and not str(t.get("table_name", "<")).startswith("<"):
                tables.append({
                    **{k: t.get(k) for k in ("table_name", "access_type", "key", "rows",
                                             "r_rows", "r_loops", "r_total_time_ms")},
                    "pages": (t.get("r_engine_stats") or {}).get("pages_accessed"),
                })  # fmt: skip
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return tables


def _plan(plan: list[dict[str, Any]] | None) -> str:
    if not plan:
        return ""
    out = []
    for t in plan[:3]:
        key = f" `{t['key']}`" if t.get("key") else ""
        loops = t.get("r_loops") or 1
        out.append(
            f"{t.get('access_type')}{key}, est {_int(t.get('rows') or 0)}"
            f" → {_int(t.get('r_rows') or 0)}"
            + (f" ×{loops} loops" if loops > 1 else "")
            + (f", {_int(t['pages'])} pages" if t.get("pages") else "")
        )
    return "; ".join(out)
