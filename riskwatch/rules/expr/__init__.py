"""The rule expression language (docs/rules.md): parse and check once, evaluate fast.

    >>> expr = parse_and_check("margin_usage > 0.8 and leverage >= 10", "position")
    >>> expr.evaluate({"margin_usage": 0.9, "leverage": 12.0}, NO_WINDOWS, 0.0)
    True

`parse_and_check` returns a `CheckedExpr` or the list of every `ExprError` found, never
raises and never runs anything from the text: the language has no strings, attributes,
subscripts or user functions, and evaluation is nested closures (see `compile.py` for the
missing-value semantics and `windows.py` for the window-store contract).
"""

from __future__ import annotations

from typing import Literal

from .checker import FUNCTIONS, Type, check
from .compile import Env, Evaluator, compile_node
from .errors import Code, ExprError, ExpressionInvalid
from .names import RULE_ACCOUNT_FIGURES, RULE_POSITION_FIGURES, Scope
from .overlap import can_hold_together
from .parser import parse
from .syntax import Expr
from .windows import (
    NO_WINDOWS,
    WINDOW_FUNCTIONS,
    ReferenceWindows,
    WindowSource,
    WindowSpec,
    compute_window,
)

__all__ = [
    "FUNCTIONS",
    "NO_WINDOWS",
    "RULE_ACCOUNT_FIGURES",
    "RULE_POSITION_FIGURES",
    "WINDOW_FUNCTIONS",
    "CheckedExpr",
    "Code",
    "Env",
    "ExprError",
    "ExpressionInvalid",
    "ReferenceWindows",
    "Scope",
    "Type",
    "WindowSource",
    "WindowSpec",
    "compile_expression",
    "compute_window",
    "parse_and_check",
    "when_clear_overlap",
]

ResultType = Literal["number", "bool"]


class CheckedExpr:
    """A parsed, checked and compiled expression.

    `evaluate(env, windows, now)` is the compiled closure itself (no wrapper call): it
    returns True/False/None for a bool expression and float/None for a number expression,
    and never raises for float/int/None values in `env` (NaN reads as missing).
    `names`: the names read; `windows`: the windows needed, for the window store;
    `result_type`: "bool" or "number"; `tree`: the syntax tree.
    """

    __slots__ = ("evaluate", "names", "result_type", "scope", "text", "tree", "windows")

    def __init__(
        self,
        text: str,
        scope: Scope,
        tree: Expr,
        result_type: ResultType,
        names: frozenset[str],
        windows: frozenset[WindowSpec],
        evaluate: Evaluator,
    ) -> None:
        self.text = text
        self.scope: Scope = scope
        self.tree = tree
        self.result_type: ResultType = result_type
        self.names = names
        self.windows = windows
        self.evaluate: Evaluator = evaluate

    def __repr__(self) -> str:
        return f"CheckedExpr({self.text!r}, scope={self.scope!r}, type={self.result_type})"


def parse_and_check(
    text: str, scope: Scope, expect: ResultType | None = None
) -> CheckedExpr | list[ExprError]:
    """Parse, check and compile `text` for a rule of `scope`; return errors instead.

    `expect="bool"` makes a number-valued expression an error (for `when`/`clear_when`).
    Lexical errors are all reported; parsing stops at the first syntax error; every
    checker error is reported, sorted by offset. Never raises.
    """
    tree = parse(text)
    if isinstance(tree, list):
        return tree
    want = None if expect is None else Type(expect)
    result = check(text, tree, scope, want)
    if result.errors:
        return result.errors
    result_type: ResultType = "bool" if result.type is Type.BOOL else "number"
    return CheckedExpr(
        text,
        scope,
        tree,
        result_type,
        frozenset(result.names),
        frozenset(result.windows),
        compile_node(tree),
    )


def compile_expression(text: str, scope: Scope, expect: ResultType | None = None) -> CheckedExpr:
    """Like `parse_and_check` but raise `ExpressionInvalid` (listing every error) on failure."""
    result = parse_and_check(text, scope, expect)
    if isinstance(result, list):
        raise ExpressionInvalid(text, result)
    return result


def when_clear_overlap(when: CheckedExpr, clear_when: CheckedExpr) -> bool | None:
    """Whether `when` and `clear_when` can both hold: True, False (never), None (can't tell).

    The rule loader rejects a `clear_when` for which this returns True; see `overlap.py`.
    """
    return can_hold_together(when.tree, clear_when.tree)
