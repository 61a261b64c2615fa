"""The range-digest comparer against real MariaDB and PostgreSQL, for key sets and rows.

The digest path must find exactly what reading every key finds, including the case a count
cannot see (a bucket that lost one key on each side), and must not move the keys of
buckets that agree. Comparing rows must find exactly the rows changed behind the cursor.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.replica import open_replica
from pipelines.config import load_settings
from pipelines.demo.kimai_data import build_kimai
from pipelines.registry import TABLES_BY_NAME
from pipelines.sync import rangediff
from pipelines.sync.rangediff import BUCKET, Comparison, Mode, RangeComparer
from tests.conftest import kimai_exec, kimai_url, pg_query, sync_now
from tests.replica_check import assert_replica_equals_kimai

REPLICA = "kimai_replica"
DIGEST_BUCKET = BUCKET["keys"]


def compare(kimai, replica, layout, digests: bool, mode: Mode = "keys") -> Comparison:
    return RangeComparer(kimai, replica, layout, mode, digests).compare()


@pytest.fixture
def synced(env) -> str:
    build_kimai(kimai_url(env["KIMAI_DB_DATABASE"]), seed=11, timesheets=3000)
    sync_now()
    return env["KIMAI_DB_DATABASE"]


@pytest.fixture
def sides(synced) -> Iterator[tuple[Kimai, object, dict]]:
    settings = load_settings(dotenv=False)
    kimai, replica = Kimai(settings), open_replica(settings)
    specs = [TABLES_BY_NAME["timesheets"], TABLES_BY_NAME["timesheet_tags"]]
    layouts = {layout.spec.name: layout for layout in kimai.layouts(specs)}
    try:
        yield kimai, replica, layouts
    finally:
        kimai.close()
        replica.close()


def _found(diff: Comparison) -> tuple[list[int], list[int], int, int]:
    # lists, not sets: a key found twice (by two overlapping reads) is a bug too
    return (
        sorted(diff.deleted.to_pylist()),
        sorted(diff.missing.to_pylist()),
        diff.kimai_count,
        diff.replica_count,
    )


@pytest.mark.parametrize(
    ("range_keys", "bucket_reads"),
    [(250_000, 16), (500, 16), (500, 0)],
    ids=["one-range", "range-per-bucket", "whole-ranges-reread"],
)
def test_digests_find_what_reading_every_key_finds(
    sides, env, monkeypatch, range_keys, bucket_reads
):
    # ranges of 500 ids are rounded down to one bucket each: 0, 256, 512, ...
    monkeypatch.setattr(rangediff, "TARGET_KEYS", range_keys)
    monkeypatch.setattr(rangediff, "MIN_WIDTH", 100)
    monkeypatch.setattr(rangediff, "MAX_BUCKET_READS", bucket_reads)
    kimai, replica, layouts = sides
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    timesheets = layouts["timesheets"]
    # equal sets: nothing found, the keys themselves never read
    before = kimai.bytes_read.get("timesheets", 0)
    quiet = compare(kimai, replica, timesheets, digests=True)
    assert _found(quiet) == ([], [], 3000, 3000)
    digest_bytes = kimai.bytes_read["timesheets"] - before
    compare(kimai, replica, timesheets, digests=False)
    key_bytes = kimai.bytes_read["timesheets"] - before - digest_bytes
    assert digest_bytes * 10 < key_bytes, (digest_bytes, key_bytes)

    # one bucket loses a different key on each side: same count, different sets
    a, b = DIGEST_BUCKET + 3, DIGEST_BUCKET + 9
    kimai_exec(db, f"DELETE FROM kimai2_timesheet WHERE id = {a}")
    pg_query(atlas, f"DELETE FROM {REPLICA}.replica_kimai_timesheets WHERE id = {b}")
    # keys in the middle of buckets, a bucket's ends, the last
    ends = [1290, 1510, 4 * DIGEST_BUCKET, 5 * DIGEST_BUCKET - 1, 2999]
    kimai_exec(db, f"DELETE FROM kimai2_timesheet WHERE id IN ({', '.join(map(str, ends))})")
    pair = pg_query(
        atlas,
        f"SELECT timesheet_id, tag_id FROM {REPLICA}.replica_kimai_timesheet_tags"
        f" WHERE timesheet_id > {3 * DIGEST_BUCKET} ORDER BY 1, 2 LIMIT 1",
    )[0]
    pg_query(
        atlas,
        f"DELETE FROM {REPLICA}.replica_kimai_timesheet_tags"
        f" WHERE timesheet_id = {pair[0]} AND tag_id = {pair[1]}",
    )

    for layout in layouts.values():
        with_digests = _found(compare(kimai, replica, layout, digests=True))
        every_key = _found(compare(kimai, replica, layout, digests=False))
        assert with_digests == every_key, layout.spec.name
    deleted, missing, kimai_rows, replica_rows = _found(
        compare(kimai, replica, timesheets, digests=True)
    )
    assert deleted == sorted([a, *ends])
    assert missing == [b]
    assert (kimai_rows, replica_rows) == (2994, 2999)
    _, pairs_missing, _, _ = _found(
        compare(kimai, replica, layouts["timesheet_tags"], digests=True)
    )
    assert (pair[0] << 32 | pair[1]) in pairs_missing


def test_a_sync_with_digests_deletes_exactly_and_reads_few_bytes(synced, env, monkeypatch):
    db = env["KIMAI_DB_DATABASE"]
    quiet = {s.table: s for s in sync_now().tables}
    monkeypatch.setenv("KIMAI_KEY_DIGESTS", "true")
    quiet_digests = {s.table: s for s in sync_now().tables}
    # the tag pairs are only key-compared: their bytes are the key sets (or their digests)
    pairs, pairs_digests = (
        quiet["timesheet_tags"].kimai_bytes_read,
        quiet_digests["timesheet_tags"].kimai_bytes_read,
    )
    assert pairs_digests * 10 < pairs, (pairs_digests, pairs)

    kimai_exec(db, "DELETE FROM kimai2_timesheet WHERE id IN (5, 700, 701, 2500)")
    result = {s.table: s for s in sync_now().tables}
    assert result["timesheets"].deleted == 4
    assert result["timesheet_tags"].deleted > 0
    assert_replica_equals_kimai(db, env["ATLAS_DB_DATABASE"])


def test_rows_mode_finds_exactly_the_changed_and_one_sided_rows(sides, env) -> None:
    kimai, replica, layouts = sides
    db, atlas = env["KIMAI_DB_DATABASE"], env["ATLAS_DB_DATABASE"]
    timesheets = layouts["timesheets"]
    quiet = RangeComparer(kimai, replica, timesheets, "rows", digests=True)
    found = quiet.compare()
    assert (found.kimai_count, found.replica_count, found.differing.to_pylist()) == (3000, 3000, [])
    assert quiet.stats.buckets_differing == 0
    # changes no cursor sees: a silent rate change, a NULL that becomes '', a boolean
    kimai_exec(
        db,
        "UPDATE kimai2_timesheet SET rate = rate + 0.01 WHERE id = 17",
        "UPDATE kimai2_timesheet SET description = '' WHERE id = 64",
        "UPDATE kimai2_timesheet SET exported = 1 - exported WHERE id = 2048",
        "DELETE FROM kimai2_timesheet WHERE id = 900",
    )
    pg_query(atlas, f"DELETE FROM {REPLICA}.replica_kimai_timesheets WHERE id = 1500")
    pg_query(
        atlas, f"UPDATE {REPLICA}.replica_kimai_timesheets SET description = NULL WHERE id = 64"
    )
    comparer = RangeComparer(kimai, replica, timesheets, "rows", digests=True)
    found = comparer.compare()
    assert found.deleted.to_pylist() == [900]
    assert found.missing.to_pylist() == [1500]
    assert found.changed.to_pylist() == [17, 64, 2048]
    assert found.differing.to_pylist() == [17, 64, 900, 1500, 2048]
    assert (found.kimai_count, found.replica_count) == (2999, 2999)
    # only the differing buckets' rows were hashed one by one
    assert comparer.stats.buckets_differing == 5
    assert comparer.recheck().to_pylist() == [17, 64, 900, 1500, 2048]
