"""Syntax tree of the rule expression language.

Nodes are frozen and compare by structure only: positions are excluded from equality so
that `x > 1` parsed from two different texts compares equal (the overlap analysis relies
on it). `pos` is the 0-based offset of the node's first character in the expression text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Binary",
    "BoolOp",
    "Call",
    "Compare",
    "DurationLiteral",
    "Expr",
    "Name",
    "Negate",
    "Not",
    "Number",
]


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal (always a float)."""

    value: float
    pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class DurationLiteral:
    """A duration literal such as `5m`, in seconds; valid only as a window argument."""

    seconds: float
    text: str = field(compare=False, default="")
    pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Name:
    """A metric name from the registry in `names.py`."""

    name: str
    pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Negate:
    """Unary minus."""

    operand: Expr
    pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic: `op` is one of `+ - * / %`."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(compare=False, default=0)
    op_pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Compare:
    """Comparison: `op` is one of `== != < <= > >=`."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(compare=False, default=0)
    op_pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """`and` / `or` with Kleene three-valued logic."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(compare=False, default=0)
    op_pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Not:
    """`not`."""

    operand: Expr
    pos: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a built-in function (`abs`, `min`, `max` or a window function)."""

    func: str
    args: tuple[Expr, ...]
    pos: int = field(compare=False, default=0)
    close_pos: int = field(compare=False, default=0)


Expr = Number | DurationLiteral | Name | Negate | Binary | Compare | BoolOp | Not | Call
