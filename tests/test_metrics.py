"""The metrics collector, from a status built here: families, values, the textfile (unit)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from pipelines.record import metrics
from pipelines.record.status import BuildHealth, Status, TableHealth
from tests.metric_families import ALL_FAMILIES, RUN_FAMILIES, parse

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 6, 22, 0, 12, 654321, tzinfo=dt.UTC)
NOW_SECONDS = 1796594413.0  # `date -d 2026-12-06T22:00:12Z +%s`, plus the .65 s rounded up
PUBLISHED = dt.datetime(2026, 12, 6, 21, 0, 0, 400000, tzinfo=dt.UTC)
PUBLISHED_SECONDS = 1796590800.0


def _status() -> Status:
    return Status(
        now=NOW,
        tables=[
            TableHealth("users", NOW, 12.345678, NOW, 5, 6, NOW, 2, 1),
            TableHealth("tags"),  # never synced: no per-table sample at all
            TableHealth("teams", NOW, 0.0, None, 0, 0),  # synced, never reconciled
        ],
        upserts_total={"users": 7, "tags": 0},
        errors_total=3,
        build=BuildHealth(PUBLISHED, "r1", "failed", NOW, "a test failed"),
    )


def test_every_family_with_the_values_of_the_status() -> None:
    last = metrics.LastRun("success", 6.1415926, NOW)
    found = parse(metrics.exposition(metrics.SyncMetrics(last, _status())).decode())
    assert found.families == ALL_FAMILIES
    assert found.value("kimai_atlas_sync_last_run_success") == 1
    assert found.value("kimai_atlas_sync_last_run_duration_seconds") == 6.142
    assert found.value("kimai_atlas_sync_last_run_timestamp_seconds") == NOW_SECONDS
    assert found.value("kimai_atlas_sync_audit_readable") == 1
    assert found.value("kimai_atlas_sync_lock_refused") == 0
    assert found.value("kimai_atlas_sync_lock_refused_timestamp_seconds") == 0
    assert found.value("kimai_atlas_sync_bi_build_published_timestamp_seconds") == PUBLISHED_SECONDS
    assert found.value("kimai_atlas_sync_last_build_success") == 0  # the last build failed
    assert found.value("kimai_atlas_sync_errors_total") == 3
    assert found.per_table("kimai_atlas_sync_upserts_total") == {"users": 7, "tags": 0}
    assert found.per_table("kimai_atlas_sync_lag_seconds") == {"users": 12.345678, "teams": 0}
    assert found.per_table("kimai_atlas_sync_replica_rows") == {"users": 5, "teams": 0}
    assert found.per_table("kimai_atlas_sync_kimai_rows") == {"users": 6, "teams": 0}
    assert found.per_table("kimai_atlas_sync_differences_unrepaired") == {"users": 1}
    assert len(found.values) == 6 + 3 + 2 + 2 + 2 + 2 + 1


def test_a_refused_start_and_a_run_without_any_audit() -> None:
    refused_at = NOW + dt.timedelta(seconds=30)
    last = metrics.LastRun("failed", 0.0, dt.datetime.fromtimestamp(0, dt.UTC))
    found = parse(
        metrics.exposition(metrics.SyncMetrics(last, Status(now=NOW), refused_at)).decode()
    )
    assert found.families == ALL_FAMILIES  # the per-table families, without samples
    assert found.value("kimai_atlas_sync_last_run_success") == 0
    assert found.value("kimai_atlas_sync_last_run_timestamp_seconds") == 0
    assert found.value("kimai_atlas_sync_lock_refused") == 1
    assert found.value("kimai_atlas_sync_lock_refused_timestamp_seconds") == NOW_SECONDS + 30
    assert found.value("kimai_atlas_sync_bi_build_published_timestamp_seconds") == 0
    assert found.value("kimai_atlas_sync_errors_total") == 0
    assert found.per_table("kimai_atlas_sync_lag_seconds") == {}


def test_a_run_that_could_not_read_the_audit_writes_its_own_gauges_only() -> None:
    before = dt.datetime.now(dt.UTC).timestamp()
    found = parse(metrics.exposition(metrics.unreadable("failed", 0.0456)).decode())
    after = dt.datetime.now(dt.UTC).timestamp()
    assert found.families == RUN_FAMILIES
    assert found.value("kimai_atlas_sync_last_run_success") == 0
    assert found.value("kimai_atlas_sync_audit_readable") == 0
    assert found.value("kimai_atlas_sync_last_run_duration_seconds") == 0.046
    ended = found.value("kimai_atlas_sync_last_run_timestamp_seconds")
    assert round(before) <= ended <= round(after)


def test_the_textfile_is_replaced_whole_and_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "collector" / "kimai.prom"  # directories made as needed
    collector = metrics.SyncMetrics(metrics.LastRun("success", 1.0, NOW), _status())
    previous = os.umask(0o077)  # a run under a strict umask: node_exporter must still read it
    try:
        metrics.write_textfile(path, collector)
        first = path.read_text()
        metrics.write_textfile(path, metrics.unreadable("failed", 2.0))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert parse(first).families == ALL_FAMILIES
    assert first.encode() == metrics.exposition(collector)  # the same text /metrics serves
    assert parse(path.read_text()).families == RUN_FAMILIES
    assert [p.name for p in path.parent.iterdir()] == ["kimai.prom"]  # no temporary file left
