"""Two deployments on one host (a staging and a production Atlas DB) never share state.

Both use the default state location under the same home directory and the same replica
schema name; only their Atlas DB differs. Their runs go on at the same time.
"""

from __future__ import annotations

import stat
from pathlib import Path

from pipelines.demo.kimai_data import build_kimai
from tests.conftest import kimai_exec, kimai_url, pg_query, start_cli, throwaway_pg_database
from tests.replica_check import assert_replica_equals_kimai


def _both(envs: list[dict[str, str]], home: Path) -> list[str]:
    runs = [start_cli("sync", env=e, extra_env={"HOME": str(home)}) for e in envs]
    outputs = [p.communicate(timeout=600) for p in runs]
    for p, (_out, err) in zip(runs, outputs, strict=True):
        assert p.returncode == 0, err
    return [out for out, _err in outputs]


def _last_run(atlas: str) -> tuple:
    return pg_query(
        atlas,
        "SELECT started_at, finished_at FROM kimai_replica.sync_runs"
        " ORDER BY started_at DESC LIMIT 1",
    )[0]


def test_two_deployments_run_at_once_without_sharing_state(env, tmp_path):
    db, production = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    with throwaway_pg_database() as staging:
        build_kimai(kimai_url(db), seed=12, timesheets=3_000)
        home = tmp_path / "home"
        home.mkdir()
        # the default state location: nothing but the Atlas DB tells the two apart
        base = {k: v for k, v in env.items() if k != "ATLAS_SYNC_STATE_DIR"}
        envs = [base, {**base, "ATLAS_DB_DATABASE": staging}]
        _both(envs, home)
        kimai_exec(
            db,
            "UPDATE kimai2_timesheet SET description = CONCAT('second ', id),"
            " modified_at = UTC_TIMESTAMP() WHERE id % 7 = 0",
            "DELETE FROM kimai2_timesheet WHERE id % 101 = 0",
        )
        _both(envs, home)  # merges through dlt, each in its own working directory

        (a_start, a_end), (b_start, b_end) = _last_run(production), _last_run(staging)
        assert a_start < b_end and b_start < a_end  # the two runs overlapped
        for atlas in (production, staging):
            assert_replica_equals_kimai(db, atlas)
        work = sorted((home / ".local/state/kimai-atlas/dlt").iterdir())
        assert len(work) == 2
        for path in work:
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
            assert any(path.rglob("state.json"))  # dlt worked here
