"""The benchmark's smoke run: every scenario runs and lands in the report (no timing checks)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import REPO

# every row of the summary table: scenario id → how its row starts
SCENARIO_ROWS = {
    "a": "| (a) raw pipe",
    "a7": "| (a7) raw pipe, every replicated table (",
    "a7i": "| (a7i) raw pipe, every replicated table, then",
    "b": "| (b) initial full load",
    "c": "| (c) no-change scheduled run",
    "c2": "| (c2) no-change run right after (d)",
    "d": "| (d) run after",
    "e0": "| (e0) `reconcile`, no differences",
    "e0t": "| (e0t) `reconcile timesheets`",
    "e1": "| (e1) `reconcile`,",
    "f0": "| (f0) first `transform`",
    "fv": "| (fv) `transform` (dbt build), view mode",
    "cr": "| (cr) no-change scheduled `run`",
    "qb": "| (qb) Metabase question: `vw_budget_months`",
    "qu": "| (qu) Metabase question: `vw_user_days`",
    "fi0": "| (fi0) first build with table_incremental",
    "fis": "| (fis) sync of the",
    "fi": "| (fi) incremental facts refresh",
}
TARGET_ROWS = (
    "| (b) initial full load",
    "| (c) ",
    "| (d) ",
    "| (e0) ",
    "| (fi) incremental",
    "| (qb) ",
    "| (qu) ",
)


@pytest.mark.heavy
@pytest.mark.slow
def test_smoke_run_reports_every_scenario(tmp_path):
    out = tmp_path / "report.md"
    proc = subprocess.run(
        # 5,000 timesheets (the smoke default is 20,000): every scenario still runs and is
        # checked, for a third of the CPU the suite has to share
        [str(REPO / "scripts" / "bench"), "--smoke", "--timesheets", "5000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    summary = report.split("## Summary and targets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| (")]
    for scenario, start in SCENARIO_ROWS.items():
        assert any(r.startswith(start) for r in rows), f"no summary row for ({scenario})"
    # every target of issue 7 has a verdict, and every scenario has its own table
    for start in TARGET_ROWS:
        row = next(r for r in rows if r.startswith(start))
        assert re.search(r"\*\*(met|not met)\*\*", row), row
    assert "| peak RSS of the runner, every product run |" in summary
    for scenario in SCENARIO_ROWS:
        assert f"\n### ({scenario}) " in report, f"no table for ({scenario})"
    # the machine, the Kimai-impact study and the raw data are there too
    assert "## Machine" in report and "MariaDB" in report
    assert "## Kimai impact" in report and "cursor window" in report
    data = json.loads(out.with_suffix(".json").read_text())
    assert all(s["rc"] == 0 for s in data["samples"])
    assert all(s["check"] == "ok" for s in data["samples"]), [
        (s["scenario"], s["check"]) for s in data["samples"] if s["check"] != "ok"
    ]
    # nothing is left behind: the benchmark's databases and login are gone
    from tests.conftest import mariadb_connect, pg_connect

    bench_id = re.search(r"benchmark id ([0-9a-f]{8})", proc.stderr)
    assert bench_id, proc.stderr[-2000:]
    if bench_id:
        conn = mariadb_connect()
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (f"kimai_bench_{bench_id.group(1)}%",))
            assert cur.fetchall() == ()
            cur.execute(
                "SELECT user FROM mysql.user WHERE user LIKE %s", (f"kb_{bench_id.group(1)}%",)
            )
            assert cur.fetchall() == ()
        conn.close()
        conn = pg_connect()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"atlas_bench_{bench_id.group(1)}%",),
            )
            assert cur.fetchall() == []
        conn.close()
