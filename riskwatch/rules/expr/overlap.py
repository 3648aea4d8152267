"""Can `when` and `clear_when` hold at the same time? Answered only when it is simple.

Both expressions are read, after constant folding (`-5000` is a constant), as
conjunctions (`a and b and …`) of atoms. An atom this module understands is a comparison
of a subject with a constant — `x > 0.8`, `0.8 < x`, `drawdown(equity, 24h) >= 0.1`,
`not (x > 1)` — where the subject is any expression, compared by structure. Each
understood atom bounds its subject to an interval.

* False: some subject's intervals from both sides do not intersect, so both can never
  hold together (a well-formed hysteresis such as `x > 0.8` / `x < 0.7`).
* True: every atom is understood, both sides constrain the same subjects, and every
  intersection is non-empty: a value exists for which both hold (`x > 0.8` / `x < 0.9`).
* None: anything else (`or`, atoms on different subjects, atoms it cannot read); the rule
  loader then accepts the pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from .compile import Missing, fold_constants
from .syntax import BoolOp, Compare, Expr, Not, Number

__all__ = ["can_hold_together"]

_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class _Interval:
    """Values v with lo < v < hi (or <= when the bound is closed); `excluded` points left out."""

    lo: float = -_INF
    lo_closed: bool = False
    hi: float = _INF
    hi_closed: bool = False
    excluded: frozenset[float] = frozenset()

    def meet(self, other: _Interval) -> _Interval:
        lo, lo_closed = max((self.lo, not self.lo_closed), (other.lo, not other.lo_closed))
        hi, hi_closed = min((self.hi, self.hi_closed), (other.hi, other.hi_closed))
        return _Interval(lo, not lo_closed, hi, hi_closed, self.excluded | other.excluded)

    def empty(self) -> bool:
        if self.lo > self.hi:
            return True
        if self.lo == self.hi:
            return not (self.lo_closed and self.hi_closed) or self.lo in self.excluded
        return False  # an open interval of reals outlives finitely many excluded points


def _atom(op: str, c: float) -> _Interval:
    if op == ">":
        return _Interval(lo=c)
    if op == ">=":
        return _Interval(lo=c, lo_closed=True)
    if op == "<":
        return _Interval(hi=c)
    if op == "<=":
        return _Interval(hi=c, hi_closed=True)
    if op == "==":
        return _Interval(c, True, c, True)
    return _Interval(excluded=frozenset({c}))


def _conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, BoolOp) and node.op == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _constraint(node: Expr) -> tuple[Expr, _Interval] | None:
    negated = False
    while isinstance(node, Not):
        negated = not negated
        node = node.operand
    if not isinstance(node, Compare):
        return None
    op, subject, const = node.op, node.left, node.right
    if isinstance(subject, Number) and not isinstance(const, Number):
        op, subject, const = _FLIP[op], const, subject
    if not isinstance(const, Number) or isinstance(subject, Number):
        return None
    if negated:
        op = _NEGATE[op]
    return subject, _atom(op, const.value)


def _read(node: Expr) -> tuple[dict[Expr, _Interval], bool]:
    """Intervals per subject, and whether every atom was understood."""
    bounds: dict[Expr, _Interval] = {}
    complete = True
    for atom in _conjuncts(node):
        found = _constraint(atom)
        if found is None:
            complete = False
            continue
        subject, interval = found
        bounds[subject] = bounds[subject].meet(interval) if subject in bounds else interval
    return bounds, complete


def can_hold_together(when: Expr, clear_when: Expr) -> bool | None:
    """True if both can hold for some values, False if never, None if not simply told."""
    when_folded, clear_folded = fold_constants(when), fold_constants(clear_when)
    if isinstance(when_folded, Missing) or isinstance(clear_folded, Missing):
        return None  # not a condition; the checker refuses it before this is asked
    a, a_complete = _read(when_folded)
    b, b_complete = _read(clear_folded)
    for subject, interval in a.items():
        if subject in b and interval.meet(b[subject]).empty():
            return False
    if any(i.empty() for i in (*a.values(), *b.values())):
        return False  # one side alone can never hold
    if a_complete and b_complete and a and a.keys() == b.keys():
        return True
    return None
