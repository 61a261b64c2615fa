"""Kimai's binary log, read as a replica would (``KIMAI_BINLOG=on``): which keys changed.

The binlog is read with the `mysql-replication` package (the replication protocol; a
maintained reader, not ours). Its events are used as keys only: the rows themselves are
always read again from Kimai's tables by the sync's reader, so the data rules, excluded
columns and row filters hold exactly as in every other run.

What an event becomes (`BinlogChanges`):

- a ROW event on a replicated table: the values of the table's key columns, and for
  ``pairs`` tables the values of each column (a changed pair re-reads its timesheet's pairs);
- a statement-format DML statement or a DDL statement naming a replicated table: that
  table is compared whole on the next tick (a statement names no keys);
- anything else (other schemas, other tables, transactions' BEGIN/COMMIT): nothing.

MariaDB does not log the rows a foreign key's ``ON DELETE CASCADE`` removes: those are
derived from the replica's own references (`pipelines.sync.scope`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from pipelines.config import Settings
from pipelines.errors import ConfigError, DatabaseError
from pipelines.registry import TableSpec

log = logging.getLogger("pipelines.binlog")
# it warns on every connection unless the server logs column names (binlog_row_metadata=FULL);
# the feed reads the key by its position in the row image, which needs no names
logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)

MAX_KEYS = 50_000
"""Keys a table may collect in one read; more and the table is compared whole instead (a
bulk update of most of the table is cheaper to compare than to re-read by key)."""

_STATEMENT = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*(insert|replace|update|delete|alter|create|drop|rename|truncate)\b",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A place in the binlog: the file and the byte offset in it."""

    file: str
    pos: int

    def to_json(self) -> dict[str, Any]:
        """The stored form (a part of the follower's heartbeat)."""
        return {"file": self.file, "pos": self.pos}

    @classmethod
    def from_json(cls, data: Any) -> BinlogPosition | None:
        """Read the stored form; None when there is none or it is unreadable."""
        try:
            return cls(str(data["file"]), int(data["pos"]))
        except (TypeError, KeyError, ValueError):
            return None


@dataclass
class BinlogChanges:
    """What one read of the binlog found, by table short name."""

    end: BinlogPosition
    keys: dict[str, set[int]] = field(default_factory=dict)
    """Per table, the values of its first key column that its events carried (for a
    ``pairs`` table, the timesheet ids: a changed pair re-reads its timesheet's pairs)."""
    deleted: dict[str, set[int]] = field(default_factory=dict)
    """Per table with a one-column key, the keys of its delete events (cascades start there)."""
    whole: dict[str, str] = field(default_factory=dict)
    """Tables to compare whole, with why (a statement, a DDL, too many keys)."""

    @property
    def empty(self) -> bool:
        """Whether nothing replicated changed."""
        return not self.keys and not self.whole

    def add_row(self, spec: TableSpec, key: int | None, delete: bool) -> None:
        """One row image of `spec`'s table, by the value of its first key column."""
        if spec.name in self.whole or key is None:
            return
        keys = self.keys.setdefault(spec.name, set())
        keys.add(key)
        if delete and len(spec.primary_key) == 1:
            self.deleted.setdefault(spec.name, set()).add(key)
        if len(keys) > MAX_KEYS:
            self.compare_whole(spec, f"more than {MAX_KEYS:,} changed keys")

    def compare_whole(self, spec: TableSpec, why: str) -> None:
        """Compare `spec`'s table whole on this tick instead of re-reading keys."""
        self.whole.setdefault(spec.name, why)
        self.keys.pop(spec.name, None)
        self.deleted.pop(spec.name, None)


def binlog_server_id(settings: Settings) -> int:
    """The replication client id: ``KIMAI_BINLOG_SERVER_ID``, else one derived from the host.

    MariaDB drops a replica's connection when another connects with the same id; the derived
    one (above 1,000,000,000, clear of the small ids servers are usually given) differs
    between hosts and stays the same across restarts.
    """
    if settings.kimai_binlog_server_id:
        return settings.kimai_binlog_server_id
    return 1_000_000_000 + zlib.crc32(socket.gethostname().encode()) % 1_000_000_000


class BinlogReader:
    """Reads Kimai's binlog from a position, as a replication client.

    Args:
        settings: Runtime settings (Kimai's URL, TLS, table prefix, server id).
        specs: The replicated tables.

    """

    def __init__(self, settings: Settings, specs: Sequence[TableSpec]) -> None:
        url = settings.kimai_url
        self.schema = url.database or ""
        self.prefix = settings.kimai_table_prefix
        self.by_table = {spec.kimai_name(self.prefix): spec for spec in specs}
        self.server_id = binlog_server_id(settings)
        args: dict[str, Any] = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "",
            "password": url.password or "",
            "connect_timeout": 10,
        }
        socket_path = url.query.get("unix_socket")
        if socket_path:
            args["unix_socket"] = socket_path
        if settings.kimai_tls is not None:
            args.update(settings.kimai_tls.pymysql_args())
        self.connection_args = args
        self._status: Any = None
        self._positions: dict[str, dict[str, int]] = {}
        """Per table, the ordinal position (0-based) of each column: a row image lists every
        column in table order, named only when the server logs names
        (``binlog_row_metadata=FULL``)."""

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a status query on the connection kept between ticks (one retry on a new one).

        The follower asks where the binlog ends every second: a connection each time would
        cost Kimai a login each time.
        """
        try:
            return self._status_query(sql)
        except pymysql.MySQLError:
            self.close()  # dropped while idle (wait_timeout, a restart): once more
        try:
            return self._status_query(sql)
        except pymysql.MySQLError as exc:
            self.close()
            raise DatabaseError(f"cannot read Kimai's binlog status ({sql}): {exc}") from exc

    def _status_query(self, sql: str) -> list[tuple[Any, ...]]:
        if self._status is None:
            self._status = pymysql.connect(**self.connection_args, autocommit=True)
        with self._status.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def close(self) -> None:
        """Close the kept status connection (the next query opens a new one)."""
        if self._status is not None:
            with contextlib.suppress(Exception):
                self._status.close()
            self._status = None

    def check(self) -> None:
        """Refuse a server that keeps no binlog this feed can read.

        Raises:
            ConfigError: ``log_bin`` is off, or the login lacks the grants.

        """
        rows = self._query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin')")
        if not rows or str(rows[0][1]).upper() != "ON":
            raise ConfigError(
                "KIMAI_BINLOG=on, but Kimai's server keeps no binary log (log_bin is off):"
                " see docs/binlog.md for the settings, or set KIMAI_BINLOG=off"
            )

    def current(self) -> BinlogPosition:
        """Where the binlog ends now.

        Raises:
            ConfigError: The login may not read the binlog's status.

        """
        try:
            rows = self._query("SHOW MASTER STATUS")
        except DatabaseError as exc:
            raise ConfigError(
                f"KIMAI_BINLOG=on, but {exc}: the login needs REPLICATION SLAVE and"
                " BINLOG MONITOR (REPLICATION CLIENT on MySQL); see docs/binlog.md"
            ) from exc
        if not rows:
            raise ConfigError(
                "KIMAI_BINLOG=on, but Kimai's server keeps no binary log (SHOW MASTER STATUS"
                " is empty): see docs/binlog.md"
            )
        return BinlogPosition(str(rows[0][0]), int(rows[0][1]))

    def readable(self, position: BinlogPosition) -> bool:
        """Whether the binlog still holds `position` (no purge or reset removed it)."""
        sizes = {str(r[0]): int(r[1]) for r in self._query("SHOW BINARY LOGS")}
        return position.file in sizes and 4 <= position.pos <= sizes[position.file]

    def _load_positions(self, tables: Sequence[str]) -> None:
        wanted = [t for t in tables if t not in self._positions]
        if not wanted:
            return
        names = ", ".join(f"'{t}'" for t in wanted)
        schema = self.schema.replace("'", "''")
        rows = self._query(
            "SELECT table_name, column_name, ordinal_position FROM information_schema.columns"
            f" WHERE table_schema = '{schema}' AND table_name IN ({names})"
        )
        for table, column, ordinal in rows:
            self._positions.setdefault(str(table), {})[str(column).lower()] = int(ordinal) - 1

    def read(self, start: BinlogPosition) -> BinlogChanges:
        """Every event from `start` to the binlog's end as it is now.

        Raises:
            DatabaseError: The stream broke off (the next tick reads from `start` again).

        """
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import QueryEvent, RotateEvent
        from pymysqlreplication.row_event import (
            DeleteRowsEvent,
            UpdateRowsEvent,
            WriteRowsEvent,
        )

        changes = BinlogChanges(start)
        stream = BinLogStreamReader(
            connection_settings=dict(self.connection_args),
            server_id=self.server_id,
            resume_stream=True,
            blocking=False,
            log_file=start.file,
            log_pos=start.pos,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, QueryEvent, RotateEvent],
            only_schemas=[self.schema],
            ignore_decode_errors=True,
            enable_logging=False,
        )
        try:
            for event in stream:
                if isinstance(event, QueryEvent):
                    self._statement(event, changes)
                elif not isinstance(event, RotateEvent):
                    self._rows(event, isinstance(event, DeleteRowsEvent), changes)
            if stream.log_file is not None and stream.log_pos is not None:
                changes.end = BinlogPosition(str(stream.log_file), int(stream.log_pos))
        except pymysql.MySQLError as exc:
            where = f"{start.file}:{start.pos}"
            raise DatabaseError(f"reading Kimai's binlog from {where}: {exc}") from exc
        finally:
            stream.close()
        return changes

    def _statement(self, event: Any, changes: BinlogChanges) -> None:
        """A statement: DML in statement format or DDL names tables, not keys."""
        query = str(event.query)
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        kind = _STATEMENT.match(query)
        if kind is None:
            return  # BEGIN, COMMIT, SAVEPOINT, ...
        lowered = query.lower()
        for table, spec in self.by_table.items():
            if re.search(rf"(?<![\w$]){re.escape(table.lower())}(?![\w$])", lowered) and (
                schema == self.schema or self.schema.lower() in lowered
            ):
                verb = kind.group(1).upper()
                changes.compare_whole(spec, f"a statement in the binlog ({verb})")
                self._positions.pop(table, None)  # a DDL may have moved its columns

    def _rows(self, event: Any, delete: bool, changes: BinlogChanges) -> None:
        spec = self.by_table.get(event.table)
        if spec is None or event.schema != self.schema:
            return
        self._load_positions([event.table])
        index = self._positions.get(event.table, {}).get(spec.primary_key[0])
        if index is None:
            changes.compare_whole(spec, "its key column is not in Kimai's catalog")
            return
        for row in event.rows:
            for image in ("before_values", "after_values", "values"):
                if image in row:
                    changes.add_row(spec, _int_or_none(list(row[image].values()), index), delete)


def _int_or_none(values: list[Any], index: int) -> int | None:
    if index >= len(values) or values[index] is None:
        return None
    try:
        return int(values[index])
    except (TypeError, ValueError):
        return None
