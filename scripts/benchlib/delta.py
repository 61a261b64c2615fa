"""The delta-build study (``scripts/bench --delta-builds N``): dbt's work after a change.

For each materialization of ``vw_timesheet_facts`` (``table_incremental``, then ``view``),
on an Atlas DB of its own (synced, overlays, one green scheduled run, which is a full audit):
N rounds of the (d) change's 10,000 updates saved in Kimai (a new description,
``modified_at`` bumped), each followed by one scheduled run (`python -m pipelines.run`);
then N more rounds taken by a running follower (`follow`, builds on), whose process keeps
dbt imported and its project parsed from one build to the next.
The gate makes those delta builds; the second and later ones keep the shadow schemas' views
(the build published before the last was made from the same project). A round's dbt work
is read from the run's JSON log: from the gate's verdict ("dbt build: …") to the
publication ("published …"), which includes dbt's start-up and the swap (in a scheduled
run; a follower started dbt with its first build). Kimai is restored to its generated
state at the end.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

from benchlib.common import PRODUCT, REPLICA, log, log_events
from benchlib.follow import POLL_SECONDS, first_tick
from pipelines.demo.servers import pg_query

if TYPE_CHECKING:
    from benchlib.harness import Bench
    from benchlib.measure import Sample

MATERIALIZATIONS = ("table_incremental", "view")

KEPT = "tables only"
"""Said by a delta build that kept the shadow schemas' views (pipelines/publish.py)."""


def delta_study(bench: Bench, rounds: int) -> dict[str, Any]:
    """Run the study (see the module's docstring); its figures per materialization."""
    result: dict[str, Any] = {"timesheets": bench.n, "updates": len(bench.sets["updates"])}
    for materialization in MATERIALIZATIONS:
        extra = {"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": materialization}
        atlas = bench.new_atlas(f"delta_{materialization}")
        init = bench.product("h-init", materialization, atlas, ["sync"], extra, check=False)
        bench.create_overlays(atlas)
        full = bench.product("h-full", materialization, atlas, [], extra, check=False)
        if init.rc != 0 or full.rc != 0:
            raise RuntimeError("the delta study's first sync or build failed")
        builds = [_dbt_phase(full)]
        for i in range(rounds):
            bench.apply_updates(bench.sets["updates"], f"delta {i}")
            sample = bench.product("h-delta", materialization, atlas, [], extra, check=False)
            if sample.rc != 0:
                raise RuntimeError(f"the delta study's run {i} failed (exit {sample.rc})")
            builds.append(_dbt_phase(sample))
        builds += _follower_rounds(bench, atlas, materialization, rounds, extra)
        result[materialization] = builds
        log(f"delta builds, {materialization}: {builds}")
        bench.drop_atlas(atlas)
    bench.restore_kimai()
    return result


def _dbt_phase(sample: Sample) -> dict[str, Any]:
    """The run's wall time, and its build's kind and seconds from its JSON log lines.

    The lines are the harness's (`Bench._read_phases`: seconds since the start, message).
    """
    builds = _builds(sample.phases.get("events", []))
    build = builds[0] if builds else {"kind": "none", "dbt_seconds": None}
    return {**build, "run_seconds": round(sample.wall, 2)}


def _builds(events: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Each build's kind and dbt seconds (verdict → published), from (seconds, message)."""
    builds: list[dict[str, Any]] = []
    started = None
    for at, msg in events:
        if msg.startswith("dbt build: "):
            started = at
            kind = "delta" if "delta build" in msg else "full audit"
            builds.append({"kind": kind, "dbt_seconds": None})
        elif KEPT in msg and builds:
            builds[-1]["kind"] = "delta, views kept"
        elif msg.startswith("published ") and started is not None:
            builds[-1]["dbt_seconds"] = round(at - started, 2)
            started = None
    return builds


def _follower_rounds(
    bench: Bench, atlas: str, materialization: str, rounds: int, extra: dict[str, str]
) -> list[dict[str, Any]]:
    """The same updates taken by a running follower: each round's build, from its log."""
    env = bench.product_env(atlas, {**extra, "ATLAS_FOLLOW_INTERVAL_SECONDS": "5"})
    log_path = bench.logs / f"{materialization}-h-follow.err"
    with open(log_path, "w") as err:
        proc = subprocess.Popen(
            [*PRODUCT, "follow", "--log-format", "json"],
            env=env, cwd=str(bench.work), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            first_tick(atlas, time.monotonic() + 600)
            for i in range(rounds):
                since = pg_query(atlas, "SELECT now()")[0][0]
                bench.apply_updates(bench.sets["updates"], f"follower delta {i}")
                _published_since(atlas, since, time.monotonic() + 900)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
    events = log_events(log_path.read_text(errors="replace").splitlines())
    runs = pg_query(
        atlas,
        "SELECT extract(epoch FROM finished_at - started_at) FROM"
        f' "{REPLICA}".sync_runs WHERE command = %s AND build_status = %s ORDER BY started_at',
        ("follow", "published"),
    )
    builds = _builds(events)
    return [
        {**b, "kind": f"follower tick: {b['kind']}", "run_seconds": round(float(r[0]), 2)}
        for b, r in zip(builds, runs, strict=False)
    ]


def _published_since(atlas: str, since: Any, deadline: float) -> None:
    """Wait until a follower tick started after `since` has published its build."""
    while time.monotonic() < deadline:
        if pg_query(
            atlas,
            f'SELECT 1 FROM "{REPLICA}".sync_runs WHERE command = %s AND build_status = %s'
            " AND started_at >= %s",
            ("follow", "published", since),
        ):
            return
        time.sleep(POLL_SECONDS)
    log("delta builds: the follower published no build in time")
