"""An analytics schema belongs to one deployment: another replica schema cannot build it.

Two deployments in one Atlas DB with different replica schemas and the same analytics
schema would publish their builds in turn, and BI would read whichever replica built last.
The first publication records its replica schema on the analytics schemas; a deployment of
another replica schema is refused (exit 2, naming the owner) whether or not the first runs.
"""

from __future__ import annotations

import pytest

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_url, pg_query, run_cli
from tests.stack import OVERLAY, create_overlays


@pytest.mark.heavy
def test_a_second_replica_schema_cannot_build_the_same_analytics_schema(env):
    atlas = env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=31, timesheets=300)
    first = {**env, "ATLAS_OVERLAY_SCHEMA": OVERLAY}  # replica kimai_replica, analytics
    assert run_cli("sync", env=first).returncode == 0
    create_overlays(atlas, seed=31)
    built = run_cli("transform", env=first, timeout=600)
    assert built.returncode == 0, built.stderr

    second = {**first, "ATLAS_REPLICA_SCHEMA": "kimai_replica_b"}
    refused = run_cli(env=second, timeout=600)  # the scheduled job: sync, then build
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()  # one line
    assert line.startswith(
        "error: analytics schema 'analytics' belongs to replica schema 'kimai_replica'"
    ), line
    # it wrote nothing, not even its own replica
    assert pg_query(atlas, "SELECT to_regnamespace('kimai_replica_b')") == [(None,)]

    # BI reads the first deployment's replica, through every view of the build
    views = pg_query(
        atlas,
        "SELECT schemaname, viewname, definition FROM pg_views WHERE schemaname LIKE 'analytics%%'",
    )
    assert {v[0] for v in views} >= {"analytics", "analytics_internal"}
    assert not [v[:2] for v in views if "kimai_replica_b" in v[2]]
    through_views = pg_query(atlas, "SELECT count(*) FROM analytics.vw_timesheet_facts")
    replica = pg_query(atlas, "SELECT count(*) FROM kimai_replica.replica_kimai_timesheets")
    assert through_views == replica and replica[0][0] > 0

    # the owner itself goes on
    again = run_cli("sync", env=first)
    assert again.returncode == 0, again.stderr
