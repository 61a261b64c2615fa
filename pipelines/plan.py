"""Per-run plan of each table: full key sets of Kimai and the replica, and what they imply.

Kimai hard-deletes rows (and cascades) without touching any change column, so the only
way to see deletes without binlog access is to compare the key sets. The comparison is
keys only (8 bytes a row) for the big tables; the small ``full`` tables are read whole,
since every run compares all their rows anyway. All reads of all tables, on both sides,
run concurrently: the drivers release the GIL while the servers work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.diff import keys_not_in, packed_keys, same_key_sets
from pipelines.errors import MassDeleteRefused
from pipelines.kimai import Kimai
from pipelines.layout import TableLayout
from pipelines.replica import Replica


@dataclass
class TablePlan:
    """What one run knows about a table before it extracts anything."""

    layout: TableLayout
    kimai_keys: pa.Array
    replica_keys: pa.Array
    replica_columns: list[str]
    """Columns the replica table has now (empty: no table yet)."""
    kimai_rows: pa.Table | None = None
    """Whole Kimai table, for ``full`` tables."""
    replica_rows: pa.Table | None = None
    """Whole replica table, for ``full`` tables."""
    cursor: dt.datetime | None = None
    """Stored cursor of an ``incremental`` table (before this run)."""
    window_rows: pa.Table | None = None
    """Kimai rows in the cursor window of an ``incremental`` table."""
    deleted: pa.Array = field(init=False)
    """Keys the replica has and Kimai no longer has."""
    missing: pa.Array = field(init=False)
    """Keys Kimai has and the replica lacks."""

    def __post_init__(self) -> None:
        if same_key_sets(self.kimai_keys, self.replica_keys):  # the usual case, and cheap
            self.deleted = self.missing = pa.array([], pa.int64())
        else:
            self.deleted = keys_not_in(self.replica_keys, self.kimai_keys)
            self.missing = keys_not_in(self.kimai_keys, self.replica_keys)

    @property
    def replica_exists(self) -> bool:
        """Whether the replica table exists."""
        return bool(self.replica_columns)

    @property
    def new_columns(self) -> list[str]:
        """Kimai columns the existing replica table lacks (a Kimai upgrade added them)."""
        if not self.replica_columns:
            return []
        return [n for n in self.layout.names if n not in self.replica_columns]

    @property
    def name(self) -> str:
        """Short table name."""
        return self.layout.spec.name


PLAN_WORKERS = 4
"""Concurrent reads while planning (each a query on one of the two servers)."""


@dataclass(frozen=True)
class Window:
    """Where an ``incremental`` table's cursor stands and what to re-read from Kimai."""

    cursor: dt.datetime | None
    predicate: str | None


def plan_tables(
    kimai: Kimai,
    replica: Replica,
    layouts: Sequence[TableLayout],
    windows: Mapping[str, Window] | None = None,
) -> list[TablePlan]:
    """Read what every table needs from both sides, concurrently, and diff the key sets.

    Args:
        kimai: Kimai reader.
        replica: Replica reader.
        layouts: The tables.
        windows: Per incremental table, its cursor and the Kimai rows to re-read; the
            window query (a scan of Kimai's table) runs alongside the key reads.

    """
    windows = windows or {}
    with ThreadPoolExecutor(max_workers=PLAN_WORKERS, thread_name_prefix="plan") as pool:
        window_reads = {
            name: pool.submit(kimai.read_rows, layout, w.predicate)
            for layout in layouts
            if (w := windows.get(name := layout.spec.name)) is not None and w.predicate
        }
        columns = {
            layout.spec.name: pool.submit(replica.table_columns, layout.spec.replica_table)
            for layout in layouts
        }
        reads = {}
        for layout in layouts:
            whole = layout.spec.sync == "full"
            reads[layout.spec.name] = (
                pool.submit(kimai.read_rows if whole else kimai.read_keys, layout),
                pool.submit(replica.read_rows if whole else replica.read_keys, layout),
            )
        plans = []
        for layout in layouts:
            name = layout.spec.name
            kimai_data, replica_data = (f.result() for f in reads[name])
            whole = layout.spec.sync == "full"
            window = windows.get(name)
            plans.append(
                TablePlan(
                    layout=layout,
                    kimai_keys=packed_keys(kimai_data, layout.key),
                    replica_keys=packed_keys(replica_data, layout.key),
                    replica_columns=columns[name].result(),
                    kimai_rows=kimai_data if whole else None,
                    replica_rows=replica_data if whole else None,
                    cursor=window.cursor if window else None,
                    window_rows=window_reads[name].result() if name in window_reads else None,
                )
            )
    return plans


def check_mass_delete(
    plans: Sequence[TablePlan], max_share: float, min_rows: int, allowed: bool
) -> None:
    """Refuse a run that would delete a large share of any table.

    A Kimai pointed at an empty or wrong database, or a truncated table, looks exactly like
    a mass delete. The check runs before anything is extracted, so a refused run changes
    nothing in Atlas DB and advances no state.

    Raises:
        MassDeleteRefused: Unless `allowed`, when a table would lose more than `max_share` of
            its replica rows (and at least `min_rows` rows), or every row.

    """
    if allowed:
        return
    for p in plans:
        before = len(p.replica_keys)
        gone = len(p.deleted)
        if before == 0 or gone == 0:
            continue
        everything = gone == before
        if everything or (gone > max_share * before and gone >= min_rows):
            raise MassDeleteRefused(
                f"refusing to delete {gone:,} of {before:,} rows ({gone / before:.0%}) of"
                f" {p.layout.spec.replica_table}: Kimai ({p.layout.kimai_name}) has"
                f" {len(p.kimai_keys):,} rows; the limit is ATLAS_MASS_DELETE_MAX_SHARE="
                f"{max_share:g}. If Kimai really deleted them, rerun with --allow-mass-delete"
            )
