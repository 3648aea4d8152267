"""Tokens of the rule expression language, each with its position in the text."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["COMPARISONS", "KEYWORDS", "Kind", "Token"]


class Kind(enum.Enum):
    """Token kinds; operator kinds carry their spelling as the value."""

    NUMBER = "number"
    DURATION = "duration"
    NAME = "name"
    AND = "and"
    OR = "or"
    NOT = "not"
    PLUS = "+"
    MINUS = "-"
    STAR = "*"
    SLASH = "/"
    PERCENT = "%"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EOF = "end of expression"


KEYWORDS = {"and": Kind.AND, "or": Kind.OR, "not": Kind.NOT}
COMPARISONS = frozenset({Kind.EQ, Kind.NE, Kind.LT, Kind.LE, Kind.GT, Kind.GE})


@dataclass(frozen=True, slots=True)
class Token:
    """One token. `value` is the number (NUMBER) or seconds (DURATION), else 0.0.

    `offset` is 0-based into the expression text; `line`/`col` are 1-based.
    """

    kind: Kind
    text: str
    offset: int
    line: int
    col: int
    value: float = 0.0
