"""Plain-text tables for people and logs: the one renderer of every table the CLI prints.

The sync summary, ``status`` and the demo's report all go through `render_table`. Output is
plain text whatever the stream (no colours, no box-drawing characters): cron logs and tests
read it, and ``grep`` must find a row by its first word. Text columns are left-aligned and
numbers right-aligned, padded by display width (an emoji or a CJK character takes two
terminal cells, a combining accent none), so a name with an emoji does not shift its row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len

GAP = "  "
"""Between two columns."""


@dataclass(frozen=True)
class Column:
    """A column's header and alignment."""

    header: str
    numeric: bool = False
    """Right-aligned (counts, amounts, percentages); text is left-aligned."""


def text(header: str) -> Column:
    """A left-aligned column."""
    return Column(header)


def number(header: str) -> Column:
    """A right-aligned column."""
    return Column(header, numeric=True)


def display_width(value: str) -> int:
    """Terminal cells `value` takes (emoji and CJK characters count two)."""
    return cell_len(value)


def _pad(value: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(value))
    return fill + value if right else value + fill


def render_table(columns: Sequence[Column], rows: Iterable[Sequence[str]], indent: str = "") -> str:
    """Lay out `rows` under a header line and a rule of dashes.

    Args:
        columns: Header and alignment of each column.
        rows: The cells, already formatted, one string per column.
        indent: Put before every line.

    Returns:
        The lines joined by newlines, without trailing spaces.

    Raises:
        ValueError: A row does not have one cell per column.

    """
    body = [tuple(row) for row in rows]
    for row in body:
        if len(row) != len(columns):
            raise ValueError(f"{len(row)} cells for {len(columns)} columns: {row!r}")
    headers = [c.header for c in columns]
    widths = [
        max(display_width(cell) for cell in [header, *(row[i] for row in body)])
        for i, header in enumerate(headers)
    ]

    def line(cells: Sequence[str], aligned: bool = True) -> str:
        out = GAP.join(
            _pad(cell, width, aligned and column.numeric)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        )
        return (indent + out).rstrip()

    lines = [line(headers), line(["-" * w for w in widths], aligned=False)]
    lines += [line(row) for row in body]
    return "\n".join(lines)
