"""Lexer and parser of the rule expression language: grammar, precedence, errors."""

from __future__ import annotations

import pytest

from riskwatch.rules.expr import NO_WINDOWS, CheckedExpr, Code, ExprError, parse_and_check
from riskwatch.rules.expr.lexer import tokenize
from riskwatch.rules.expr.parser import MAX_DEPTH, parse
from riskwatch.rules.expr.syntax import (
    Binary,
    BoolOp,
    Call,
    Compare,
    DurationLiteral,
    Name,
    Negate,
    Not,
)
from riskwatch.rules.expr.syntax import Number as Num
from riskwatch.rules.expr.tokens import Kind


def tree(text: str) -> object:
    result = parse(text)
    assert not isinstance(result, list), result
    return result


def errors(text: str, scope: str = "position") -> list[ExprError]:
    result = parse_and_check(text, scope)  # type: ignore[arg-type]
    assert isinstance(result, list), f"{text!r} was accepted"
    return result


def value(text: str, **env: float | None) -> object:
    result = parse_and_check(text, "position")
    assert isinstance(result, CheckedExpr), result
    return result.evaluate(env, NO_WINDOWS, 0.0)


def test_tokens_carry_line_and_column() -> None:
    """Every token records its offset, 1-based line and column."""
    tokens, errs = tokenize("equity >\n  5m")
    assert errs == []
    assert [(t.kind, t.offset, t.line, t.col) for t in tokens] == [
        (Kind.NAME, 0, 1, 1),
        (Kind.GT, 7, 1, 8),
        (Kind.DURATION, 11, 2, 3),
        (Kind.EOF, 13, 2, 5),
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    """Duration literals convert to seconds, including compound ones."""
    tokens, errs = tokenize(text)
    assert errs == []
    assert tokens[0].kind is Kind.DURATION
    assert tokens[0].value == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "number"), [("12", 12.0), ("0.8", 0.8), (".5", 0.5), ("1e-3", 0.001), ("2E3", 2000.0)]
)
def test_numbers(text: str, number: float) -> None:
    """Number literals are floats."""
    tokens, errs = tokenize(text)
    assert errs == []
    assert (tokens[0].kind, tokens[0].value) == (Kind.NUMBER, number)


def test_precedence_or_below_and_below_not() -> None:
    """`or` binds loosest, then `and`, then `not`, then comparisons."""
    node = tree("not a > 1 and b < 2 or c == 3")
    assert node == BoolOp(
        "or",
        BoolOp("and", Not(Compare(">", Name("a"), Num(1))), Compare("<", Name("b"), Num(2))),
        Compare("==", Name("c"), Num(3)),
    )


def test_precedence_arithmetic() -> None:
    """`*` `/` `%` bind tighter than `+` `-`, unary minus tighter still, all left-associative."""
    assert tree("-a * b + c / d - e % f") == Binary(
        "-",
        Binary("+", Binary("*", Negate(Name("a")), Name("b")), Binary("/", Name("c"), Name("d"))),
        Binary("%", Name("e"), Name("f")),
    )
    assert tree("a - b - c") == Binary("-", Binary("-", Name("a"), Name("b")), Name("c"))


def test_parentheses_and_calls() -> None:
    """Parentheses regroup; calls take comma-separated arguments."""
    assert tree("(a + b) * max(c, 2)") == Binary(
        "*", Binary("+", Name("a"), Name("b")), Call("max", (Name("c"), Num(2)))
    )
    assert tree("drawdown(equity, 24h)") == Call(
        "drawdown", (Name("equity"), DurationLiteral(86400))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("10 - 4 - 3 == 3", True),
        ("-2 * -3 == 6", True),
        ("7 % 4 == 3", True),
        ("not 1 > 2", True),
        ("1 > 2 or 2 > 1 and 3 > 2", True),
        ("(1 > 2 or 2 > 1) and 3 < 2", False),
        ("abs(-3) == 3 and min(4, 2, 3) == 2 and max(1, 5) == 5", True),
    ],
)
def test_constant_expressions_evaluate(text: str, expected: bool) -> None:
    """Constant expressions evaluate by the usual precedence."""
    assert value(text) is expected


def test_whole_expression_in_multiple_lines() -> None:
    """Newlines are whitespace and positions count lines."""
    errs = errors("margin_usage > 0.8\n  and levrage > 10")
    assert [(e.code, e.line, e.col) for e in errs] == [(Code.UNKNOWN_NAME, 2, 7)]


@pytest.mark.parametrize(
    ("text", "code", "col", "message"),
    [
        ("", Code.EMPTY, 1, "empty expression"),
        ("equity >", Code.UNEXPECTED_END, 9, "unexpected end of expression"),
        ("equity > 1)", Code.UNEXPECTED_TOKEN, 11, "unexpected token ')'"),
        ("equity 1", Code.UNEXPECTED_TOKEN, 8, "unexpected token '1'"),
        ("max(equity, 1", Code.UNCLOSED_PAREN, 4, "'(' is never closed"),
        ("(equity > 1", Code.UNCLOSED_PAREN, 1, "'(' is never closed"),
        (
            "0 < equity < 5",
            Code.CHAINED_COMPARISON,
            12,
            "comparisons cannot be chained (use 'and': a < b and b < c)",
        ),
        ("equity > 1 && fees > 2", Code.WRONG_OPERATOR, 12, "unknown operator '&&' (use 'and')"),
        ("equity > 1 || fees > 2", Code.WRONG_OPERATOR, 12, "unknown operator '||' (use 'or')"),
        ("!(equity > 1)", Code.WRONG_OPERATOR, 1, "unknown operator '!' (use 'not')"),
        ("equity = 1", Code.WRONG_OPERATOR, 8, "unknown operator '=' (use '==')"),
        ("equity ** 2 > 1", Code.WRONG_OPERATOR, 8, "unknown operator '**'"),
        ("equity > 'x'", Code.STRING_NOT_ALLOWED, 10, "strings are not allowed in expressions"),
        ("equity.real > 1", Code.ATTRIBUTE_ACCESS, 7, "attribute access ('.') is not allowed"),
        (
            "equity[0] > 1",
            Code.SUBSCRIPT,
            7,
            "unexpected '[': subscripts and collections are not allowed",
        ),
        ("equity > 1 @ 2", Code.UNEXPECTED_CHARACTER, 12, "unexpected character '@'"),
        (
            "equity > 5x",
            Code.BAD_NUMBER,
            10,
            "'5x' is not a duration: use numbers with units w, d, h, m, s, ms, largest first,"
            " e.g. 30s, 1.5s or 1m30s",
        ),
        ("equity > 1e999", Code.NUMBER_OUT_OF_RANGE, 10, "number '1e999' is out of range"),
        ("x" * 2001, Code.TOO_LONG, 1, "expression is 2001 characters long, limit 2000"),
    ],
)
def test_syntax_error_codes_with_columns(text: str, code: Code, col: int, message: str) -> None:
    """Each lexical and syntax error has its code, column and message."""
    first = errors(text)[0]
    assert (first.code, first.line, first.col, first.message) == (code, 1, col, message)
    assert str(first) == f"1:{col}: {message}"
    assert first.offset == col - 1


def test_every_lexical_error_is_reported() -> None:
    """The lexer reports all its errors, not only the first."""
    errs = errors("a.b > 'x' and c[1] @")
    assert [(e.code, e.col) for e in errs] == [
        (Code.ATTRIBUTE_ACCESS, 2),
        (Code.STRING_NOT_ALLOWED, 7),
        (Code.SUBSCRIPT, 16),
        (Code.SUBSCRIPT, 18),
        (Code.UNEXPECTED_CHARACTER, 20),
    ]


def test_nesting_limit() -> None:
    """Nesting deeper than the limit is an error, not a RecursionError."""
    deep = "(" * (MAX_DEPTH + 1) + "equity" + ")" * (MAX_DEPTH + 1) + " > 1"
    assert [e.code for e in errors(deep)] == [Code.TOO_DEEP]
    chain = " + ".join(["equity"] * (MAX_DEPTH + 5)) + " > 1"
    assert [e.code for e in errors(chain)] == [Code.TOO_DEEP]
    assert [e.code for e in errors("-" * 500 + "equity > 1")] == [Code.TOO_DEEP]
    assert isinstance(
        parse_and_check("(" * 20 + "equity" + ")" * 20 + " > 1", "account"), CheckedExpr
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "__import__(os)",
        "equity.__class__",
        "().__class__.__bases__[0]",
        "lambda: 1",
        "[x for x in equity]",
        "{'a': 1}",
        "exec(equity)",
        "eval(equity)",
        "open(equity)",
        "getattr(equity, fees)",
        "equity if fees else 1",
        "f'{equity}'",
        "equity; fees",
        "equity\\\n> 1",
    ],
)
def test_no_way_to_reach_python(text: str) -> None:
    """Strings, attributes, subscripts, lambdas and Python builtins are all rejected."""
    errs = errors(text)
    assert errs
    assert all(isinstance(e, ExprError) for e in errs)


def test_python_builtin_names_are_unknown_functions() -> None:
    """A call of a Python builtin is an unknown function, with no suggestion to Python."""
    errs = errors("__import__(equity) > 1")
    assert [(e.code, e.col, e.message) for e in errs] == [
        (Code.UNKNOWN_FUNCTION, 1, "unknown function '__import__'")
    ]
