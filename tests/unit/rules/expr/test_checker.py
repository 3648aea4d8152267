"""Type checker of the rule expression language: names, scopes, arities, types, windows."""

from __future__ import annotations

import pytest

from riskwatch.rules.expr import (
    RULE_ACCOUNT_FIGURES,
    RULE_POSITION_FIGURES,
    CheckedExpr,
    Code,
    ExprError,
    ExpressionInvalid,
    WindowSpec,
    compile_expression,
    parse_and_check,
)
from riskwatch.rules.expr.names import lookup


def errors(text: str, scope: str = "position", expect: str | None = None) -> list[ExprError]:
    result = parse_and_check(text, scope, expect)  # type: ignore[arg-type]
    assert isinstance(result, list), f"{text!r} was accepted"
    return result


def ok(text: str, scope: str = "position") -> CheckedExpr:
    result = parse_and_check(text, scope)  # type: ignore[arg-type]
    assert isinstance(result, CheckedExpr), result
    return result


@pytest.mark.parametrize(
    ("text", "code", "col", "message"),
    [
        (
            "margin_usag > 0.8",
            Code.UNKNOWN_NAME,
            1,
            "unknown name 'margin_usag' (did you mean 'margin_usage'?)",
        ),
        ("zzzz > 1", Code.UNKNOWN_NAME, 1, "unknown name 'zzzz'"),
        (
            "abs > 1",
            Code.FUNCTION_NOT_CALLED,
            1,
            "'abs' is a function: call it, e.g. abs(unrealised_pnl)",
        ),
        (
            "maxover(equity, 1h) > 1",
            Code.UNKNOWN_FUNCTION,
            1,
            "unknown function 'maxover' (did you mean 'max_over'?)",
        ),
        ("max_over(equity) > 1", Code.WRONG_ARITY, 1, "max_over takes 2 arguments, got 1"),
        ("abs(equity, fees) > 1", Code.WRONG_ARITY, 1, "abs takes 1 argument, got 2"),
        ("min(equity) > 1", Code.WRONG_ARITY, 1, "min takes at least 2 arguments, got 1"),
        ("max() > 1", Code.WRONG_ARITY, 1, "max takes at least 2 arguments, got 0"),
        ("equity + (fees > 1) > 2", Code.TYPE_MISMATCH, 11, "expected a number, got a bool"),
        ("equity and fees > 1", Code.TYPE_MISMATCH, 1, "expected a bool, got a number"),
        ("not equity", Code.TYPE_MISMATCH, 5, "expected a bool, got a number"),
        (
            "equity > 5m",
            Code.DURATION_MISPLACED,
            10,
            "a duration such as 5m can only be the second argument of a window function",
        ),
        (
            "change(equity + 1, 5m) > 0",
            Code.WINDOW_NEEDS_NAME,
            8,
            "the first argument of change must be a metric name, e.g. change(equity, 1h)",
        ),
        (
            "drawdown(equity, 24) > 0.1",
            Code.WINDOW_NEEDS_DURATION,
            18,
            "the second argument of drawdown must be a duration such as 5m, got a number",
        ),
        (
            "rate(equity, 0s) > 0",
            Code.DURATION_NOT_POSITIVE,
            14,
            "window duration '0s' must be positive",
        ),
        (
            "avg_over(equity, 91d) > 0",
            Code.DURATION_TOO_LONG,
            18,
            "window duration '91d' is longer than the limit of 90d",
        ),
    ],
)
def test_checker_error_codes_with_columns(text: str, code: Code, col: int, message: str) -> None:
    """Each checker error has its code, column and message."""
    errs = errors(text)
    assert [(e.code, e.line, e.col, e.message) for e in errs] == [(code, 1, col, message)]


def test_every_checker_error_is_reported_in_order() -> None:
    """All checker errors come back, sorted by position."""
    errs = errors("equityy > 1 and max_over(fees) > 2 or mark_pric and 1 > 5m", "position")
    assert [(e.code, e.col) for e in errs] == [
        (Code.UNKNOWN_NAME, 1),
        (Code.WRONG_ARITY, 17),
        (Code.UNKNOWN_NAME, 39),
        (Code.DURATION_MISPLACED, 57),
    ]


def test_errors_do_not_cascade() -> None:
    """An unknown name does not also produce type errors upstream."""
    errs = errors("(nope + 1) * 2 > 3 and nope2 > 1")
    assert [e.code for e in errs] == [Code.UNKNOWN_NAME, Code.UNKNOWN_NAME]


def test_position_name_in_account_rule() -> None:
    """A position-only name is refused in an account rule and accepted in a position rule."""
    errs = errors("effective_leverage > 10", "account")
    assert [(e.code, e.col, e.message) for e in errs] == [
        (
            Code.POSITION_NAME_IN_ACCOUNT_RULE,
            1,
            "'effective_leverage' is a position name: use it only in a rule with scope: position",
        )
    ]
    assert ok("effective_leverage > 10").names == {"effective_leverage"}


def test_account_names_are_usable_at_both_scopes() -> None:
    """Every account name checks in account and position rules alike."""
    for info in RULE_ACCOUNT_FIGURES:
        ok(f"{info.name} > 0", "account")
        ok(f"{info.name} > 0", "position")


def test_registry_covers_product_names() -> None:
    """The registry lists every name of docs/rules.md with a unit and a doc."""
    account = {
        "equity",
        "deposit",
        "available_balance",
        "realised_pnl",
        "unrealised_pnl",
        "net_funding",
        "fees",
        "order_margin",
        "position_margin",
        "margin_usage",
        "maintenance_usage",
        "gross_notional",
        "net_notional",
        "account_leverage",
        "open_orders",
        "positions",
        "pnl_today",
        "data_age",
    }
    position = {
        "position",
        "average_price",
        "mark_price",
        "notional",
        "unrealised_pnl",
        "leverage",
        "effective_leverage",
        "initial_margin",
        "maintenance_margin",
        "margin_alloc",
        "open_orders",
        "open_quantity",
        "liquidation_distance",
        # From reference data (docs/protocol.md §10): the close's position limit.
        "market_open",
        "seconds_to_market_close",
        "position_limit_at_close",
        "position_limit_headroom_at_close",
    }
    assert {i.name for i in RULE_ACCOUNT_FIGURES} == account
    assert {i.name for i in RULE_POSITION_FIGURES} == position
    assert all(i.unit and i.doc for i in (*RULE_ACCOUNT_FIGURES, *RULE_POSITION_FIGURES))


def test_shared_names_resolve_to_the_position_at_position_scope() -> None:
    """`unrealised_pnl` and `open_orders` mean the position's figure in a position rule."""
    for name in ("unrealised_pnl", "open_orders"):
        at_account = lookup(name, "account")
        at_position = lookup(name, "position")
        assert at_account is not None
        assert at_position is not None
        assert (at_account.scope, at_position.scope) == ("account", "position")


def test_result_type_and_names() -> None:
    """The checked expression reports its type, names and windows."""
    cond = ok("margin_usage > 0.8 and drawdown(equity, 24h) > 0.1 and change(equity, 5m) < 0")
    assert cond.result_type == "bool"
    assert cond.names == {"margin_usage", "equity"}
    assert cond.windows == {
        WindowSpec("drawdown", "equity", 86400.0),
        WindowSpec("change", "equity", 300.0),
    }
    number = ok("notional / gross_notional")
    assert number.result_type == "number"
    assert number.windows == frozenset()


def test_expect_bool_for_conditions() -> None:
    """`expect="bool"` refuses a number-valued condition."""
    errs = errors("margin_usage * 2", expect="bool")
    assert [(e.code, e.col, e.message) for e in errs] == [
        (
            Code.WRONG_RESULT_TYPE,
            1,
            "a condition must be true or false: expected a bool, got a number",
        )
    ]


def test_compile_expression_raises_with_every_error() -> None:
    """`compile_expression` raises ExpressionInvalid listing every error."""
    with pytest.raises(ExpressionInvalid) as caught:
        compile_expression("nope > 1 and nope2 > 2", "account")
    assert [e.code for e in caught.value.errors] == [Code.UNKNOWN_NAME, Code.UNKNOWN_NAME]
    assert str(caught.value) == "1:1: unknown name 'nope'; 1:14: unknown name 'nope2'"


EVERY_CODE = {
    Code.UNEXPECTED_CHARACTER: ("fees > 1 $", 10),
    Code.STRING_NOT_ALLOWED: ('fees > "1"', 8),
    Code.ATTRIBUTE_ACCESS: ("fees.x > 1", 5),
    Code.SUBSCRIPT: ("fees > {1", 8),
    Code.BAD_NUMBER: ("fees > 1y", 8),
    Code.NUMBER_OUT_OF_RANGE: ("fees > 9e9999", 8),
    Code.WRONG_OPERATOR: ("fees => 1", 6),
    Code.TOO_LONG: (" " * 2001, 1),
    Code.EMPTY: ("  ", 3),
    Code.UNEXPECTED_TOKEN: ("fees > , 1", 8),
    Code.UNEXPECTED_END: ("fees >", 7),
    Code.UNCLOSED_PAREN: ("fees > abs(1", 11),
    Code.CHAINED_COMPARISON: ("1 < fees == 2", 10),
    Code.TOO_DEEP: ("(" * 61 + "fees" + ")" * 61 + " > 1", 61),
    Code.UNKNOWN_NAME: ("fess > 1", 1),
    Code.POSITION_NAME_IN_ACCOUNT_RULE: ("fees > 1 and notional > 1", 14),
    Code.FUNCTION_NOT_CALLED: ("fees > rate", 8),
    Code.UNKNOWN_FUNCTION: ("fees > sqrt(1)", 8),
    Code.WRONG_ARITY: ("fees > rate(fees, 1m, 2m)", 8),
    Code.TYPE_MISMATCH: ("fees > (1 < 2)", 9),
    Code.DURATION_MISPLACED: ("5m", 1),
    Code.WINDOW_NEEDS_NAME: ("fees > rate(2, 1m)", 13),
    Code.WINDOW_NEEDS_DURATION: ("fees > rate(fees, fees)", 19),
    Code.DURATION_NOT_POSITIVE: ("fees > rate(fees, 0ms)", 19),
    Code.DURATION_TOO_LONG: ("fees > rate(fees, 13w)", 19),
    Code.WRONG_RESULT_TYPE: ("fees + 1", 1),
}


def test_every_code_has_an_example_with_its_column() -> None:
    """Each error code is produced, at the expected column, by its example."""
    assert set(EVERY_CODE) == set(Code)
    for code, (text, col) in EVERY_CODE.items():
        errs = errors(text, "account", expect="bool")
        assert [(e.code, e.col) for e in errs] == [(code, col)], text


def test_markdown_table_lists_every_name() -> None:
    """The docs/rules.md table has one row per registry entry."""
    from riskwatch.state.catalogue import markdown_table

    table = markdown_table()
    assert table.count("\n") == 2 + len(RULE_ACCOUNT_FIGURES) + len(RULE_POSITION_FIGURES)
    assert "| `margin_usage` | account, position | ratio |" in table
    assert "| `liquidation_distance` | position | ratio |" in table
