"""Evaluation of compiled expressions: values, missing-value semantics, window functions."""

from __future__ import annotations

import math

import pytest

from riskwatch.rules.expr import (
    NO_WINDOWS,
    CheckedExpr,
    ReferenceWindows,
    WindowSource,
    compute_window,
    parse_and_check,
)

NAN = math.nan
INF = math.inf


def compiled(text: str) -> CheckedExpr:
    result = parse_and_check(text, "position")
    assert isinstance(result, CheckedExpr), result
    return result


def run(
    text: str, windows: WindowSource = NO_WINDOWS, now: float = 0.0, **env: float | None
) -> object:
    return compiled(text).evaluate(env, windows, now)


def test_issue_example() -> None:
    """The example condition holds, fails and is missing as its inputs say."""
    expr = compiled("margin_usage > 0.8 and leverage >= 10")
    assert expr.evaluate({"margin_usage": 0.9, "leverage": 10}, NO_WINDOWS, 0.0) is True
    assert expr.evaluate({"margin_usage": 0.7, "leverage": 12}, NO_WINDOWS, 0.0) is False
    assert expr.evaluate({"margin_usage": 0.9}, NO_WINDOWS, 0.0) is None
    assert expr.evaluate({"leverage": 5}, NO_WINDOWS, 0.0) is False


# Kleene truth table, with T/F/M made by comparing names that are 1, 0 or missing.
_TRUTH = {"T": 1.0, "F": 0.0, "M": None}
_RESULT = {True: "T", False: "F", None: "M"}


@pytest.mark.parametrize(
    ("a", "b", "and_", "or_"),
    [
        ("T", "T", "T", "T"),
        ("T", "F", "F", "T"),
        ("T", "M", "M", "T"),
        ("F", "T", "F", "T"),
        ("F", "F", "F", "F"),
        ("F", "M", "F", "M"),
        ("M", "T", "M", "T"),
        ("M", "F", "F", "M"),
        ("M", "M", "M", "M"),
    ],
)
def test_kleene_and_or(a: str, b: str, and_: str, or_: str) -> None:
    """`and`/`or` follow Kleene three-valued logic in both operand orders."""
    env = {"equity": _TRUTH[a], "fees": _TRUTH[b]}
    both_and = compiled("equity > 0.5 and fees > 0.5").evaluate(env, NO_WINDOWS, 0.0)
    both_or = compiled("equity > 0.5 or fees > 0.5").evaluate(env, NO_WINDOWS, 0.0)
    assert _RESULT[both_and] == and_
    assert _RESULT[both_or] == or_


@pytest.mark.parametrize(("a", "expected"), [("T", "F"), ("F", "T"), ("M", "M")])
def test_not(a: str, expected: str) -> None:
    """`not missing` is missing."""
    assert _RESULT[run("not equity > 0.5", equity=_TRUTH[a])] == expected  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    [
        "equity + 1",
        "1 - equity",
        "equity * fees",
        "fees / equity",
        "equity % 2",
        "-equity",
        "abs(equity)",
        "min(equity, 1)",
        "max(1, equity, 3)",
        "(equity + fees) * 2",
        "2 * (equity + fees)",
    ],
)
@pytest.mark.parametrize("missing", [None, NAN, "absent"])
def test_arithmetic_with_a_missing_operand_is_missing(text: str, missing: object) -> None:
    """Arithmetic and functions with a missing (None, NaN or absent) operand are missing."""
    env: dict[str, float | None] = {"fees": 2.0}
    if missing != "absent":
        env["equity"] = missing  # type: ignore[assignment]
    assert compiled(text).evaluate(env, NO_WINDOWS, 0.0) is None


@pytest.mark.parametrize(
    "text", ["equity > 1", "1 < equity", "equity == fees", "equity + 1 != 3", "equity != 1"]
)
@pytest.mark.parametrize("missing", [None, NAN])
def test_comparison_with_a_missing_operand_is_missing(text: str, missing: float | None) -> None:
    """A comparison with a missing or NaN operand is missing, never True."""
    assert run(text, equity=missing, fees=1.0) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("equity / fees", None),
        ("equity % fees", None),
        ("equity / 0", None),
        ("1 / 0 + equity", None),
        ("equity / fees > 1", None),
        ("equity / fees > 1 or equity > 1", True),
        ("not (equity / fees > 1)", None),
    ],
)
def test_division_by_zero_is_missing(text: str, expected: object) -> None:
    """Division and modulo by zero give missing, never ±inf or an exception."""
    assert run(text, equity=5.0, fees=0.0) is expected


def test_infinities_propagate_but_nan_never_escapes() -> None:
    """±inf compares as usual, and an undefined result (inf - inf) is missing."""
    assert run("equity > 1e300", equity=INF) is True
    assert run("equity - fees", equity=INF, fees=INF) is None
    assert run("equity - fees > 0", equity=INF, fees=INF) is None
    assert run("equity * 0", equity=INF) is None
    assert run("equity / fees", equity=INF, fees=INF) is None
    assert run("equity % 2", equity=INF) is None
    assert run("equity * 2", equity=1e308) == INF


def test_number_results() -> None:
    """Number expressions give floats (for value templates)."""
    assert run("notional / gross_notional", notional=25.0, gross_notional=100.0) == 0.25
    assert run("abs(position) * mark_price", position=-2.0, mark_price=3.5) == 7.0
    assert run("min(3, equity, 2)", equity=1.0) == 1.0
    assert run("max(3, equity, 2)", equity=1.0) == 3.0
    assert run("-(equity - 10) % 7", equity=1.0) == 2.0
    assert run("0.05 * equity", equity=200.0) == 10.0
    assert run("equity - 1 - 2", equity=10.0) == 7.0
    assert run("-5000 + equity", equity=1.0) == -4999.0


def test_constant_folding_keeps_semantics() -> None:
    """Folded constants give the same results as the unfolded rules."""
    assert run("pnl_today < -5000", pnl_today=-6000.0) is True
    assert run("pnl_today < -5000", pnl_today=None) is None
    assert run("1 / 0 > 1 or equity > 1", equity=2.0) is True
    assert run("1 / 0 > 1 or equity > 1", equity=0.0) is None
    assert run("1 / 0 > 1 and equity > 1", equity=0.0) is False
    assert run("abs(1 / 0)") is None
    assert run("1 < 2") is True


def test_position_values_override_account_values() -> None:
    """The merged mapping lets the position's open_orders win in a position rule."""
    account = {"open_orders": 12.0, "leverage": 20.0, "position": 0.0}
    position = {"open_orders": 0.0}
    expr = compiled("leverage > 10 and position == 0 and open_orders == 0")
    assert expr.evaluate({**account, **position}, NO_WINDOWS, 0.0) is True
    assert expr.evaluate(account, NO_WINDOWS, 0.0) is False


def _series() -> ReferenceWindows:
    windows = ReferenceWindows()
    for t, equity in [(0, 100.0), (60, 120.0), (120, 90.0), (180, 96.0)]:
        windows.push("equity", equity, float(t))
    windows.push("equity", None, 200.0)
    windows.push("equity", NAN, 210.0)
    return windows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_over(equity, 1h)", 120.0),
        ("min_over(equity, 1h)", 90.0),
        ("avg_over(equity, 1h)", 101.5),
        ("max_over(equity, 1m)", 96.0),
        ("change(equity, 1h)", -4.0),
        ("change(equity, 2m)", -24.0),
        ("change(equity, 30s)", 0.0),
        ("rate(equity, 2m)", -0.2),
        ("rate(equity, 30s)", None),
        ("drawdown(equity, 1h)", 0.2),
        ("drawdown(equity, 1m)", 0.0),
        ("drawdown(equity, 1h) > 0.1", True),
        ("max_over(fees, 1h)", None),
    ],
)
def test_window_functions_with_the_reference_source(text: str, expected: float | None) -> None:
    """Window functions read the documented values from the reference store at now=180."""
    result = run(text, windows=_series(), now=180.0)
    if isinstance(expected, float):
        assert result == pytest.approx(expected)
    else:
        assert result is expected


def test_window_edges_are_inclusive_and_the_future_is_excluded() -> None:
    """The window is [now - seconds, now]: both ends in, later samples out."""
    samples = [(0.0, 1.0), (10.0, 2.0), (20.0, 3.0)]
    assert compute_window("min_over", samples, 10.0, 10.0) == 1.0
    assert compute_window("max_over", samples, 10.0, 10.0) == 2.0
    assert compute_window("change", samples, 10.0, 20.0) == 1.0
    assert compute_window("change", samples, 5.0, 30.0) is None
    assert compute_window("nope", samples, 100.0, 20.0) is None


def test_drawdown_with_non_positive_peak_is_missing() -> None:
    """Drawdown of a series whose peak is zero or negative is missing."""
    assert compute_window("drawdown", [(0.0, -5.0), (1.0, -8.0)], 10.0, 1.0) is None
    assert compute_window("drawdown", [(0.0, 0.0)], 10.0, 1.0) is None
    assert compute_window("drawdown", [(0.0, 10.0), (1.0, -10.0)], 10.0, 1.0) == 2.0


def test_reference_store_skips_non_finite_values() -> None:
    """The reference store records no sample for None, NaN or inf."""
    windows = ReferenceWindows()
    windows.push_all({"equity": INF, "fees": None, "deposit": 5.0}, 0.0)
    assert windows.window("max_over", "equity", 10.0, 0.0) is None
    assert windows.window("max_over", "fees", 10.0, 0.0) is None
    assert windows.window("max_over", "deposit", 10.0, 0.0) == 5.0


class _NanWindows:
    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        return NAN


def test_a_nan_from_the_window_source_reads_as_missing() -> None:
    """A source breaking the contract with NaN still cannot make a rule hold."""
    assert run("drawdown(equity, 1h) > 0.1", windows=_NanWindows()) is None
    assert run("not drawdown(equity, 1h) > 0.1", windows=_NanWindows()) is None


def test_windows_without_history_are_missing() -> None:
    """With NO_WINDOWS every window function is missing."""
    assert run("drawdown(equity, 1h) > 0.1 or equity > 1", equity=0.0) is None
    assert run("drawdown(equity, 1h) > 0.1 and equity > 1", equity=0.0) is False
