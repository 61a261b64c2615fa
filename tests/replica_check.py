"""Independent check that the replica equals Kimai, row for row and column for column.

Reads Kimai with PyMySQL and the replica with psycopg2 (not through the product's Arrow
path) and compares typed Python values: ints, exact floats, '' vs NULL, UTC instants,
dates, booleans (Kimai's TINYINT(1)).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pipelines.registry import TABLES, TableSpec
from tests.conftest import mariadb_connect, pg_connect

TEXT_MAX_CHARS = 1_000_000
"""Longest text the replica holds (docs/models.md, "Bad data in Kimai")."""

# The rows of Kimai's key/value tables that may leave Kimai: the public contract's
# allow-lists, written out here (not read from the product's registry). Names match exactly.
ALLOWED_ROWS: dict[str, tuple[str, frozenset[str]]] = {
    "user_preferences": (
        "name",
        frozenset(
            {
                "timezone",
                "first_weekday",
                "work_contract_type",
                "work_monday",
                "work_tuesday",
                "work_wednesday",
                "work_thursday",
                "work_friday",
                "work_saturday",
                "work_sunday",
                "holidays",
                "public_holiday_group",
                "work_start_day",
                "work_last_day",
            }
        ),
    ),
    "configuration": ("name", frozenset({"company.financial_year"})),
}


Connect = Callable[[str], Any]
"""Opens a connection to a named database (the shared servers' by default)."""


def kimai_columns(
    kimai_db: str, table: str, kimai: Connect = mariadb_connect
) -> list[tuple[str, str, str]]:
    """(name, data_type, column_type) of a Kimai table, in order."""
    conn = kimai(kimai_db)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name, data_type, column_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (kimai_db, table),
            )
            return [(r[0], r[1].lower(), r[2].lower()) for r in cur.fetchall()]
    finally:
        conn.close()


def _norm_kimai(value: Any, data_type: str, column_type: str) -> Any:
    if value is None:
        return None
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return bool(value)
    if data_type in {"datetime", "timestamp"}:
        if isinstance(value, str):  # zero date: replicated as NULL
            return None
        return value.replace(tzinfo=dt.UTC)
    if data_type == "date" and isinstance(value, str):
        return None
    if isinstance(value, str):
        # the documented text rules: cut at a million characters, NUL as U+FFFD
        return value[:TEXT_MAX_CHARS].replace("\0", "\ufffd")
    return value


def _norm_replica(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


def kimai_rows(
    kimai_db: str, spec: TableSpec, prefix: str = "kimai2_", kimai: Connect = mariadb_connect
) -> dict[tuple, tuple]:
    """Kimai's rows of one table keyed by primary key, secrets (columns and rows) left out."""
    table = spec.kimai_name(prefix)
    cols = [c for c in kimai_columns(kimai_db, table, kimai) if c[0] not in spec.excluded_columns]
    conn = kimai(kimai_db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(f'`{c[0]}`' for c in cols)} FROM `{table}`")
            rows = cur.fetchall()
    finally:
        conn.close()
    names = [c[0] for c in cols]
    key_idx = [names.index(k) for k in spec.primary_key]
    out = {}
    allowed = ALLOWED_ROWS.get(spec.name)
    for r in rows:
        values = tuple(_norm_kimai(v, c[1], c[2]) for v, c in zip(r, cols, strict=True))
        if allowed is not None and values[names.index(allowed[0])] not in allowed[1]:
            continue
        out[tuple(values[i] for i in key_idx)] = dict(zip(names, values, strict=True))
    return out


def replica_rows(
    pg_db: str,
    spec: TableSpec,
    columns: list[str],
    schema: str = "kimai_replica",
    atlas: Connect = pg_connect,
) -> dict[tuple, dict]:
    """The replica's rows of one table keyed by primary key, limited to `columns`."""
    conn = atlas(pg_db)
    try:
        with conn.cursor() as cur:
            quoted = ", ".join('"' + c + '"' for c in columns)
            cur.execute(f'SELECT {quoted} FROM "{schema}"."{spec.replica_table}"')
            rows = cur.fetchall()
    finally:
        conn.close()
    key_idx = [columns.index(k) for k in spec.primary_key]
    return {
        tuple(r[i] for i in key_idx): dict(zip(columns, map(_norm_replica, r), strict=True))
        for r in rows
    }


def assert_replica_equals_kimai(
    kimai_db: str,
    pg_db: str,
    specs: list[TableSpec] | tuple[TableSpec, ...] = TABLES,
    schema: str = "kimai_replica",
    prefix: str = "kimai2_",
    kimai: Connect = mariadb_connect,
    atlas: Connect = pg_connect,
) -> dict[str, int]:
    """Assert every replica table equals its Kimai table; return the row counts compared.

    `kimai` and `atlas` open the connections (to a test's private servers, say).
    """
    counts = {}
    for spec in specs:
        expected = kimai_rows(kimai_db, spec, prefix, kimai)
        columns = [c[0] for c in kimai_columns(kimai_db, spec.kimai_name(prefix), kimai)]
        columns = [c for c in columns if c not in spec.excluded_columns]
        actual = replica_rows(pg_db, spec, columns, schema, atlas)
        assert_rows_equal(spec.replica_table, expected, actual, columns)
        counts[spec.name] = len(expected)
    return counts


def assert_rows_equal(
    table: str,
    expected: dict[tuple, dict[str, Any]],
    actual: dict[tuple, dict[str, Any]],
    columns: list[str],
) -> None:
    """Same keys on both sides, and every column equal in value and in Python type."""
    missing = sorted(set(expected) - set(actual))[:5]
    extra = sorted(set(actual) - set(expected))[:5]
    assert not missing and not extra, (
        f"{table}: keys missing {missing}, extra {extra} "
        f"(kimai {len(expected)}, replica {len(actual)})"
    )
    diffs = [
        (k, c, expected[k][c], actual[k][c])
        for k in expected
        for c in columns
        if expected[k][c] != actual[k][c] or type(expected[k][c]) is not type(actual[k][c])
    ]
    assert not diffs, f"{table}: {len(diffs)} differing values, e.g. {diffs[:5]}"
