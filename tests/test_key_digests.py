"""The follower's stored replica digests (`pipelines.sync.keydigests`), on the real servers.

Expected digests are computed here in Python from the replica's keys (the comparison's
documented formula: per bucket of 256 first-key values, the row count and two sums of
32-bit multiplicative key hashes, modulo 2^60), never read from the product.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict

import pytest
import sqlalchemy as sa

from pipelines.demo import kimai_actions as kimai_do
from tests.conftest import first_sync, kimai_query, kimai_url, pg_query, run_cli
from tests.replica_check import assert_replica_equals_kimai

REPLICA = "kimai_replica"
FAST = {"ATLAS_FOLLOW_INTERVAL_SECONDS": "0.5", "ATLAS_DELETE_MAX_LAG_SECONDS": "2.5"}
SLICES = 4
MULTIPLIERS = ((2654435761, 2246822519), (3266489917, 668265263))


def _expected(keys: list[tuple[int, ...]]) -> dict[int, tuple[int, int, int]]:
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key in keys:
        sums = out[key[0] - key[0] % 256]
        sums[0] += 1
        for i, mult in enumerate(MULTIPLIERS):
            h = sum((k * m) % 2**32 for k, m in zip(key, mult, strict=False)) % 2**32
            sums[i + 1] = (sums[i + 1] + h) % 2**60
    return {b: tuple(v) for b, v in out.items()}


@pytest.mark.unit
@pytest.mark.parametrize("width", [1, 2])
def test_arrow_digests_of_kimai_keys_follow_the_formula(width: int) -> None:
    import pyarrow as pa

    from pipelines.diff import packed_keys
    from pipelines.registry import TABLES
    from pipelines.sync.rangediff import key_digests

    spec = next(t for t in TABLES if len(t.primary_key) == width and t.sync != "full")
    rng = random.Random(width)
    keys = sorted({tuple(rng.randrange(1, 2**31) for _ in range(width)) for _ in range(3000)})
    keys += [(k[0] + 1, *k[1:]) for k in keys[:500]]  # buckets of several keys
    keys = sorted(set(keys))
    columns = {
        name: pa.array([k[i] for k in keys], pa.int64()) for i, name in enumerate(spec.primary_key)
    }
    got = key_digests(pa.table({"k": packed_keys(pa.table(columns), spec.primary_key)}), width)
    rows = zip(*(got.column(c).to_pylist() for c in ("bucket", "n", "h0", "h1")), strict=True)
    assert {r[0]: tuple(r[1:]) for r in rows} == _expected(keys)


def _replica_digests(atlas_db: str, table: str, key: str) -> dict[int, tuple[int, int, int]]:
    rows = pg_query(atlas_db, f"SELECT {key} FROM {REPLICA}.{table}")
    return _expected([tuple(r) for r in rows])


def _stored(atlas_db: str, table: str) -> dict[int, tuple[int, int, int]]:
    rows = pg_query(
        atlas_db,
        f"SELECT bucket, n, h0, h1 FROM {REPLICA}.sync_key_digests WHERE table_name = %s",
        (table,),
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _follower(env: dict[str, str], kimai_digests: bool = False):
    from pipelines.config import load_settings
    from pipelines.follow import Follower

    digests = {"KIMAI_KEY_DIGESTS": "true" if kimai_digests else "false"}
    return Follower(load_settings({**env, **FAST, **digests}, dotenv=False), build=False)


def _assert_stored_match_replica(atlas_db: str) -> None:
    ts = _stored(atlas_db, "timesheets")
    assert ts and ts == _replica_digests(atlas_db, "replica_kimai_timesheets", "id")
    tags = _stored(atlas_db, "timesheet_tags")
    pairs = _replica_digests(atlas_db, "replica_kimai_timesheet_tags", "timesheet_id, tag_id")
    assert tags and tags == pairs


@pytest.mark.parametrize(
    ("kimai_digests", "bucket_reads"),
    [(False, 16), (False, 0), (True, 16)],
    ids=["kimai-keys", "kimai-keys-whole-ranges", "kimai-digests"],
)
def test_stored_digests_follow_the_change_log_and_are_what_ticks_compare(
    env: dict[str, str], kimai_digests: bool, bucket_reads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kimai sends its keys (the default) or its own bucket digests (KIMAI_KEY_DIGESTS).

    With more differing buckets in a range than one query reads (``MAX_BUCKET_READS``; 0
    here: every differing bucket), the replica's keys of the whole range are read.
    """
    monkeypatch.setattr("pipelines.sync.rangediff.MAX_BUCKET_READS", bucket_reads)
    first_sync(env, seed=53, timesheets=1500)
    kimai_db, atlas_db = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    follower = _follower(env, kimai_digests)
    follower.tick()  # the first tick stores the digests from the replica tables
    _assert_stored_match_replica(atlas_db)

    # deletes and inserts in both keyed tables: in the lowest bucket, and new ids on top
    ids = [r[0] for r in kimai_query(kimai_db, "SELECT id FROM kimai2_timesheet ORDER BY id")]
    tags = [r[0] for r in kimai_query(kimai_db, "SELECT id FROM kimai2_tags ORDER BY id")]
    rng = random.Random(53)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    engine = sa.create_engine(kimai_url(kimai_db))
    try:
        with engine.connect() as conn:
            # the next bucket, in the same sweep slice, stays as it was
            picked = rng.sample(ids[:200], 80)
            for timesheet_id in picked[:40]:
                assert kimai_do.delete_timesheet(conn, timesheet_id)
            for timesheet_id in picked[40:]:
                kimai_do.add_tag(conn, timesheet_id, rng.choice(tags), now=now)
            row = conn.execute(
                sa.text("SELECT user, project_id, activity_id FROM kimai2_timesheet LIMIT 1")
            ).one()
            for day in range(5):
                kimai_do.insert_timesheet(
                    conn,
                    user=row[0],
                    project_id=row[1],
                    activity_id=row[2],
                    start=now - dt.timedelta(days=day + 1),
                    end=now - dt.timedelta(days=day + 1) + dt.timedelta(hours=2),
                    now=now,
                    tags=[tags[0]],
                )
    finally:
        engine.dispose()
    for _ in range(SLICES):
        follower.tick()
    assert_replica_equals_kimai(kimai_db, atlas_db)
    # a tick first applies the log to the stored digests (the last one's writes included):
    # its inserts and deletes moved the stored buckets exactly
    follower.tick()
    _assert_stored_match_replica(atlas_db)

    # a replica row deleted behind the log's back (its trigger switched off, no rewrite
    # row): the stored digests still say it is there, so the ticks, which compare those,
    # do not see it; the scheduled run compares the table itself and restores it
    gone = next(i for i in ids if i not in picked[:40])
    pg_query(
        atlas_db,
        "BEGIN; SET LOCAL atlas_sync.change_log = 'off';"
        f" DELETE FROM {REPLICA}.replica_kimai_timesheet_tags WHERE timesheet_id = {gone};"
        f" DELETE FROM {REPLICA}.replica_kimai_timesheets WHERE id = {gone}; COMMIT",
    )
    for _ in range(SLICES):
        follower.tick()
    held = {r[0] for r in pg_query(atlas_db, f"SELECT id FROM {REPLICA}.replica_kimai_timesheets")}
    assert gone not in held
    done = run_cli("sync", env=env)
    assert done.returncode == 0, done.stderr
    assert_replica_equals_kimai(kimai_db, atlas_db)


def test_a_wrong_stored_bucket_is_recomputed_from_the_table(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    first_sync(env, seed=59, timesheets=1500)
    atlas_db = env["ATLAS_DB_DATABASE"]
    follower = _follower(env)
    follower.tick()
    truth = _stored(atlas_db, "timesheets")
    lowest = min(truth)
    # the first slice holds the lowest keys: its next tick compares this bucket
    pg_query(
        atlas_db,
        f"UPDATE {REPLICA}.sync_key_digests SET n = n + 1, h0 = h0 + 12345"
        f" WHERE table_name = 'timesheets' AND bucket = {lowest}",
    )
    assert _stored(atlas_db, "timesheets") != truth
    for _ in range(SLICES):
        follower.tick()
    assert _stored(atlas_db, "timesheets") == truth
    assert "differed from the replica table in 1 bucket(s)" in caplog.text
    _assert_stored_match_replica(atlas_db)
