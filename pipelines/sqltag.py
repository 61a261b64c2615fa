"""Every statement the sync sends to Kimai names its purpose in a leading comment.

``/* kimai-atlas: key ranges; kimai2_timesheet */ SELECT …``: Kimai's administrator sees
in MariaDB's process list and slow log what the sync is doing and to which table, and the
benchmark attributes each statement to its purpose without parsing SQL.
"""

from __future__ import annotations

from typing import Literal

Purpose = Literal[
    "ping",
    "catalog",
    "key bounds",
    "row count",
    "key ranges",
    "range digests",
    "row hashes",
    "cursor window",
    "rows by key",
    "whole table",
    "ordered stream",
    "ordered pages",
]

_OPEN = "/* kimai-atlas: "
_CLOSE = " */ "


def tagged(purpose: Purpose, table: str, sql: str) -> str:
    """`sql` with the comment naming its purpose and table (empty for server-wide queries)."""
    if "*/" in table:  # table names come from the registry and the prefix setting
        raise ValueError(f"not a table name: {table!r}")
    return f"{_OPEN}{purpose}; {table}{_CLOSE}{sql}"


def read_tag(sql: str) -> tuple[str, str] | None:
    """The (purpose, table) a statement was tagged with; None for an untagged statement."""
    text = sql.lstrip()
    if not text.startswith(_OPEN):
        return None
    end = text.find(_CLOSE)
    if end < 0:
        return None
    purpose, _, table = text[len(_OPEN) : end].partition("; ")
    return purpose, table
