"""Money as people read it: an amount with its currency's ISO 4217 decimals and its code.

The minor-unit exponents come from the dbt project's ``macros/iso_4217.sql``, which
``scripts/iso4217_macros.py`` renders from ISO 4217's published list: the Python side reads
that same file instead of keeping a table of its own.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

from pipelines.transform import PROJECT_DIR

MACRO_FILE = Path("macros") / "iso_4217.sql"
"""The generated macro file, relative to the dbt project."""

DEFAULT_EXPONENT = 2
"""What the macro gives a code it does not list (``else 2``)."""

_EXPONENT_MACRO = "macro iso_currency_exponent"
_WHEN = re.compile(r"in \(([^)]*)\)\s*then (\d+)")
_CODE = re.compile(r"'([A-Z]{3})'")


@cache
def currency_exponents(project: Path = PROJECT_DIR) -> dict[str, int]:
    """Currency code → minor-unit exponent, for every code the macro lists apart from 2.

    Args:
        project: The dbt project directory.

    Raises:
        ValueError: The file lacks the macro (not the generated file).

    """
    text = (project / MACRO_FILE).read_text()
    _, found, body = text.partition(_EXPONENT_MACRO)
    if not found:
        raise ValueError(f"{project / MACRO_FILE} has no {_EXPONENT_MACRO}")
    return {
        code: int(exponent)
        for codes, exponent in _WHEN.findall(body)
        for code in _CODE.findall(codes)
    }


def currency_exponent(currency: str) -> int:
    """Decimal digits of `currency`'s minor unit: JPY 0, EUR 2, KWD 3 (2 when unknown)."""
    return currency_exponents().get(currency.strip().upper(), DEFAULT_EXPONENT)


def format_money(amount: Decimal | float | int, currency: str | None) -> str:
    """``1,234.50 EUR``, ``40,163 JPY``: rounded half away from zero to the currency's unit.

    An amount without a currency keeps two decimals and shows no code.
    """
    digits = currency_exponent(currency) if currency else DEFAULT_EXPONENT
    value = Decimal(str(amount)) if isinstance(amount, float) else Decimal(amount)
    rounded = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{rounded:,.{digits}f} {currency or ''}".rstrip()
