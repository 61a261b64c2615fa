"""The delta-build study (``scripts/bench --delta-builds N``): dbt's work after a change.

For each materialization of ``vw_timesheet_facts`` (``table_incremental``, then ``view``),
on an Atlas DB of its own (synced, overlays, one green scheduled run, which is a full audit):
N rounds of the (d) change's 10,000 updates saved in Kimai (a new description,
``modified_at`` bumped), each followed by one scheduled run (`python -m pipelines.run`).
The gate makes those delta builds; the second and later ones keep the shadow schemas' views
(the build published before the last was made from the same project). A round's dbt work
is read from the run's JSON log: from the gate's verdict ("dbt build: …") to the
publication ("published …"), which includes dbt's start-up and the swap. Kimai is
restored to its generated state at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchlib.common import log

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
        result[materialization] = builds
        log(f"delta builds, {materialization}: {builds}")
        bench.drop_atlas(atlas)
    bench.restore_kimai()
    return result


def _dbt_phase(sample: Sample) -> dict[str, Any]:
    """The run's wall time, and its build's kind and seconds from its JSON log lines.

    The lines are the harness's (`Bench._read_phases`: seconds since the start, message).
    """
    started = published = None
    kind = "full audit"
    for at, msg in sample.phases.get("events", []):
        if msg.startswith("dbt build: "):
            started = at
            if "delta build" in msg:
                kind = "delta"
        elif KEPT in msg:
            kind = "delta, views kept"
        elif msg.startswith("published ") and started is not None:
            published = at
    seconds = round(published - started, 2) if started is not None and published else None
    return {"kind": kind, "dbt_seconds": seconds, "run_seconds": round(sample.wall, 2)}
