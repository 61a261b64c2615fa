"""The follower's binlog feed (``KIMAI_BINLOG=on``): each tick's run, from Kimai's binlog.

A tick reads the binlog from the stored position to its end (`pipelines.adapters.binlog`)
and turns what it found into one run: the tables whose keys were logged, compared by those
keys only (`pipelines.sync.scope`, which adds the deletes' cascades), and the tables a
statement or DDL named, compared whole. Nothing logged: no run at all, Kimai is not queried.

The position moves only once the run's sync went through, so a tick that failed or was
killed reads the same events again. A position the binlog no longer holds (purged by
``expire_logs_days``, a ``RESET MASTER``), or none yet, makes the tick a full resync:
the binlog's end is taken first, then every table is compared whole, every row by digest,
and streaming resumes from the end taken, so nothing written meanwhile is missed. A tick
with a table to compare whole (a statement, a DDL, a bulk change of more than `MAX_KEYS`
rows) compares it row by row, as ``reconcile`` does: a statement's UPDATE may leave
``modified_at`` alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipelines.adapters.binlog import BinlogPosition, BinlogReader
from pipelines.adapters.replica import Replica
from pipelines.config import Settings
from pipelines.errors import ConfigError
from pipelines.registry import TABLES, TableSpec
from pipelines.sync.scope import tick_plan
from pipelines.types import SyncOptions

log = logging.getLogger("pipelines.follow")


@dataclass(frozen=True)
class BinlogStep:
    """What one tick of the binlog feed runs, and where the feed stands once it went through."""

    options: SyncOptions | None
    """The run's options (None: nothing was logged, a quiet tick runs nothing)."""
    tables: list[str] | None
    """The tables the run syncs (None: every table)."""
    end: BinlogPosition
    resync: str | None = None
    """Why this tick is a full resync (None: it streams)."""


class BinlogFeed:
    """The binlog reader the follower keeps between ticks, and how a tick uses it."""

    def __init__(self, settings: Settings) -> None:
        if settings.kimai_dialect != "mysql":
            raise ConfigError("KIMAI_BINLOG=on needs Kimai on MariaDB or MySQL")
        self.settings = settings
        self.reader = BinlogReader(settings, TABLES)
        self.checked = False

    def step(self, start: BinlogPosition | None, replica: Replica) -> BinlogStep:
        """The tick's run, from `start` (the stored position) to the binlog's end.

        Raises:
            ConfigError: The server keeps no binlog, or the login may not read it.
            DatabaseError: Kimai could not be reached, or the stream broke off.

        """
        if not self.checked:
            self.reader.check()
            self.checked = True
        if start is None or not self.reader.readable(start):
            end = self.reader.current()
            why = (
                "no binlog position stored yet"
                if start is None
                else f"{start.file}:{start.pos} is no longer in Kimai's binlog (purged or reset)"
            )
            options = SyncOptions(overlap_seconds=self.settings.overlap_seconds, reconcile=True)
            return BinlogStep(options, None, end, why)
        changes = self.reader.read(start)
        if changes.empty:
            return BinlogStep(None, None, changes.end)
        plan = tick_plan(changes, TABLES, lambda spec, c, v: _children(replica, spec, c, v))
        for name, why in plan.whole.items():
            log.info("binlog feed: %s compared whole (%s)", name, why)
        # a statement names no keys, and its UPDATE may leave modified_at alone: the tables
        # compared whole are compared row by row (digests), as `reconcile` does
        options = SyncOptions(
            overlap_seconds=self.settings.overlap_seconds,
            scopes=plan.scopes,
            reconcile=bool(plan.whole),
        )
        return BinlogStep(options, plan.tables, changes.end)

    def moved(self, since: BinlogPosition | None) -> bool:
        """Whether the binlog grew past `since` (a cheap status query; True on error)."""
        try:
            return since is None or self.reader.current() != since
        except Exception:  # the tick that follows reports what is wrong
            return True


def _children(replica: Replica, spec: TableSpec, column: str, values: set[int]) -> set[int]:
    """Keys of `spec`'s replica rows whose `column` holds one of `values` (one-column key)."""
    if not replica.exists(spec.replica_table):
        return set()
    return set(replica.keys_referencing(spec, {column: sorted(values)}).to_pylist())
