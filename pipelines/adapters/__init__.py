"""The two databases a run talks to, and the table layouts read from them.

`kimai` reads Kimai (MariaDB/MySQL, or SQLite for the embedded demo) by key, window and
digest; `replica` reads and writes the replica in Atlas DB (PostgreSQL, or DuckDB for the
demo); `layout` is each table's columns and types as both sides hold them. They hold no
rules of their own about what a run does: the stages in `pipelines.sync` decide.
"""
