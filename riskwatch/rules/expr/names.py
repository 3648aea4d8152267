"""The names a rule expression can read (docs/rules.md), with scope, unit and doc.

They are the figures of :mod:`riskwatch.state.catalogue` marked readable by rules.
Account names are usable in both `scope: account` and `scope: position` rules. Position
names only in `scope: position` rules. `unrealised_pnl` and `open_orders` exist at both
scopes: in a position rule they mean the position's own figure (the engine's merged
mapping lets the position value override the account value).

Every value is a float in the unit listed, or missing (None) when it cannot be known yet:
no pulse received, no mark price, or a ratio whose denominator (usually equity) is zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Final

from riskwatch.state.catalogue import ACCOUNT_FIGURES, POSITION_FIGURES, FigureInfo, Scope

__all__ = [
    "RULE_ACCOUNT_FIGURES",
    "RULE_POSITION_FIGURES",
    "Scope",
    "is_position_only",
    "lookup",
    "names_in_scope",
    "suggest",
]

RULE_ACCOUNT_FIGURES: Final[tuple[FigureInfo, ...]] = tuple(f for f in ACCOUNT_FIGURES if f.rules)
"""The account figures a rule can read."""

RULE_POSITION_FIGURES: Final[tuple[FigureInfo, ...]] = tuple(f for f in POSITION_FIGURES if f.rules)
"""The position figures a rule can read."""

_ACCOUNT = {info.name: info for info in RULE_ACCOUNT_FIGURES}
_POSITION = {info.name: info for info in RULE_POSITION_FIGURES}


def lookup(name: str, scope: Scope) -> FigureInfo | None:
    """The entry `name` denotes in a rule of `scope`, or None if not usable there.

    At position scope a position name wins over the account name of the same spelling.
    """
    if scope == "position" and name in _POSITION:
        return _POSITION[name]
    return _ACCOUNT.get(name)


def is_position_only(name: str) -> bool:
    """True for names usable only in `scope: position` rules."""
    return name in _POSITION and name not in _ACCOUNT


def names_in_scope(scope: Scope) -> frozenset[str]:
    """Every name a rule of `scope` can read."""
    if scope == "position":
        return frozenset(_ACCOUNT) | frozenset(_POSITION)
    return frozenset(_ACCOUNT)


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt `word`, or None when nothing is close."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None
