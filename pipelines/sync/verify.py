"""Stage 4 of a reconciling run: after the load, what still differs from Kimai.

The load committed; the ranges the plan found differing are compared again, Kimai against
the replica, and what still differs is the run's ``unrepaired`` figure (the audit, `status`
and the metrics show it).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.replica import Replica
from pipelines.diff import changed_rows, keys_not_in, packed_keys
from pipelines.sync.plan import TablePlan


def unrepaired(plan: TablePlan, kimai: Kimai, replica: Replica, synced_at: dt.datetime) -> int:
    """Rows of a table's reconciled ranges that still differ from Kimai after the load.

    Hashes can differ where the two servers print a value differently (doubles below
    1e-4), so keys that still differ by hash are compared exactly before they count.

    Args:
        plan: The table's plan (its range comparer, where both servers compute digests).
        kimai: Kimai's adapter.
        replica: The replica's adapter.
        synced_at: The run's ``synced_at``: rows Kimai changed after it are the next run's.

    """
    layout = plan.layout
    if plan.comparer is None:
        if layout.sync != "incremental":
            return 0
        # embedded databases: compare the whole (small) table again
        kimai_rows = kimai.read_rows(layout)
        replica_rows = replica.read_rows(layout)
    else:
        keys = plan.comparer.recheck()
        if len(keys) == 0:
            return 0
        kimai_rows = pa.concat_tables(
            [layout.data_schema.empty_table(), *kimai.read_by_keys(layout, keys)]
        )
        replica_rows = replica.read_by_keys(layout, keys)
    key, cursor = layout.key, layout.spec.cursor
    if cursor:
        # rows Kimai changed (visibly) while this run was going are the next run's work
        recent = pc.fill_null(
            pc.greater_equal(kimai_rows.column(cursor), pa.scalar(synced_at)), False
        )
        skip = packed_keys(kimai_rows.filter(recent), key)
        kimai_rows = kimai_rows.filter(pc.invert(recent))
        replica_rows = replica_rows.filter(
            pc.invert(pc.is_in(packed_keys(replica_rows, key), value_set=skip))
        )
    gone = keys_not_in(packed_keys(replica_rows, key), packed_keys(kimai_rows, key))
    return changed_rows(kimai_rows, replica_rows, key).num_rows + len(gone)
