"""Root connections to the local MariaDB and PostgreSQL that the tests and the benchmark use.

The project's machines run both servers on 127.0.0.1 (MariaDB: root without password;
PostgreSQL: postgres with trust authentication). Connections are autocommit.
"""

from __future__ import annotations

from typing import Any

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def mariadb_connect(database: str | None = None, **kwargs: Any) -> Any:
    """A PyMySQL connection as root (autocommit, utf8mb4)."""
    import pymysql

    return pymysql.connect(
        **MARIADB, database=database, charset="utf8mb4", autocommit=True, **kwargs
    )


def pg_connect(database: str = "postgres") -> Any:
    """A psycopg2 connection as postgres (autocommit)."""
    import psycopg2

    conn = psycopg2.connect(**POSTGRES, dbname=database)
    conn.autocommit = True
    return conn


def pg_query(database: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement on a PostgreSQL database (empty for statements)."""
    conn = pg_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()
