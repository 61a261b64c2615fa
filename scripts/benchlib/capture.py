"""Captures the statements a product run sends to Kimai (runs inside that process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# -- SQL capture (runs inside a product process) ---------------------------------------------------


def capture_main(argv: list[str]) -> int:
    out = Path(argv[0])
    args = argv[2:] if len(argv) > 1 and argv[1] == "--" else argv[1:]
    records: list[dict[str, Any]] = []
    import connectorx
    import pymysql.cursors

    read_sql = connectorx.read_sql

    def logged_read_sql(conn: Any, query: Any, *a: Any, **k: Any) -> Any:
        if str(conn).startswith("mysql"):
            records.append({"via": "connectorx", "sql": str(query)})
        return read_sql(conn, query, *a, **k)

    connectorx.read_sql = logged_read_sql
    execute = pymysql.cursors.Cursor.execute

    def logged_execute(self: Any, query: Any, args: Any = None) -> Any:
        sql = self.mogrify(query, args) if args is not None else query
        records.append({"via": "pymysql", "sql": str(sql)})
        return execute(self, query, args)

    pymysql.cursors.Cursor.execute = logged_execute  # type: ignore[method-assign]
    sys.argv = ["pipelines.run", *args]
    code = 0
    try:
        from pipelines.run import main

        main()
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        out.write_text(json.dumps(records))
    return code


def classify_sql(sql: str) -> tuple[str, str]:
    """(purpose, table) of a statement the product sent to Kimai, from its leading tag.

    The product tags every query (pipelines.sqltag); what it sends untagged is its
    drivers' session handling (transactions, settings), or a query someone forgot to tag.
    """
    from pipelines.sqltag import read_tag

    tag = read_tag(sql)
    if tag is not None:
        return tag
    query = sql.lstrip().upper().startswith(("SELECT", "SHOW", "WITH"))
    return ("untagged query" if query else "session"), ""
