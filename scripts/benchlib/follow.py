"""The follower study (``scripts/bench --follow SECONDS``): edit-to-BI latency, Kimai's CPU.

On its own Atlas DB (synced, overlays, one green scheduled run), the product's follower runs
for the given time at ``--follow-interval``: its first quarter without edits (quiet ticks),
then the study saves one edit at a time in Kimai as a user would (the harness's
``apply_updates``: a new description, ``modified_at`` bumped), at a random moment of the
tick cycle, and polls ``vw_timesheet_facts`` until the edit is there: the latency is from
the edit's commit to the first poll that sees it (polled every 0.25 s). The follower's ticks
are read from its heartbeat (quiet ticks) and the run audit (ticks that changed rows).
Kimai's CPU is what MariaDB counts for the benchmark's own login, which only the follower
uses during the study.
"""

from __future__ import annotations

import contextlib
import random
import signal
import statistics
import subprocess
import time
from typing import TYPE_CHECKING, Any

from benchlib.common import PRODUCT, REPLICA, log
from pipelines.demo.servers import pg_query

if TYPE_CHECKING:
    from benchlib.harness import Bench

POLL_SECONDS = 0.25


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(at(0.95), 2),
        "max": round(ordered[-1], 2),
    }


def follow_study(bench: Bench, seconds: float, interval: float) -> dict[str, Any]:
    """Run the follower for `seconds` and measure it (see the module's docstring)."""
    atlas = bench.new_atlas("follow")
    init = bench.product("g-init", "follow", atlas, ["sync"], check=False)
    bench.create_overlays(atlas)
    built = bench.product("g-run", "follow", atlas, [], check=False)
    if init.rc != 0 or built.rc != 0:
        raise RuntimeError("the follower study's first sync or build failed")
    ids = [r[0] for r in pg_query(atlas, f'SELECT id FROM "{REPLICA}".replica_kimai_timesheets')]
    rng = random.Random(bench.args.seed)
    extra = {"ATLAS_FOLLOW_INTERVAL_SECONDS": str(interval)}
    if bench.args.binlog:
        extra["KIMAI_BINLOG"] = "on"
    env = bench.product_env(atlas, extra)
    no_build = ["--no-build"] if bench.args.follow_no_build else []
    log_path = bench.logs / "follow.err"
    before = bench.snapshot()
    started = time.monotonic()
    with open(log_path, "w") as err:
        proc = subprocess.Popen(
            [*PRODUCT, "follow", "--log-format", "json", *no_build],
            env=env, cwd=str(bench.work), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        # the first tick may be more than a tick (the binlog feed's resync): the steady
        # share of Kimai's CPU is counted from its end
        first_tick(atlas, started + seconds)
        steady, steady_started = bench.snapshot(), time.monotonic()
        latencies, ticks = _edits(bench, atlas, ids, rng, seconds, interval, started)
        bulk = _bulk_change(bench, atlas, interval)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    wall = time.monotonic() - started
    after = bench.snapshot()
    kimai_cpu = after.user["cpu_time"] - before.user["cpu_time"]
    steady_cpu = after.user["cpu_time"] - steady.user["cpu_time"]
    steady_wall = time.monotonic() - steady_started
    changed = pg_query(
        atlas,
        "SELECT extract(epoch FROM finished_at - started_at) FROM"
        f' "{REPLICA}".sync_runs WHERE command = %s AND status = %s',
        ("follow", "success"),
    )
    result = {
        "feed": "binlog" if bench.args.binlog else "poll",
        "builds": not bench.args.follow_no_build,
        "kimai_index": bench.has_index(),
        "timesheets": bench.n,
        "interval_seconds": interval,
        "seconds": round(wall, 1),
        "exit_code": proc.returncode,
        "edits": len(latencies),
        "latency_seconds": _quantiles(latencies),
        "quiet_tick_seconds": _quantiles(ticks),
        "change_tick_seconds": _quantiles([float(r[0]) for r in changed]),
        "bulk_change": bulk,
        "kimai_cpu_seconds": round(kimai_cpu, 2),
        "kimai_cpu_share_of_one_core": round(kimai_cpu / wall, 4),
        "kimai_cpu_after_first_tick_seconds": round(steady_cpu, 2),
        "kimai_cpu_after_first_tick_share": round(steady_cpu / max(steady_wall, 1e-9), 4),
    }
    log(f"follow: {result}")
    bench.drop_atlas(atlas)
    return result


def _edits(
    bench: Bench,
    atlas: str,
    ids: list[int],
    rng: random.Random,
    seconds: float,
    interval: float,
    started: float,
) -> tuple[list[float], list[float]]:
    """Edit, wait until BI sees it, pause, again; and the quiet ticks' durations meanwhile."""
    latencies: list[float] = []
    ticks: dict[Any, float] = {}
    facts = "analytics.vw_timesheet_facts"
    n = 0
    while time.monotonic() - started < seconds / 4:  # quiet ticks first
        _read_tick(atlas, ticks)
        time.sleep(POLL_SECONDS)
    while time.monotonic() - started < seconds:
        time.sleep(rng.uniform(0, interval))  # a random moment of the tick cycle
        n += 1
        timesheet_id, note = rng.choice(ids), f"follow study edit {n}"
        bench.apply_updates([timesheet_id], note)  # as Kimai saves an edit
        saved = time.monotonic()
        deadline = saved + 5 * interval + 60
        while time.monotonic() < deadline:
            _read_tick(atlas, ticks)
            seen = pg_query(
                atlas,
                f"SELECT 1 FROM {facts} WHERE timesheet_id = %s AND description LIKE %s",
                (timesheet_id, f"%[{note}]"),
            )
            if seen:
                latencies.append(time.monotonic() - saved)
                break
            time.sleep(POLL_SECONDS)
        else:
            log(f"follow: edit {n} not seen in BI after {5 * interval + 60:.0f} s")
    return latencies, list(ticks.values())


def first_tick(atlas: str, deadline: float) -> None:
    """Wait until the follower's first tick has ended (its heartbeat row is there)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pg_query(atlas, f'SELECT 1 FROM "{REPLICA}".sync_follower'):
                return
        time.sleep(POLL_SECONDS)


def _bulk_change(bench: Bench, atlas: str, interval: float) -> dict[str, Any]:
    """Scenario (d)'s change set saved at once; the ticks that take it, from the audit.

    After the edits, before the follower stops: its Kimai CPU counts in the study's share.
    """
    c = bench.changes
    expected = c["updates"] + c["inserts"] + c["deletes"]
    since = pg_query(atlas, "SELECT now()")[0][0]
    bench.apply_d()
    saved = time.monotonic()
    runs: list[tuple[Any, ...]] = []
    while time.monotonic() < saved + 5 * interval + 600:
        runs = pg_query(
            atlas,
            "SELECT r.run_id, extract(epoch FROM r.finished_at - r.started_at),"
            " coalesce(sum(t.inserted + t.updated + t.deleted), 0)"
            f' FROM "{REPLICA}".sync_runs r JOIN "{REPLICA}".sync_run_tables t USING (run_id)'
            " WHERE r.command = 'follow' AND r.status = 'success' AND r.started_at >= %s"
            " AND t.table_name = 'timesheets' GROUP BY 1, 2 ORDER BY 1",
            (since,),
        )
        if sum(int(r[2]) for r in runs) >= expected:
            break
        time.sleep(POLL_SECONDS)
    else:
        log(f"follow: the change set of {expected:,} rows was not taken in time")
    return {
        "rows": expected,
        "seconds_until_taken": round(time.monotonic() - saved, 2),
        "tick_seconds": [round(float(r[1]), 2) for r in runs],
    }


def _read_tick(atlas: str, ticks: dict[Any, float]) -> None:
    """Remember the newest quiet tick's duration, by the tick's start."""
    with contextlib.suppress(Exception):
        for last_tick_at, tick_seconds, run_id in pg_query(
            atlas,
            f'SELECT last_tick_at, last_tick_seconds, last_run_id FROM "{REPLICA}".sync_follower'
            " WHERE status = 'ok'",
        ):
            if run_id is None:  # a tick that changed rows is a run: timed from the audit
                ticks[last_tick_at] = float(tick_seconds)
