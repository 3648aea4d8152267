"""Property tests: the parser never crashes and evaluation never raises."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskwatch.rules.expr import (
    RULE_ACCOUNT_FIGURES,
    RULE_POSITION_FIGURES,
    CheckedExpr,
    ExprError,
    ReferenceWindows,
    parse_and_check,
)

NAMES = sorted({i.name for i in (*RULE_ACCOUNT_FIGURES, *RULE_POSITION_FIGURES)})
ALPHABET = st.sampled_from(
    [
        *"abcdeimnorstuvx_0123456789.+-*/%()<>=!&|,'\"[]{}@:; \n\t",
        *("and ", "or ", "not ", "equity", "max_over(", "drawdown(", "5m", "1h", "abs(", "\u0663"),
    ]
)

FIGURES = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1e308, -1e-308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_parser_returns_only_documented_values(text: str) -> None:
    """Random text yields a CheckedExpr or a non-empty list of ExprError, never an exception."""
    for scope in ("account", "position"):
        result = parse_and_check(text, scope)
        if isinstance(result, list):
            assert result
            assert all(isinstance(e, ExprError) for e in result)
            assert all(0 <= e.offset <= len(text) and e.line >= 1 and e.col >= 1 for e in result)
        else:
            assert isinstance(result, CheckedExpr)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parser_survives_any_unicode(text: str) -> None:
    """Arbitrary unicode never raises out of the parser."""
    result = parse_and_check(text, "position")
    assert isinstance(result, CheckedExpr | list)


def numbers(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.sampled_from(NAMES),
        st.sampled_from(["0", "1", "2.5", "0.8", "1e6", "1e-9"]),
        st.builds(
            lambda f, n, d: f"{f}({n}, {d})",
            st.sampled_from(["max_over", "min_over", "avg_over", "change", "rate", "drawdown"]),
            st.sampled_from(NAMES),
            st.sampled_from(["1s", "5m", "1h", "24h"]),
        ),
    )
    if depth == 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from("+-*/%"), sub),
        st.builds(lambda a: f"-{a}", sub),
        st.builds(lambda a: f"abs({a})", sub),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["min", "max"]), sub, sub),
    )


def conditions(depth: int) -> st.SearchStrategy[str]:
    atom = st.builds(
        lambda a, op, b: f"{a} {op} {b}",
        numbers(2),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        numbers(2),
    )
    if depth == 0:
        return atom
    sub = conditions(depth - 1)
    return st.one_of(
        atom,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(["and", "or"]), sub),
        st.builds(lambda a: f"not ({a})", sub),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conditions(2),
    numbers(3),
    st.dictionaries(st.sampled_from(NAMES), FIGURES),
    st.lists(st.tuples(st.sampled_from(NAMES), FIGURES), max_size=20),
)
def test_evaluation_never_raises(
    condition: str,
    number: str,
    env: dict[str, float | None],
    history: list[tuple[str, float | None]],
) -> None:
    """Well-formed expressions evaluate to bool/None or float/None on any figures."""
    windows = ReferenceWindows()
    for t, (name, figure) in enumerate(history):
        windows.push(name, figure, float(t))
    now = float(len(history))

    cond = parse_and_check(condition, "position")
    assert isinstance(cond, CheckedExpr), (condition, cond)
    assert cond.result_type == "bool"
    assert cond.evaluate(env, windows, now) in (True, False, None)

    value = parse_and_check(number, "position")
    assert isinstance(value, CheckedExpr), (number, value)
    result = value.evaluate(env, windows, now)
    assert result is None or (isinstance(result, float | int) and not math.isnan(result))
