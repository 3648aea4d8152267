"""Type checker: names, scopes, arities and types, every error reported at once.

Types are `number`, `bool` and `duration`. Names are numbers; comparisons give bool and
take numbers; `and`/`or`/`not` take bools; arithmetic takes and gives numbers; a duration
may only be the second argument of a window function. Functions:

* `abs(x)`: one number; `min(a, b, …)` / `max(a, b, …)`: two or more numbers;
* `max_over`, `min_over`, `avg_over`, `change`, `rate`, `drawdown` `(NAME, DURATION)`: the
  first argument must be a plain metric name — not an expression — so that the window
  store keeps history per metric and its memory stays bounded by the longest duration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import Code, ExprError, position_of
from .names import Scope, is_position_only, lookup, names_in_scope, suggest
from .syntax import Binary, BoolOp, Call, Compare, DurationLiteral, Expr, Name, Negate, Not, Number
from .windows import MAX_WINDOW_SECONDS, WINDOW_FUNCTIONS, WindowSpec

__all__ = ["FUNCTIONS", "CheckResult", "Type", "check"]

FUNCTIONS = frozenset({"abs", "min", "max"}) | WINDOW_FUNCTIONS


class Type(enum.Enum):
    """Static type of an expression."""

    NUMBER = "number"
    BOOL = "bool"
    DURATION = "duration"
    ERROR = "error"  # internal: already reported, suppresses follow-on errors


_ARTICLE = {Type.NUMBER: "a number", Type.BOOL: "a bool", Type.DURATION: "a duration"}


@dataclass(slots=True)
class CheckResult:
    """What the checker learnt: the type, the names and windows used, and the errors."""

    type: Type
    names: set[str] = field(default_factory=set)
    windows: set[WindowSpec] = field(default_factory=set)
    errors: list[ExprError] = field(default_factory=list)


def check(text: str, node: Expr, scope: Scope, expect: Type | None = None) -> CheckResult:
    """Check `node` (parsed from `text`) for a rule of `scope`; never raises.

    With `expect`, a result of another type is an error (the rule loader passes BOOL for
    `when` and `clear_when`).
    """
    checker = _Checker(text, scope)
    result_type = checker.visit(node)
    if result_type is Type.DURATION:
        checker.want(node, Type.NUMBER)  # reports the misplaced duration
    elif expect is not None and result_type not in (expect, Type.ERROR):
        what = "a condition must be true or false" if expect is Type.BOOL else "wrong type"
        checker.error(
            Code.WRONG_RESULT_TYPE,
            f"{what}: expected {_ARTICLE[expect]}, got {_ARTICLE[result_type]}",
            node.pos,
        )
    if checker.result.errors:
        result_type = Type.ERROR
    checker.result.type = result_type
    checker.result.errors.sort(key=lambda e: e.offset)
    return checker.result


class _Checker:
    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.scope = scope
        self.result = CheckResult(Type.ERROR)

    def error(self, code: Code, msg: str, offset: int) -> None:
        line, col = position_of(self.text, offset)
        self.result.errors.append(ExprError(code, msg, offset, line, col))

    def visit(self, node: Expr) -> Type:
        if isinstance(node, Number):
            return Type.NUMBER
        if isinstance(node, DurationLiteral):
            return Type.DURATION
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Negate):
            self.want(node.operand, Type.NUMBER)
            return Type.NUMBER
        if isinstance(node, Binary):
            self.want(node.left, Type.NUMBER)
            self.want(node.right, Type.NUMBER)
            return Type.NUMBER
        if isinstance(node, Compare):
            self.want(node.left, Type.NUMBER)
            self.want(node.right, Type.NUMBER)
            return Type.BOOL
        if isinstance(node, BoolOp):
            self.want(node.left, Type.BOOL)
            self.want(node.right, Type.BOOL)
            return Type.BOOL
        if isinstance(node, Not):
            self.want(node.operand, Type.BOOL)
            return Type.BOOL
        return self.call(node)

    def want(self, node: Expr, expected: Type) -> None:
        """Visit `node` and report it unless it has the `expected` type."""
        got = self.visit(node)
        if got is expected or got is Type.ERROR:
            return
        if got is Type.DURATION:
            example = node.text if isinstance(node, DurationLiteral) else "5m"
            msg = (
                f"a duration such as {example} can only be the second argument of a window function"
            )
            self.error(Code.DURATION_MISPLACED, msg, node.pos)
            return
        self.error(
            Code.TYPE_MISMATCH, f"expected {_ARTICLE[expected]}, got {_ARTICLE[got]}", node.pos
        )

    def name(self, node: Name) -> Type:
        if lookup(node.name, self.scope) is not None:
            self.result.names.add(node.name)
            return Type.NUMBER
        if node.name in FUNCTIONS:
            msg = f"'{node.name}' is a function: call it, e.g. {_usage(node.name)}"
            self.error(Code.FUNCTION_NOT_CALLED, msg, node.pos)
        elif is_position_only(node.name):
            msg = f"'{node.name}' is a position name: use it only in a rule with scope: position"
            self.error(Code.POSITION_NAME_IN_ACCOUNT_RULE, msg, node.pos)
        else:
            msg = f"unknown name '{node.name}'"
            close = suggest(node.name, names_in_scope(self.scope))
            if close is not None:
                msg += f" (did you mean '{close}'?)"
            self.error(Code.UNKNOWN_NAME, msg, node.pos)
        return Type.ERROR

    def call(self, node: Call) -> Type:
        func, args = node.func, node.args
        if func not in FUNCTIONS:
            msg = f"unknown function '{func}'"
            close = suggest(func, FUNCTIONS)
            if close is not None:
                msg += f" (did you mean '{close}'?)"
            self.error(Code.UNKNOWN_FUNCTION, msg, node.pos)
            for arg in args:
                self.visit(arg)
            return Type.ERROR
        if func in WINDOW_FUNCTIONS:
            return self.window_call(node)
        if func == "abs" and len(args) != 1:
            self.error(Code.WRONG_ARITY, f"abs takes 1 argument, got {len(args)}", node.pos)
        elif func != "abs" and len(args) < 2:
            msg = f"{func} takes at least 2 arguments, got {len(args)}"
            self.error(Code.WRONG_ARITY, msg, node.pos)
        for arg in args:
            self.want(arg, Type.NUMBER)
        return Type.NUMBER

    def window_call(self, node: Call) -> Type:
        func, args = node.func, node.args
        if len(args) != 2:
            self.error(Code.WRONG_ARITY, f"{func} takes 2 arguments, got {len(args)}", node.pos)
            for arg in args:
                self.visit(arg)
            return Type.ERROR
        target, span = args
        ok = True
        if not isinstance(target, Name):
            got = self.visit(target)
            if got is not Type.ERROR:
                msg = f"the first argument of {func} must be a metric name, e.g. {_usage(func)}"
                self.error(Code.WINDOW_NEEDS_NAME, msg, target.pos)
            ok = False
        elif self.name(target) is Type.ERROR:
            ok = False
        if not isinstance(span, DurationLiteral):
            got = self.visit(span)
            if got is not Type.ERROR:
                msg = (
                    f"the second argument of {func} must be a duration such as 5m, "
                    f"got {_ARTICLE[got]}"
                )
                self.error(Code.WINDOW_NEEDS_DURATION, msg, span.pos)
            ok = False
        elif span.seconds <= 0:
            msg = f"window duration '{span.text}' must be positive"
            self.error(Code.DURATION_NOT_POSITIVE, msg, span.pos)
            ok = False
        elif span.seconds > MAX_WINDOW_SECONDS:
            msg = f"window duration '{span.text}' is longer than the limit of 90d"
            self.error(Code.DURATION_TOO_LONG, msg, span.pos)
            ok = False
        if ok and isinstance(target, Name) and isinstance(span, DurationLiteral):
            self.result.windows.add(WindowSpec(func, target.name, span.seconds))
        return Type.NUMBER


def _usage(func: str) -> str:
    if func == "abs":
        return "abs(unrealised_pnl)"
    if func in ("min", "max"):
        return f"{func}(margin_usage, maintenance_usage)"
    if func == "drawdown":
        return "drawdown(equity, 24h)"
    return f"{func}(equity, 1h)"
