"""Metrics never report an earlier success for a run that could not write its audit row."""

from __future__ import annotations

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_url, pg_query, run_cli
from tests.metric_families import Parsed, parse


def test_a_run_refused_by_a_read_only_atlas_db_reads_as_failed_in_the_metrics(env):
    from pipelines.config import load_settings
    from pipelines.record import metrics

    def served() -> Parsed:  # what the HTTP service's /metrics answers
        return parse(metrics.exposition(metrics.from_audit(settings)).decode())

    atlas = env["ATLAS_DB_DATABASE"]
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=8, timesheets=50)
    good = run_cli("sync", env=env)
    assert good.returncode == 0, good.stderr
    settings = load_settings(dotenv=False)
    assert served().value("kimai_atlas_sync_last_run_success") == 1

    # Atlas DB is read-only: the run cannot write its audit row, let alone the replica
    pg_query("postgres", f'ALTER DATABASE "{atlas}" SET default_transaction_read_only = on')
    failed = run_cli("sync", env=env)
    assert failed.returncode == 4, failed.stderr
    assert "read-only transaction" in failed.stderr
    assert pg_query(atlas, "SELECT status FROM kimai_replica.sync_runs") == [("success",)]
    # what the HTTP service's /metrics serves, from the audit it can still read
    after = served()
    assert after.value("kimai_atlas_sync_last_run_success") == 0, after.values
    assert after.value("kimai_atlas_sync_audit_readable") == 1
