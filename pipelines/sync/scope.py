"""What a binlog tick compares: the keys Kimai's binlog named, and the deletes' cascades.

MariaDB logs the rows a statement deletes, not the rows its foreign keys' ``ON DELETE
CASCADE`` removes with them (a customer's projects, their activities and timesheets, the
timesheets' tags). Those are derived here from the registry's references and the replica,
which still holds the children: every child of a deleted parent is compared with Kimai, in
registry order (parents first), so a cascade several levels deep is followed to its end.
A child Kimai still has (Kimai's "delete and move records to" moved it first, an UPDATE the
binlog carries) is compared like any other row and kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipelines.adapters.binlog import MAX_KEYS, BinlogChanges
from pipelines.registry import TableSpec
from pipelines.types import Scope

Children = Callable[[TableSpec, str, set[int]], set[int]]
"""Keys of the replica rows of a table whose `column` holds one of the values."""


@dataclass(frozen=True)
class TickPlan:
    """The tables a binlog tick syncs, and how much of each."""

    tables: list[str]
    """Short names, in registry order."""
    scopes: dict[str, Scope]
    """Tables compared by these rows only; the others in `tables` are compared whole."""
    whole: dict[str, str]
    """Why a table is compared whole (a statement, a DDL, too many keys)."""


def tick_plan(changes: BinlogChanges, specs: Sequence[TableSpec], children: Children) -> TickPlan:
    """The tables and rows a tick compares for what the binlog found.

    ``full`` tables (small, read whole on every sync) take no scope: any key or cascade
    puts the whole table in. A scope over `MAX_KEYS` values compares the table whole.
    """
    deleted = {name: set(keys) for name, keys in changes.deleted.items()}
    whole = dict(changes.whole)
    tables: list[str] = []
    scopes: dict[str, Scope] = {}
    for spec in specs:
        filters = _filters(spec, changes, deleted, children)
        if spec.name not in whole and not filters:
            continue
        tables.append(spec.name)
        if spec.name in whole or spec.sync == "full":
            continue
        scope = Scope(tuple((column, tuple(sorted(values))) for column, values in filters.items()))
        if scope.size > MAX_KEYS:
            whole[spec.name] = f"more than {MAX_KEYS:,} keys to compare"
        else:
            scopes[spec.name] = scope
    return TickPlan(tables, scopes, whole)


def _filters(
    spec: TableSpec,
    changes: BinlogChanges,
    deleted: dict[str, set[int]],
    children: Children,
) -> dict[str, set[int]]:
    """`spec`'s filter values: its logged keys and its rows under deleted parents.

    A one-column key gets the children's keys from the replica (they may be parents in
    turn: they join `deleted` as candidates); a pair table filters on the reference column.
    """
    first = spec.primary_key[0]
    filters: dict[str, set[int]] = {}
    if changes.keys.get(spec.name):
        filters[first] = set(changes.keys[spec.name])
    for ref in spec.references:
        parents = deleted.get(ref.parent)
        if not parents:
            continue
        if ref.column == first:
            filters.setdefault(first, set()).update(parents)
        elif len(spec.primary_key) == 1:
            keys = children(spec, ref.column, parents)
            if keys:
                filters.setdefault(first, set()).update(keys)
                deleted.setdefault(spec.name, set()).update(keys)
        else:
            filters.setdefault(ref.column, set()).update(parents)
    return {column: values for column, values in filters.items() if values}
