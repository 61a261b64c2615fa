"""Human-readable output: the end-of-run summary table."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.types import TableStats


def summary_table(stats: Sequence[TableStats]) -> str:
    """Per-table counts of one sync run as an aligned text table."""
    header = ("table", "kimai rows", "replica before", "read", "inserted", "updated", "deleted")
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
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for i, r in enumerate([header, *rows]):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
