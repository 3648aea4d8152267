"""Compile a checked syntax tree into nested Python closures (no eval, exec or compile()).

Each node becomes one small function `f(env, windows, now)`. Common shapes are fused into
one closure — `name OP constant`, `constant OP name`, two-operand `and`/`or` — because a
Python call costs about as much as the work inside it; constant subtrees are folded.

Missing values (three-valued semantics, the same everywhere):

* a name absent from `env`, None, or NaN is missing; a window the source cannot answer is
  missing;
* arithmetic, `abs`, `min`, `max` and unary minus with a missing operand are missing;
* division or `%` by zero is missing (not ±inf); any result that is NaN (`inf - inf`) is
  missing; ±inf otherwise propagates and compares as usual;
* a comparison with a missing operand is missing;
* `and`/`or` follow Kleene logic: `False and missing` is False, `True or missing` is True,
  `True and missing` / `False or missing` are missing; `not missing` is missing;
* so a bool expression yields True, False or None, a number expression a float or None,
  and NaN never escapes. The rule engine treats a `when` of None as "does not hold" and
  may report it as "no data".

`env` values must be float or int (the engine converts Decimal before evaluation).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .syntax import Binary, BoolOp, Call, Compare, DurationLiteral, Expr, Name, Negate, Not, Number
from .windows import WindowSource

__all__ = ["Env", "Evaluator", "Missing", "compile_node", "fold_constants"]

Env = Mapping[str, float | None]
Value = float | bool | None
Evaluator = Callable[[Env, WindowSource, float], Any]
"""`f(env, windows, now)`: True/False/None for bool expressions, float/None for numbers."""

_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def compile_node(node: Expr) -> Evaluator:
    """Turn a tree that passed the checker into an evaluator; never raises at evaluation."""
    folded = fold_constants(node)
    if isinstance(folded, Missing):
        return _const(None)
    return _compile(folded)


# ---------------------------------------------------------------- constant folding


class Missing:
    """Marks a constant subtree that is always missing (e.g. `1 / 0`)."""


def fold_constants(node: Expr) -> Expr | Missing:
    """Replace every constant number subtree by a `Number` (so `-5000` is one literal).

    Folding runs the evaluator itself on an empty environment, so semantics match.
    Constant bool subtrees (`1 < 2`) are left alone: they are rare and cheap.
    """
    if isinstance(node, Number | Name | DurationLiteral):
        return node
    if _is_constant_number(node):
        value = _compile(node)({}, _NoSource(), 0.0)
        return Missing() if value is None else Number(float(value), node.pos)
    if isinstance(node, Negate | Not):
        inner = fold_constants(node.operand)
        if isinstance(inner, Missing):
            return inner if isinstance(node, Negate) else node
        return replace(node, operand=inner)
    if isinstance(node, Binary | Compare | BoolOp):
        left, right = fold_constants(node.left), fold_constants(node.right)
        if isinstance(left, Missing) or isinstance(right, Missing):
            return node  # keeps the three-valued rules of and/or/not exact
        return replace(node, left=left, right=right)
    args = tuple(fold_constants(arg) for arg in node.args)
    if any(isinstance(arg, Missing) for arg in args):
        return node
    return replace(node, args=tuple(a for a in args if not isinstance(a, Missing)))


def _is_constant_number(node: Expr) -> bool:
    if isinstance(node, Number):
        return True
    if isinstance(node, Negate):
        return _is_constant_number(node.operand)
    if isinstance(node, Binary):
        return _is_constant_number(node.left) and _is_constant_number(node.right)
    if isinstance(node, Call) and node.func in ("abs", "min", "max"):
        return all(_is_constant_number(arg) for arg in node.args)
    return False


class _NoSource:
    def window(self, func: str, name: str, seconds: float, now: float) -> float | None:
        return None


# ---------------------------------------------------------------- compilation


def _compile(node: Expr) -> Evaluator:
    if isinstance(node, Number):
        return _const(node.value)
    if isinstance(node, Name):
        return _name(node.name)
    if isinstance(node, Negate):
        return _negate(_compile(node.operand))
    if isinstance(node, Binary):
        return _binary(node)
    if isinstance(node, Compare):
        return _compare(node)
    if isinstance(node, BoolOp):
        return _boolop(node)
    if isinstance(node, Not):
        return _not(_compile(node.operand))
    if isinstance(node, Call):
        return _call(node)
    msg = f"cannot compile a bare duration '{node.text}'"
    raise TypeError(msg)


def _const(value: float | None) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        return value

    return f


def _name(name: str) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        v = env.get(name)
        if v is None or v != v:
            return None
        return v

    return f


def _negate(inner: Evaluator) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        v = inner(env, windows, now)
        return None if v is None else -v

    return f


def _binary(node: Binary) -> Evaluator:
    """Arithmetic, fused with name and constant operands to save calls.

    Division or `%` by zero raises ZeroDivisionError inside the closure, which costs
    nothing until it happens (Python 3.11 zero-cost try) and turns into missing. A NaN
    operand read from `env` needs no check of its own: it makes the result NaN, which
    turns into missing.
    """
    fn = _ARITH[node.op]
    lnode, rnode = node.left, node.right
    if isinstance(lnode, Name) and isinstance(rnode, Number):
        return _arith_nc(fn, lnode.name, rnode.value)
    if isinstance(lnode, Number) and isinstance(rnode, Name):
        return _arith_cn(fn, lnode.value, rnode.name)
    if isinstance(lnode, Name) and isinstance(rnode, Name):
        return _arith_nn(fn, lnode.name, rnode.name)
    if isinstance(rnode, Number):
        return _arith_fc(fn, _compile(lnode), rnode.value)
    if isinstance(lnode, Number):
        return _arith_cf(fn, lnode.value, _compile(rnode))
    return _arith_ff(fn, _compile(lnode), _compile(rnode))


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}


def _arith_nc(fn: Callable[[Any, Any], Any], name: str, c: float) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        a = env.get(name)
        if a is None:
            return None
        try:
            r: float = fn(a, c)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _arith_cn(fn: Callable[[Any, Any], Any], c: float, name: str) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        b = env.get(name)
        if b is None:
            return None
        try:
            r: float = fn(c, b)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _arith_nn(fn: Callable[[Any, Any], Any], left: str, right: str) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        a = env.get(left)
        if a is None:
            return None
        b = env.get(right)
        if b is None:
            return None
        try:
            r: float = fn(a, b)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _arith_fc(fn: Callable[[Any, Any], Any], left: Evaluator, c: float) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        a = left(env, windows, now)
        if a is None:
            return None
        try:
            r: float = fn(a, c)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _arith_cf(fn: Callable[[Any, Any], Any], c: float, right: Evaluator) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        b = right(env, windows, now)
        if b is None:
            return None
        try:
            r: float = fn(c, b)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _arith_ff(fn: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> float | None:
        a = left(env, windows, now)
        if a is None:
            return None
        b = right(env, windows, now)
        if b is None:
            return None
        try:
            r: float = fn(a, b)
        except ArithmeticError:
            return None
        return None if r != r else r

    return f


def _compare(node: Compare) -> Evaluator:
    """Comparisons; `constant OP x` is turned into `x OP' constant` first."""
    op, lnode, rnode = node.op, node.left, node.right
    if isinstance(lnode, Number) and not isinstance(rnode, Number):
        op, lnode, rnode = _FLIP[op], rnode, lnode
    cmp = _CMP[op]
    if isinstance(rnode, Number):
        c = rnode.value
        if isinstance(lnode, Name):
            return _compare_name_const(lnode.name, op, c)
        inner = _compile(lnode)

        def with_const(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = inner(env, windows, now)
            return None if v is None else cmp(v, c)

        return with_const
    if isinstance(lnode, Name) and isinstance(rnode, Name):
        lname, rname = lnode.name, rnode.name

        def names(env: Env, windows: WindowSource, now: float) -> bool | None:
            a = env.get(lname)
            if a is None or a != a:
                return None
            b = env.get(rname)
            if b is None or b != b:
                return None
            return cmp(a, b)

        return names
    left, right = _compile(lnode), _compile(rnode)

    def general(env: Env, windows: WindowSource, now: float) -> bool | None:
        a = left(env, windows, now)
        if a is None:
            return None
        b = right(env, windows, now)
        return None if b is None else cmp(a, b)

    return general


def _compare_name_const(name: str, op: str, c: float) -> Evaluator:
    """`name OP constant`, the commonest shape, as one closure without an operator call."""
    # One specialised body per operator: a call through operator.gt costs ~40 ns.
    if op == ">":

        def gt(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = env.get(name)
            return None if v is None or v != v else v > c

        return gt
    if op == ">=":

        def ge(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = env.get(name)
            return None if v is None or v != v else v >= c

        return ge
    if op == "<":

        def lt(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = env.get(name)
            return None if v is None or v != v else v < c

        return lt
    if op == "<=":

        def le(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = env.get(name)
            return None if v is None or v != v else v <= c

        return le
    if op == "==":

        def eq(env: Env, windows: WindowSource, now: float) -> bool | None:
            v = env.get(name)
            return None if v is None or v != v else v == c

        return eq

    def ne(env: Env, windows: WindowSource, now: float) -> bool | None:
        v = env.get(name)
        return None if v is None or v != v else v != c

    return ne


def _boolop(node: BoolOp) -> Evaluator:
    left, right = _compile(node.left), _compile(node.right)
    if node.op == "and":

        def and_(env: Env, windows: WindowSource, now: float) -> bool | None:
            a: float | None = left(env, windows, now)
            if a is False:
                return False
            b: float | None = right(env, windows, now)
            if b is False:
                return False
            if a is None or b is None:
                return None
            return True

        return and_

    def or_(env: Env, windows: WindowSource, now: float) -> bool | None:
        a = left(env, windows, now)
        if a is True:
            return True
        b = right(env, windows, now)
        if b is True:
            return True
        if a is None or b is None:
            return None
        return False

    return or_


def _not(inner: Evaluator) -> Evaluator:
    def f(env: Env, windows: WindowSource, now: float) -> bool | None:
        v = inner(env, windows, now)
        return None if v is None else not v

    return f


def _call(node: Call) -> Evaluator:
    func = node.func
    if func == "abs":
        arg = node.args[0]
        if isinstance(arg, Name):
            name = arg.name

            def abs_name(env: Env, windows: WindowSource, now: float) -> float | None:
                v = env.get(name)
                return None if v is None or v != v else abs(v)

            return abs_name
        inner = _compile(arg)

        def abs_(env: Env, windows: WindowSource, now: float) -> float | None:
            v = inner(env, windows, now)
            return None if v is None else abs(v)

        return abs_
    if func in ("min", "max") and len(node.args) == 2:
        return _extreme2(func == "min", _compile(node.args[0]), _compile(node.args[1]))
    if func in ("min", "max"):
        parts = tuple(_compile(arg) for arg in node.args)
        pick = min if func == "min" else max

        def extreme(env: Env, windows: WindowSource, now: float) -> float | None:
            values = []
            for part in parts:
                v = part(env, windows, now)
                if v is None:
                    return None
                values.append(v)
            result: float = pick(values)
            return result

        return extreme
    target, span = node.args
    if not isinstance(target, Name) or not isinstance(span, DurationLiteral):
        msg = f"unchecked window call {func}"
        raise TypeError(msg)
    name, seconds = target.name, span.seconds

    def window(env: Env, windows: WindowSource, now: float) -> float | None:
        v = windows.window(func, name, seconds, now)
        if v is None or v != v:
            return None
        return v

    return window


def _extreme2(smallest: bool, left: Evaluator, right: Evaluator) -> Evaluator:
    """Two-argument `min`/`max` without building a list (operands are never NaN)."""
    if smallest:

        def min2(env: Env, windows: WindowSource, now: float) -> float | None:
            a: float | None = left(env, windows, now)
            if a is None:
                return None
            b: float | None = right(env, windows, now)
            if b is None:
                return None
            return a if a <= b else b

        return min2

    def max2(env: Env, windows: WindowSource, now: float) -> float | None:
        a: float | None = left(env, windows, now)
        if a is None:
            return None
        b: float | None = right(env, windows, now)
        if b is None:
            return None
        return a if a >= b else b

    return max2
