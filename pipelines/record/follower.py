"""The follower's heartbeat row in Atlas DB: where its feed stands and how far behind it is.

One row per feed in ``sync_follower`` (the replica schema, beside the run audit; the BI
role gets no grant on it). A follower tick that changed nothing writes this row only, so a
30-second tick adds no audit rows; ``status``, ``/metrics``, the health page and
``vw_sync_health`` read the lag from it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pipelines.adapters.binlog import BinlogPosition
from pipelines.adapters.layout import quote_ansi
from pipelines.adapters.replica import Replica
from pipelines.window import as_utc

FOLLOWER = "sync_follower"

FEED = "poll"
"""The default feed: it polls Kimai with SELECT."""

BINLOG_FEED = "binlog"
"""The feed of ``KIMAI_BINLOG=on``: it reads Kimai's binlog for changed keys."""

_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    feed varchar(16) PRIMARY KEY,
    host varchar(255) NOT NULL,
    pid integer NOT NULL,
    position text NOT NULL,
    last_tick_at timestamptz NOT NULL,
    -- the start of the newest tick that succeeded: the replica holds Kimai as of then
    caught_up_at timestamptz,
    status varchar(16) NOT NULL,
    error text,
    -- the newest tick's wall time, and its run in the audit (NULL: a quiet tick, unrecorded)
    last_tick_seconds double precision,
    last_run_id varchar(32)
)"""


@dataclass(frozen=True)
class Position:
    """Where the poll feed's key sweep stands, and what its current cycle deleted.

    A cycle is `slices` ticks: slice ``i`` of every keyed table's key range is compared on
    tick ``i``. The deletes of the cycle so far count against the mass-delete guard, so a
    table emptied one slice per tick trips it as a single mass delete would.
    """

    slice: int = 0
    slices: int = 1
    cycle_deleted: dict[str, int] = field(default_factory=dict)
    binlog: BinlogPosition | None = None
    """The binlog feed's place in Kimai's binlog: every event before it is in the replica."""

    def advanced(self, deleted: dict[str, int], slices: int, count: int = 1) -> Position:
        """The position after a tick that compared `count` slices and deleted `deleted` rows.

        A changed slice count (a new interval or lag setting) starts a new cycle.
        """
        if slices != self.slices:
            return Position(0, slices)
        following = self.slice + count
        if following == slices:
            return Position(0, slices)
        if following > slices:
            # on into the next cycle: its count starts with this tick's deletes (some were
            # in the old cycle's slices; counting them too only makes the guard stricter)
            return Position(following - slices, slices, {t: n for t, n in deleted.items() if n})
        total = dict(self.cycle_deleted)
        for table, n in deleted.items():
            if n:
                total[table] = total.get(table, 0) + n
        return Position(following, slices, total)

    def to_json(self) -> str:
        """The stored form."""
        data: dict[str, Any] = {
            "slice": self.slice,
            "slices": self.slices,
            "cycle_deleted": self.cycle_deleted,
        }
        if self.binlog is not None:
            data["binlog"] = self.binlog.to_json()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Position:
        """Read the stored form; an unreadable one starts a new cycle."""
        try:
            data = json.loads(text)
            return cls(
                int(data["slice"]),
                int(data["slices"]),
                {str(k): int(v) for k, v in data.get("cycle_deleted", {}).items()},
                BinlogPosition.from_json(data.get("binlog")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class Heartbeat:
    """The stored row of one feed."""

    feed: str
    position: Position
    last_tick_at: dt.datetime
    caught_up_at: dt.datetime | None
    status: str
    error: str | None = None
    last_tick_seconds: float | None = None
    last_run_id: str | None = None
    """The newest tick's run in the audit; None for a quiet tick (it records none)."""

    def lag_seconds(self, now: dt.datetime | None = None) -> float | None:
        """Seconds the replica may be behind Kimai: since the newest good tick started."""
        if self.caught_up_at is None:
            return None
        return max(0.0, ((now or dt.datetime.now(dt.UTC)) - self.caught_up_at).total_seconds())


def ensure_table(replica: Replica) -> None:
    """Create the heartbeat table if it is missing (the schema exists: the audit made it)."""
    replica.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ansi(replica.schema)}")
    replica.execute(_DDL.format(table=replica.qualified(FOLLOWER)))


def read(replica: Replica, feed: str | None = None) -> Heartbeat | None:
    """The feed's heartbeat (None: the newest of any feed's), or None when none ticked."""
    if not replica.exists(FOLLOWER):
        return None
    rows = replica.query(
        "SELECT feed, position, last_tick_at, caught_up_at, status, error"
        f" FROM {replica.qualified(FOLLOWER)} WHERE feed = coalesce(%s, feed)"
        " ORDER BY last_tick_at DESC LIMIT 1",
        (feed,),
    )
    if not rows:
        return None
    name, position, last_tick_at, caught_up_at, status, error = rows[0]
    return Heartbeat(
        name,
        Position.from_json(position),
        as_utc(last_tick_at),
        None if caught_up_at is None else as_utc(caught_up_at),
        status,
        error,
    )


def write(replica: Replica, beat: Heartbeat) -> None:
    """Store the feed's heartbeat (one row per feed, replaced)."""
    replica.execute(
        f"INSERT INTO {replica.qualified(FOLLOWER)} (feed, host, pid, position, last_tick_at,"
        " caught_up_at, status, error, last_tick_seconds, last_run_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (feed) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
        " position = excluded.position, last_tick_at = excluded.last_tick_at,"
        " caught_up_at = excluded.caught_up_at, status = excluded.status,"
        " error = excluded.error, last_tick_seconds = excluded.last_tick_seconds,"
        " last_run_id = excluded.last_run_id",
        (
            beat.feed,
            socket.gethostname(),
            os.getpid(),
            beat.position.to_json(),
            beat.last_tick_at,
            beat.caught_up_at,
            beat.status,
            beat.error,
            beat.last_tick_seconds,
            beat.last_run_id,
        ),
    )
