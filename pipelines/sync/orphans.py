"""Rows whose foreign key would dangle after this run: found cheaply, re-read from Kimai.

Kimai's "delete and move records to" action (user, project, activity, customer) rewrites
the children's foreign key by a bulk UPDATE that leaves ``modified_at`` alone, then
deletes the parent. The timesheet cursor cannot see the move, while the key sets see the
delete: without this check the replica keeps timesheets pointing at a parent it no longer
has.

Tables compared whole on every run (projects, activities, customers, users, tags and the
tag pairs) follow Kimai's own rows, so only tables read by cursor need the check. For each
of their references:

1. the distinct values of the replica's foreign-key column, read through its index (a skip
   scan: one index probe per distinct value, not a scan of the table);
2. those the parent will not have once this run is applied (the parent's Kimai key set
   when the parent is synced in this run, else the replica's);
3. the keys of the replica rows holding one of those values, through the same index.

Those rows are then read from Kimai by primary key like any other candidate: moved rows
arrive with their new parent, rows Kimai deleted are already among the run's deletes. The
cost is a few index probes per distinct value plus the affected rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipelines.adapters.replica import Replica
from pipelines.diff import keys_not_in, packed_keys
from pipelines.registry import TABLES_BY_NAME
from pipelines.sync.plan import TablePlan


def parent_keys_after_run(parent: str, plans: Sequence[TablePlan], replica: Replica) -> pa.Array:
    """The keys table `parent` will hold once this run is applied.

    Raises:
        ValueError: The parent is synced in this run by a mode whose plan does not hold its
            whole key set (the registry only references tables compared whole).

    """
    plan = next((p for p in plans if p.name == parent), None)
    if plan is None:
        return replica.key_set(TABLES_BY_NAME[parent])
    if plan.kimai_rows is None:
        raise ValueError(f"{parent}: a referenced table must be read whole by its plan")
    return packed_keys(plan.kimai_rows, plan.layout.key)


def find_orphans(plan: TablePlan, plans: Sequence[TablePlan], replica: Replica) -> pa.Array:
    """Keys of the replica rows of `plan`'s table whose reference will dangle after this run.

    Args:
        plan: A table read by cursor, planned with its `reference_values`.
        plans: This run's plans of every table it syncs.
        replica: The replica reader.

    Returns:
        Packed keys, sorted (rows this run deletes anyway included).

    """
    used = plan.reference_values
    assert used is not None, "plan_tables was not asked for this table's references"
    dangling: dict[str, pa.Array] = {}
    for ref in plan.layout.spec.references:
        if len(used[ref.column]) == 0:
            continue
        gone = keys_not_in(used[ref.column], parent_keys_after_run(ref.parent, plans, replica))
        if len(gone):
            dangling[ref.column] = gone
    if not dangling:
        return pa.array([], pa.int64())
    return replica.keys_referencing(
        plan.layout.spec, {column: ids.to_pylist() for column, ids in dangling.items()}
    )
