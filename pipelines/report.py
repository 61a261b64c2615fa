"""Human-readable output: the end-of-run summary table."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.tables import number, render_table, text
from pipelines.types import TableStats

SUMMARY_COLUMNS = (
    text("table"),
    number("kimai rows"),
    number("replica before"),
    number("rows read"),
    number("inserted"),
    number("updated"),
    number("deleted"),
)


def summary_table(stats: Sequence[TableStats], indent: str = "") -> str:
    """Per-table counts of one sync run as an aligned text table."""
    rows = [
        (
            s.table,
            f"{s.kimai_rows:,}",
            f"{s.replica_rows_before:,}",
            f"{s.rows_read:,}",
            f"{s.inserted:,}",
            f"{s.updated:,}",
            f"{s.deleted:,}",
        )
        for s in stats
    ]
    return render_table(SUMMARY_COLUMNS, rows, indent=indent)
