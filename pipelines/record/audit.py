"""Run audit in Atlas DB: one row per run and one per table per run.

The tables live in the replica schema (never the BI schema, and the BI role gets no grant
on them): ``sync_runs`` and ``sync_run_tables`` (and the follower's heartbeat,
`pipelines.record.follower`). They are written in their own short
transactions, so a failed run is recorded too. ``vw_sync_health`` and the ``status``
command read them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.adapters.layout import quote_ansi
from pipelines.adapters.replica import Replica
from pipelines.errors import LockLost
from pipelines.record import follower
from pipelines.types import TableStats

RUNS = "sync_runs"
TABLE_RUNS = "sync_run_tables"

_DDL = (
    """CREATE TABLE IF NOT EXISTS {runs} (
    run_id varchar(32) PRIMARY KEY,
    command varchar(32) NOT NULL,
    trigger varchar(16) NOT NULL,
    started_by varchar(255) NOT NULL,
    host varchar(255) NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    status varchar(16) NOT NULL,
    exit_code integer,
    error text,
    options text,
    -- the run's dbt build: running, published, unchanged, failed or crashed (NULL: none)
    build_status varchar(16),
    build_failures text,
    published_at timestamptz,
    build_inputs text
)""",
    """CREATE TABLE IF NOT EXISTS {table_runs} (
    run_id varchar(32) NOT NULL,
    table_name varchar(64) NOT NULL,
    kimai_rows bigint,
    replica_rows_before bigint,
    replica_rows_after bigint,
    rows_read bigint,
    inserted bigint,
    updated bigint,
    deleted bigint,
    cursor_before timestamptz,
    cursor_after timestamptz,
    seconds double precision,
    reconciled boolean NOT NULL,
    differences_found bigint,
    differences_unrepaired bigint,
    kimai_rows_scanned_for_fingerprints bigint,
    kimai_bytes_read bigint,
    recorded_at timestamptz NOT NULL,
    orphans_reread bigint,
    PRIMARY KEY (run_id, table_name)
)""",
)


@dataclass
class RunRecord:
    """Identity of the run being recorded."""

    run_id: str
    command: str
    trigger: str
    started_by: str
    host: str
    pid: int
    started_at: dt.datetime


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def detect_trigger(explicit: str | None = None) -> str:
    """``cli`` on a terminal, ``cron`` without one (schedulers), or what the caller says."""
    if explicit:
        return explicit
    return "cli" if os.isatty(0) or os.isatty(2) else "cron"


Fence = tuple[str, tuple[Any, ...]]
"""An SQL condition (and its parameters) that holds only while the run holds its lock."""


class Audit:
    """Writes the run audit through a replica connection.

    With a `fence` (`pipelines.lock.HeldLock.fence`), every write after the run's start is
    made only while the run still holds its lock, checked by the write's own statement: a
    run whose lock was lost (its session killed, the next run started) can no longer
    record anything, not even a moment after its last check.
    """

    def __init__(self, replica: Replica, fence: Fence | None = None) -> None:
        self.replica = replica
        self.fence = fence
        self.runs = replica.qualified(RUNS)
        self.table_runs = replica.qualified(TABLE_RUNS)

    def _update_run(self, record: RunRecord, assignments: str, params: tuple[Any, ...]) -> None:
        """``UPDATE`` the run's row, fenced by the run lock.

        Raises:
            LockLost: The run no longer holds its lock; nothing was written.

        """
        sql = f"UPDATE {self.runs} SET {assignments} WHERE run_id = %s"
        if self.fence is None:
            self.replica.execute(sql, (*params, record.run_id))
            return
        condition, fence_params = self.fence
        written = self.replica.query(
            f"{sql} AND {condition} RETURNING run_id", (*params, record.run_id, *fence_params)
        )
        if not written:
            raise _lost("the audit")

    def ensure_tables(self) -> None:
        """Create the schema and audit tables if they are missing."""
        self.replica.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ansi(self.replica.schema)}")
        for ddl in _DDL:
            self.replica.execute(ddl.format(runs=self.runs, table_runs=self.table_runs))
        # audit tables of 0.1.0 lack the build's inputs (`pipelines.build_gate`); asked
        # first, since ALTER TABLE waits for every reader of vw_sync_health, even if a no-op
        added = self.replica.query(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s AND column_name = 'build_inputs'",
            (self.replica.schema, RUNS),
        )
        if not added:
            self.replica.execute(f"ALTER TABLE {self.runs} ADD COLUMN build_inputs text")
        # read by the models' freshness and vw_sync_health, whether or not a follower runs
        follower.ensure_table(self.replica)

    def start(
        self,
        command: str,
        trigger: str,
        options: dict[str, Any],
        started_by: str | None = None,
        started_at: dt.datetime | None = None,
    ) -> RunRecord:
        """Record a run as started; runs left 'running' by a crash are marked 'crashed'.

        Args:
            command: The command's name (``run``, ``sync``, ``reconcile``...).
            trigger: Who started it (``cli``, ``cron``, ``api``...).
            options: The run's options, stored as JSON.
            started_by: Who started it; the operating system user when omitted (the API
                gives the name of the token that asked for the run).
            started_at: When it started; now when omitted (a follower tick is recorded
                once its sync changed rows, with the tick's start).

        """
        user = started_by or _os_user()
        record = RunRecord(
            run_id=uuid.uuid4().hex,
            command=command,
            trigger=trigger,
            started_by=user,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=started_at or dt.datetime.now(dt.UTC),
        )
        # the caller holds the run lock, so nothing else can be running now
        self.replica.execute(
            f"UPDATE {self.runs} SET status = 'crashed', build_status = CASE build_status"
            " WHEN 'running' THEN 'crashed' ELSE build_status END WHERE status = 'running'"
        )
        self.replica.execute(
            f"INSERT INTO {self.runs} (run_id, command, trigger, started_by, host, pid,"
            " started_at, status, options) VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', %s)",
            (
                record.run_id,
                command,
                trigger,
                user,
                record.host,
                record.pid,
                record.started_at,
                json.dumps(options, default=str, sort_keys=True),
            ),
        )
        return record

    def record_tables(
        self, record: RunRecord, stats: Sequence[TableStats], reconciled: bool
    ) -> None:
        """Store the per-table counts of a finished sync."""
        now = dt.datetime.now(dt.UTC)
        condition, fence_params = self.fence or ("true", ())
        for s in stats:
            fp = s.fingerprint
            written = self.replica.query(
                f"INSERT INTO {self.table_runs} (run_id, table_name, kimai_rows,"
                " replica_rows_before, replica_rows_after, rows_read, inserted, updated, deleted,"
                " cursor_before, cursor_after, seconds, reconciled, differences_found,"
                " differences_unrepaired, kimai_rows_scanned_for_fingerprints, kimai_bytes_read,"
                " orphans_reread, recorded_at)"
                " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                f" %s WHERE {condition} RETURNING run_id",
                (
                    record.run_id,
                    s.table,
                    s.kimai_rows,
                    s.replica_rows_before,
                    s.replica_rows_after,
                    s.rows_read,
                    s.inserted,
                    s.updated,
                    s.deleted,
                    s.cursor_before,
                    s.cursor_after,
                    round(s.seconds, 3),
                    reconciled,
                    s.written if reconciled else None,
                    s.unrepaired if s.unrepaired is not None else (0 if reconciled else None),
                    fp.kimai_rows_returned if fp else None,
                    s.kimai_bytes_read,
                    s.orphans,
                    now,
                    *fence_params,
                ),
            )
            if not written:
                raise _lost("the audit of the tables")

    def build_started(self, record: RunRecord, inputs: str | None = None) -> None:
        """Record that the run's dbt build began (a crash leaves it 'running', then 'crashed').

        Args:
            record: The run.
            inputs: What the build reads (`pipelines.build_gate.BuildInputs.to_json`).

        """
        self._update_run(record, "build_status = 'running', build_inputs = %s", (inputs,))

    def build_unchanged(self, record: RunRecord, inputs: str) -> None:
        """Record that the run found the build BI reads current: nothing it reads changed.

        ``published_at`` says since when BI's data is confirmed current.
        """
        self._update_run(
            record,
            "build_status = 'unchanged', build_inputs = %s, published_at = transaction_timestamp()",
            (inputs,),
        )

    def build_failed(self, record: RunRecord, failures: str) -> None:
        """Record that the run's dbt build failed and was not published, and why."""
        self._update_run(record, "build_status = 'failed', build_failures = %s", (failures,))

    def mark_published(self, record: RunRecord, cursor: Any | None = None) -> None:
        """Record that the run's build is now what BI reads.

        Args:
            record: The run.
            cursor: The publishing transaction's cursor, so that the record commits with the
                swap itself; None writes it in a transaction of its own.

        """
        sql = (
            f"UPDATE {self.runs} SET build_status = 'published', published_at ="
            " transaction_timestamp() WHERE run_id = %s"
        )
        if cursor is None:
            self.replica.execute(sql, (record.run_id,))
        else:
            cursor.execute(sql, (record.run_id,))

    def finish(
        self, record: RunRecord, status: str, exit_code: int, error: str | None = None
    ) -> None:
        """Close the run's record."""
        self._update_run(
            record,
            "finished_at = %s, status = %s, exit_code = %s, error = %s",
            (dt.datetime.now(dt.UTC), status, exit_code, error),
        )


def _lost(before: str) -> LockLost:
    return LockLost(
        f"the run lock was lost before {before}; stopped without writing more,"
        " the next run repairs what this one left"
    )


@dataclass(frozen=True)
class LastBuild:
    """The newest run that ended a build, as ``sync_runs`` holds it."""

    run_id: str
    status: str
    """published, unchanged, failed or crashed."""
    ended_at: dt.datetime
    failures: str | None
    inputs: str | None
    """`pipelines.build_gate.BuildInputs` as JSON (published and unchanged builds)."""


def last_build(replica: Replica, runs: str) -> LastBuild | None:
    """The newest ended build in the audit table `runs` (qualified), or None."""
    rows = replica.query(
        f"SELECT run_id, build_status, coalesce(finished_at, started_at), build_failures,"
        f" build_inputs FROM {runs}"
        " WHERE build_status IN ('published', 'unchanged', 'failed', 'crashed')"
        " ORDER BY started_at DESC LIMIT 1"
    )
    return LastBuild(*rows[0]) if rows else None


def last_full_audit_at(replica: Replica, runs: str) -> dt.datetime | None:
    """When the newest build that ran every data test was published, or None.

    A delta build stores ``"audit": "delta"`` in its inputs (`pipelines.build_gate`); matched
    as text, since a text column of another writer may hold anything but JSON.
    """
    rows = replica.query(
        f"SELECT max(published_at) FROM {runs} WHERE build_status = 'published'"
        " AND coalesce(build_inputs, '') NOT LIKE %s",
        ('%"audit": "delta"%',),
    )
    return rows[0][0] if rows else None


def publication_before_last(replica: Replica, runs: str) -> str | None:
    """The build inputs recorded by the publication before the newest one, or None.

    Its objects are what the shadow schemas hold now: each publication swaps the live
    schemas into the shadow names (`pipelines.publish.swap`), and a build that fails
    afterwards is followed by a full one.
    """
    rows = replica.query(
        f"SELECT build_inputs FROM {runs} WHERE build_status = 'published'"
        " ORDER BY published_at DESC OFFSET 1 LIMIT 1"
    )
    return rows[0][0] if rows else None


def last_published_at(replica: Replica, runs: str) -> dt.datetime | None:
    """When the newest real (not ``unchanged``) build was published, or None."""
    rows = replica.query(f"SELECT max(published_at) FROM {runs} WHERE build_status = 'published'")
    return rows[0][0] if rows else None
