"""Per-run plan of each table: full key sets of Kimai and the replica, and what they imply.

Kimai hard-deletes rows (and cascades) without touching any change column, so the only
way to see deletes without binlog access is to compare the key sets. The comparison is
keys only (8 bytes a row), read from both databases concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.diff import keys_not_in, packed_keys
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
    deleted: pa.Array = field(init=False)
    """Keys the replica has and Kimai no longer has."""
    missing: pa.Array = field(init=False)
    """Keys Kimai has and the replica lacks."""

    def __post_init__(self) -> None:
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


def plan_tables(kimai: Kimai, replica: Replica, layouts: Sequence[TableLayout]) -> list[TablePlan]:
    """Read the key sets of every table from both sides (in parallel) and diff them."""

    def plan(layout: TableLayout) -> TablePlan:
        with ThreadPoolExecutor(max_workers=2) as pool:
            k = pool.submit(kimai.read_keys, layout)
            r = pool.submit(replica.read_keys, layout)
            kimai_keys, replica_keys = k.result(), r.result()
        return TablePlan(
            layout=layout,
            kimai_keys=packed_keys(kimai_keys, layout.key),
            replica_keys=packed_keys(replica_keys, layout.key),
            replica_columns=replica.table_columns(layout.spec.replica_table),
        )

    return [plan(layout) for layout in layouts]


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
