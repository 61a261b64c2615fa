"""The follower (`python -m pipelines.run follow`): the replica within seconds of Kimai.

Each tick is one scheduled run (sync, then the gated dbt build) under the run lock, so a
cron run, ``reconcile`` or ``transform`` interleave with it safely: a tick that finds the
lock held waits for it a while, then tries again on the next tick, and the lock stays free
for a moment between ticks, so a run waiting for it gets it. What a tick does more
than a scheduled run:

- the key sweep compares one slice of each keyed table's key range, plus the keys above
  the replica's newest (`pipelines.types.Sweep`); the slices rotate so that every range is
  compared within ``ATLAS_DELETE_MAX_LAG_SECONDS``, more than one per tick when ticks take
  longer than the interval (`slices_due`);
- the deletes of the sweep's cycle add up for the mass-delete guard, so a table emptied
  slice by slice stops the follower as one mass delete stops a run;
- a tick that changed nothing and built nothing writes its heartbeat row only
  (`pipelines.record.follower`), no audit rows.

With ``KIMAI_BINLOG=on`` the ticks read Kimai's binlog instead of sweeping key ranges
(`pipelines.follow_binlog`): a tick compares only the keys the binlog named, runs nothing
when nothing was logged, and the follower starts the next tick as soon as the binlog grows
(checked every second) rather than after the interval.

SIGTERM (or SIGINT) lets the tick under way finish, then the follower exits 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable

from pipelines.adapters.connections import Connections
from pipelines.adapters.kimai import Kimai
from pipelines.config import Settings
from pipelines.errors import ConfigError, LockHeld, MassDeleteRefused, PipelineError
from pipelines.follow_binlog import BinlogFeed, BinlogStep
from pipelines.lock import POLL_SECONDS
from pipelines.record import follower
from pipelines.record.audit import Audit
from pipelines.registry import TABLES
from pipelines.runner import RunOutcome, RunRequest, execute
from pipelines.types import Sweep, SyncOptions

log = logging.getLogger("pipelines.follow")

LOCK_GAP_SECONDS = 2 * POLL_SECONDS
"""The least time the lock stays free between ticks: a run waiting for it polls every
`POLL_SECONDS`, so it takes the lock before the next tick even when ticks overrun."""

BINLOG_CHECK_SECONDS = 1.0
"""How often the binlog feed asks where Kimai's binlog ends, between ticks."""

INDEX_NEEDED_ROWS = 1_000_000
"""Above this many rows, a cursor table's change column needs an index for the follower:
without it each tick scans the table (~0.37 s of MariaDB time per million rows), and past
1M timesheets the table no longer fits Kimai's default 128 MiB buffer pool, so every tick
also reads it from disk and evicts Kimai's own pages (docs/kimai-index.md)."""


class StopRequest:
    """The follower's stop flag, safe to set from a signal handler.

    `threading.Event` is not: its `set` takes the lock its own `wait` holds, so a SIGTERM
    that lands while the main thread is inside `wait` deadlocks the handler against the
    very thread it runs on (a follower that never stopped, under load, in the tests).
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Ask the follower to stop after the tick under way."""
        self._set = True

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less when a stop is asked for meanwhile."""
        end = time.monotonic() + timeout
        while not self._set and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return self._set


def slices_due(
    slices: int, period_seconds: float, tick_seconds: float, max_lag_seconds: float
) -> int:
    """How many slices a tick compares, when ticks start `period_seconds` apart.

    A slice compared by one tick must come round again, and that tick end, within
    ``ATLAS_DELETE_MAX_LAG_SECONDS``: at most ``(max_lag - tick) // period`` ticks later.
    While ticks keep to the interval that is one slice per tick (`sweep_slices`); when they
    start later and take longer (a build longer than the interval), each compares more.

    Args:
        slices: Slices per cycle.
        period_seconds: From the start of the tick before to the start of this one.
        tick_seconds: How long the tick before took.
        max_lag_seconds: ``ATLAS_DELETE_MAX_LAG_SECONDS``.

    """
    rounds = math.floor((max_lag_seconds - tick_seconds) / max(period_seconds, 1e-3))
    return min(slices, -(-slices // max(1, rounds)))


def sweep_slices(interval_seconds: float, max_lag_seconds: float) -> int:
    """Slices per sweep cycle: every range compared within `max_lag_seconds`.

    One tick's interval is left for the tick itself, so a cycle of ``slices`` ticks ends
    within the lag even when ticks start late.
    """
    return max(1, math.floor(max_lag_seconds / interval_seconds) - 1)


class Follower:
    """The follower's loop and its state between ticks.

    Args:
        settings: Runtime settings.
        say: Called with one line per tick that changed rows or built (quiet ticks say
            nothing).
        stop: Set to end the loop once the tick under way is done (SIGTERM sets it).
        allow_mass_delete: Start a new sweep cycle and skip the mass-delete guard until it
            ends: after the guard stopped the follower and Kimai's deletes were found to be
            real.
        build: Run the gated dbt build on each tick (False: sync only; the views read
            the replica as it is, and the scheduled job builds).

    """

    def __init__(
        self,
        settings: Settings,
        say: Callable[[str], None] | None = None,
        stop: StopRequest | None = None,
        allow_mass_delete: bool = False,
        build: bool = True,
    ) -> None:
        self.settings = settings
        self.build = build
        self.allow_mass_delete = allow_mass_delete
        self.say = say or (lambda _line: None)
        self.stop = stop or StopRequest()
        self.interval = settings.follow_interval_seconds
        self.slices = sweep_slices(self.interval, settings.delete_max_lag_seconds)
        self.position: follower.Position | None = None
        """Where the feed stands; read from the heartbeat by the first tick that can."""
        self.caught_up_at: dt.datetime | None = None
        self.binlog = BinlogFeed(settings) if settings.kimai_binlog else None
        self.feed = follower.BINLOG_FEED if self.binlog is not None else follower.FEED
        self.connections: Connections | None = None
        """Kept between ticks (`pipelines.adapters.connections`); dropped when a tick fails."""

    def _kept(self) -> Connections:
        """The kept connections (opened now if none are kept)."""
        if self.connections is None:
            lag = self.settings.delete_max_lag_seconds
            self.connections = Connections(self.settings, layouts_max_age_seconds=lag)
        return self.connections

    def close(self) -> None:
        """Close what the follower keeps: its connections, the binlog reader."""
        self._drop_connections()
        if self.binlog is not None:
            self.binlog.reader.close()

    def _drop_connections(self) -> None:
        """Close the kept connections: after a failure, the next tick connects afresh."""
        if self.connections is not None:
            self.connections.close()
            self.connections = None

    def _resume(self) -> follower.Position:
        """The stored sweep position (a new cycle after --allow-mass-delete)."""
        if self.position is None:
            replica = self._kept().replica
            Audit(replica).ensure_tables()
            beat = follower.read(replica, self.feed)
            self.position = beat.position if beat else follower.Position(0, self.slices)
            if self.allow_mass_delete:
                self.position = follower.Position(0, self.slices)
            self.caught_up_at = beat.caught_up_at if beat else None
        return self.position

    def run(self, max_ticks: int | None = None) -> int:
        """Tick until stopped (or `max_ticks` ticks); returns the ticks done.

        Raises:
            ConfigError: The configuration cannot work (checked on every tick).
            MassDeleteRefused: The guard tripped: the follower stops, as a run does.

        """
        # once per start, not per tick: a tick that cannot resume would ask Kimai again;
        # the binlog feed reads no cursor window
        if self.binlog is None:
            warn_unindexed_cursors(self.settings)
        ticks, count, lag = 0, 1, self.settings.delete_max_lag_seconds
        try:
            while not self.stop.is_set() and (max_ticks is None or ticks < max_ticks):
                started = time.monotonic()
                self.tick(count)
                took = time.monotonic() - started
                ticks += 1
                if max_ticks is None or ticks < max_ticks:
                    rest = self.interval - (time.monotonic() - started)
                    self._wait(max(rest, LOCK_GAP_SECONDS))
                count = slices_due(self.slices, time.monotonic() - started, took, lag)
        finally:
            self.close()
        return ticks

    def _wait(self, seconds: float) -> None:
        """Sleep until the next tick; the binlog feed wakes as soon as the binlog grows."""
        if self.binlog is None:
            self.stop.wait(seconds)
            return
        self.stop.wait(LOCK_GAP_SECONDS)
        end = time.monotonic() + seconds - LOCK_GAP_SECONDS
        since = self.position.binlog if self.position is not None else None
        while not self.stop.is_set() and time.monotonic() < end:
            if self.binlog.moved(since):
                return
            self.stop.wait(min(BINLOG_CHECK_SECONDS, max(0.0, end - time.monotonic())))

    def tick(self, count: int = 1) -> RunOutcome | None:
        """One tick: the sync of this slice and the gated build, then the heartbeat.

        Args:
            count: Slices to compare (`slices_due`; at most a whole cycle).

        Returns:
            What the run did (as far as it went, when it failed); None when another run
            held the lock throughout.

        """
        started_at = dt.datetime.now(dt.UTC)
        try:
            position = self._resume()
        except ConfigError:
            raise
        except PipelineError as exc:  # Atlas DB unreachable: the next tick tries again
            log.error("tick failed: %s", exc)
            self._drop_connections()
            return None
        step: BinlogStep | None = None
        if self.binlog is not None:
            step = self._binlog_step(position, started_at)
            if step is None or step.options is None:
                return None
            options, tables = step.options, step.tables
        else:
            position, sweep = self._sweep(position, count)
            options = SyncOptions(overlap_seconds=self.settings.overlap_seconds, sweep=sweep)
            tables, count = None, sweep.count
        request = RunRequest(
            command="follow",
            transform=self.build,
            tables=tables,
            options=options,
            wait_seconds=min(self.interval, 10.0),
            trigger="follow",
            record_quiet=False,
            allow_mass_delete=self.allow_mass_delete,
            connections=self._kept(),
        )
        outcome = RunOutcome()
        try:
            # no progress lines per table: a tick every 30 s would bury what matters
            execute(self.settings, request, outcome=outcome)
        except LockHeld as exc:
            log.info("tick skipped: %s", exc)
            self._beat(started_at, "waiting", str(exc), outcome)
            return None
        except (ConfigError, MassDeleteRefused) as exc:
            self._beat(started_at, "stopped", str(exc), outcome)
            raise
        except PipelineError as exc:  # recorded in the audit; the next tick tries again
            log.error("tick failed: %s", exc)
            self._drop_connections()
            if outcome.sync is not None:  # the sync went through; its build failed
                self._advance(position, outcome, step, count)
            self._beat(started_at, "failed", str(exc), outcome)
            return outcome
        self._advance(position, outcome, step, count)
        self.caught_up_at = started_at
        self._beat(started_at, "ok", None, outcome)
        if outcome.run_id is not None:
            changed = sum(t.inserted + t.updated + t.deleted for t in outcome.sync.tables)
            built = "built" if outcome.transform is not None else "no build"
            self.say(f"tick: {changed:,} rows changed, {built}")
        return outcome

    def _binlog_step(
        self, position: follower.Position, started_at: dt.datetime
    ) -> BinlogStep | None:
        """The binlog feed's run for this tick; None (or no options) when the tick is over.

        A tick whose binlog held nothing ends here, with its heartbeat; so does one that
        could not read the binlog (the next tick tries again).

        Raises:
            ConfigError: The server keeps no binlog, or the login may not read it.

        """
        assert self.binlog is not None
        try:
            step = self.binlog.step(position.binlog, self._kept().replica)
        except ConfigError as exc:
            self._beat(started_at, "stopped", str(exc), RunOutcome())
            raise
        except PipelineError as exc:  # Kimai unreachable: the next tick tries again
            log.error("tick failed: %s", exc)
            self._drop_connections()
            self._beat(started_at, "failed", str(exc), RunOutcome())
            return None
        if step.options is None:  # nothing logged: no run, Kimai is not queried
            self.position = dataclasses.replace(position, binlog=step.end)
            self.caught_up_at = started_at
            self._beat(started_at, "ok", None, RunOutcome())
        else:
            if step.resync is not None:
                log.warning("binlog feed: %s: a full resync, then the binlog", step.resync)
            if step.options.reconcile and self.connections is not None:
                self.connections.forget_layouts()  # a DDL may be among what it compares
        return step

    def _sweep(self, position: follower.Position, count: int) -> tuple[follower.Position, Sweep]:
        """The poll feed's position (a new cycle after a settings change) and its sweep."""
        if position.slices != self.slices:
            position = follower.Position(0, self.slices)
        deleted = tuple(position.cycle_deleted.items())
        return position, Sweep(position.slice, position.slices, deleted, min(count, self.slices))

    def _advance(
        self,
        position: follower.Position,
        outcome: RunOutcome,
        step: BinlogStep | None,
        count: int,
    ) -> None:
        """The feed moves on once a tick's sync went through (even if its build failed)."""
        if step is not None:
            self.position = dataclasses.replace(position, binlog=step.end)
            self.allow_mass_delete = False  # the deletes it was lifted for are applied
            return
        assert outcome.sync is not None
        deleted = {t.table: t.deleted for t in outcome.sync.tables}
        self.position = position.advanced(deleted, self.slices, count)
        if position.slice + count >= self.slices:  # a whole cycle compared: the guard is back
            self.allow_mass_delete = False

    def _beat(
        self, started_at: dt.datetime, status: str, error: str | None, outcome: RunOutcome
    ) -> None:
        assert self.position is not None
        seconds = (dt.datetime.now(dt.UTC) - started_at).total_seconds()
        beat = follower.Heartbeat(
            self.feed,
            self.position,
            started_at,
            self.caught_up_at,
            status,
            error,
            round(seconds, 3),
            outcome.run_id,
        )
        try:
            follower.write(self._kept().replica, beat)
        except Exception as exc:  # the heartbeat must not stop the follower
            log.warning("could not write the follower's heartbeat: %s", exc)
            self._drop_connections()


def warn_unindexed_cursors(settings: Settings) -> list[str]:
    """Warn, once per start, of each big Kimai table whose change column has no index.

    Every tick reads the rows changed since the cursor: without an index on the change
    column, MariaDB scans the whole table for them, every `ATLAS_FOLLOW_INTERVAL_SECONDS`
    (docs/kimai-index.md). Below `INDEX_NEEDED_ROWS` that costs little; above, the index is
    needed to keep the follower's share of Kimai's CPU small.

    Returns:
        The warnings given (empty when the catalog cannot be read: the ticks still run).

    """
    warnings = []
    kimai = Kimai(settings)
    try:
        for spec in TABLES:
            rows = kimai.unindexed_rows(spec, spec.cursor) if spec.cursor else None
            if rows is not None and rows >= INDEX_NEEDED_ROWS:
                table = settings.kimai_table_prefix + spec.kimai_table
                warnings.append(
                    f"{table} holds about {rows:,} rows and no index on {spec.cursor}: each"
                    f" tick reads all of it; above {INDEX_NEEDED_ROWS:,} rows the follower"
                    f" needs CREATE INDEX IDX_ATLAS_SYNC_MODIFIED_AT ON {table} ({spec.cursor})"
                    " (docs/kimai-index.md)"
                )
    except Exception as exc:  # a hint must never stop the follower
        log.debug("could not read Kimai's indexes: %s", exc)
    finally:
        kimai.close()
    for line in warnings:
        log.warning("%s", line)
    return warnings
