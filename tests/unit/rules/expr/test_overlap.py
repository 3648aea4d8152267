"""Overlap of `when` and `clear_when`: the loader rejects a clear_when that can hold with when."""

from __future__ import annotations

import pytest

from riskwatch.rules.expr import CheckedExpr, parse_and_check, when_clear_overlap


def both(when: str, clear: str) -> bool | None:
    a = parse_and_check(when, "position")
    b = parse_and_check(clear, "position")
    assert isinstance(a, CheckedExpr), a
    assert isinstance(b, CheckedExpr), b
    return when_clear_overlap(a, b)


@pytest.mark.parametrize(
    ("when", "clear", "expected"),
    [
        ("margin_usage > 0.80", "margin_usage < 0.70", False),
        ("margin_usage > 0.80", "margin_usage <= 0.80", False),
        ("margin_usage >= 0.80", "margin_usage < 0.80", False),
        ("margin_usage > 0.80", "margin_usage < 0.90", True),
        ("margin_usage >= 0.80", "margin_usage <= 0.80", True),
        ("0.8 < margin_usage", "0.9 > margin_usage", True),
        ("0.8 < margin_usage", "0.7 > margin_usage", False),
        ("margin_usage > 0.8", "not (margin_usage > 0.7)", False),
        ("margin_usage > 0.8", "not (margin_usage > 0.9)", True),
        ("position == 0", "position != 0", False),
        ("position == 0", "position != 1", True),
        ("position == 0", "position == 1", False),
        ("drawdown(equity, 24h) > 0.10", "drawdown(equity, 24h) < 0.05", False),
        ("drawdown(equity, 24h) > 0.10", "drawdown(equity, 1h) < 0.05", None),
        ("pnl_today < -5000", "pnl_today > -4000", False),
        ("leverage > 10 and position == 0", "leverage <= 10", False),
        ("leverage > 10 and position == 0", "leverage < 20 and position == 0", True),
        ("margin_usage > 0.8", "equity > 100", None),
        ("margin_usage > 0.8 or fees > 1", "margin_usage < 0.9", None),
        ("margin_usage > 0.8 or fees > 1", "margin_usage < 0.7", None),
        ("margin_usage > 0.8 and fees > 1", "margin_usage < 0.7", False),
        ("margin_usage > 0.8 and fees > 1", "margin_usage < 0.9", None),
        ("margin_usage > 1 and margin_usage < 0", "margin_usage < 0.9", False),
        ("notional / gross_notional > 0.5", "notional / gross_notional < 0.4", False),
    ],
)
def test_overlap(when: str, clear: str, expected: bool | None) -> None:
    """Simple comparisons are judged; anything else is left undecided (None)."""
    assert both(when, clear) is expected
