"""The one table renderer of the CLI: alignment by display width, plain text only."""

from __future__ import annotations

import pytest

from pipelines.tables import number, render_table, text

pytestmark = pytest.mark.unit


def test_text_left_numbers_right_by_display_width() -> None:
    table = render_table(
        [text("user"), number("hours"), number("share")],
        [
            ("David 🎧", "2.8", "100 %"),  # the emoji takes two terminal cells
            ("客户", "12.5", "5 %"),  # so does each CJK character
            ("Chloé", "1,234.0", "-"),  # a precomposed é takes one
            ("Chloe\u0301", "0.0", "-"),  # and a combining accent none
        ],
        indent="  ",
    )
    # written out by hand, counting cells: the columns line up in a terminal
    assert table.splitlines() == [
        "  user        hours  share",
        "  --------  -------  -----",
        "  David 🎧      2.8  100 %",
        "  客户         12.5    5 %",
        "  Chloé     1,234.0      -",
        "  Chloe\u0301         0.0      -",
    ]


def test_plain_text_without_trailing_spaces() -> None:
    table = render_table([text("table"), text("error")], [("timesheets", ""), ("tags", "x")])
    assert table == "table       error\n----------  -----\ntimesheets\ntags        x"
    assert "\x1b" not in table and table.isascii()


def test_a_row_must_fill_every_column() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        render_table([text("a"), text("b"), text("c")], [("1", "2")])
