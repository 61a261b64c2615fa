"""The cursor of a table read incrementally, and the window of Kimai rows a run re-reads.

The cursor is the newest ``modified_at`` the replica has loaded; dlt stores it in the
resource state as ISO text. The window starts `overlap_seconds` before it: Kimai stamps
``modified_at`` from the PHP clock at flush time (one-second resolution), so a row can
commit after rows with a later stamp were already read. ``--since`` adds the rows whose
local day is on or after that date. The SQL of the window is written by the Kimai reader
(`pipelines.adapters.kimai.Kimai.read_window`); this module holds only values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.types import SyncOptions


@dataclass(frozen=True)
class Window:
    """Where a table's cursor stands and which Kimai rows the run re-reads."""

    cursor: dt.datetime | None
    """The stored cursor before this run (UTC); None before the first load."""
    changed_since: dt.datetime | None = None
    """Re-read rows whose cursor column is at or after this instant (UTC)."""
    local_days_from: dt.date | None = None
    """Re-read rows whose local day (``date_tz``) is on or after this date (``--since``)."""

    @property
    def reads_rows(self) -> bool:
        """Whether the window selects any rows at all (else the run reads none by cursor)."""
        return self.changed_since is not None or self.local_days_from is not None


def incremental_window(
    state: dict[str, Any],
    options: SyncOptions,
    replica_has_rows: bool,
    newest_in_replica: Callable[[], dt.datetime | None],
) -> Window:
    """The window of one incremental table for this run.

    Args:
        state: The table's stored dlt resource state (read only here).
        options: Run options (overlap, ``--since``, full refresh).
        replica_has_rows: Whether the replica holds rows (else there is nothing to compare
            with and the whole table is read).
        newest_in_replica: Asked for the replica's newest cursor value when the state has
            none (a new working directory, no state in Atlas DB either).

    """
    cursor = parse_cursor(state.get("cursor"))
    if cursor is None and replica_has_rows:
        cursor = newest_in_replica()
    if options.full_refresh or not replica_has_rows:
        return Window(cursor)  # the whole table is read anyway
    start = cursor - dt.timedelta(seconds=options.overlap_seconds) if cursor is not None else None
    return Window(cursor, changed_since=start, local_days_from=options.since)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (naive values are UTC, as Kimai stores them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_cursor(value: str | None) -> dt.datetime | None:
    """The cursor as dlt's state stores it (ISO text) → an aware datetime."""
    return as_utc(dt.datetime.fromisoformat(value)) if value else None


def format_cursor(value: dt.datetime | None) -> str | None:
    """The cursor as dlt's state stores it."""
    return value.isoformat() if value is not None else None


def max_cursor(current: dt.datetime | None, column: pa.ChunkedArray) -> dt.datetime | None:
    """The newer of `current` and the newest value of `column`."""
    top = pc.max(column).as_py()
    if top is None:
        return current
    top = as_utc(top)
    return top if current is None or top > current else current
