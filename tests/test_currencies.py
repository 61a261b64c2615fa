"""The dbt project's ISO 4217 data comes from the iso4217 package, not from typing."""

from __future__ import annotations

import importlib.util
import re
from decimal import Decimal

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def _generator():
    spec = importlib.util.spec_from_file_location(
        "iso4217_macros", REPO / "scripts" / "iso4217_macros.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_macro_file_is_what_the_installed_package_gives() -> None:
    text = (REPO / "macros" / "iso_4217.sql").read_text()
    assert text == _generator().render(), "run: python scripts/iso4217_macros.py"


def test_known_exponents_and_withdrawn_codes() -> None:
    text = (REPO / "macros" / "iso_4217.sql").read_text()
    exponent_of: dict[str, int] = {}
    for codes, exponent in re.findall(r"in \(([^)]*)\)\s*then (\d)", text):
        for code in re.findall(r"'([A-Z]{3})'", codes):
            exponent_of[code] = int(exponent)
    # written out here from ISO 4217's table, not from the package
    expected = {"JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "TND": 3, "CLF": 4, "XAU": 0}
    assert {c: exponent_of.get(c, 2) for c in [*expected, "EUR", "USD"]} == {
        **expected,
        "EUR": 2,
        "USD": 2,
    }
    accepted = set(re.findall(r"'([A-Z]{3})'", text.split("iso_currency_exponent")[0]))
    assert {"EUR", "JPY", "HRK", "BGN"} <= accepted and "ZZZ" not in accepted


def test_python_reads_the_same_exponents_as_the_macros() -> None:
    from pipelines.currencies import currency_exponent, currency_exponents

    package = _generator().exponents()
    assert currency_exponents() == {c: e for c, e in package.items() if e != 2}
    assert {c: currency_exponent(c) for c in package} == package


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        # written out from ISO 4217's minor units: none for yen, three for dinar, four for CLF
        (Decimal("40162.5000"), "JPY", "40,163 JPY"),
        (Decimal("40162.4999"), "JPY", "40,162 JPY"),
        (4000, "EUR", "4,000.00 EUR"),
        (Decimal("2.675"), "GBP", "2.68 GBP"),
        (2.675, "GBP", "2.68 GBP"),  # the double just below 2.675 is read as 2.675
        (Decimal("12.3455"), "KWD", "12.346 KWD"),
        (Decimal("1.23456"), "CLF", "1.2346 CLF"),
        (Decimal("-0.005"), "USD", "-0.01 USD"),
        (Decimal("1234.5"), "ZZZ", "1,234.50 ZZZ"),
        (Decimal("4000"), None, "4,000.00"),
    ],
)
def test_amounts_show_their_currencys_decimals(amount, currency, shown) -> None:
    from pipelines.currencies import format_money

    assert format_money(amount, currency) == shown
