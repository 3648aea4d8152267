"""The names a rule expression can read (docs/rules.md), with scope, unit and doc.

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
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACCOUNT_NAMES",
    "POSITION_NAMES",
    "NameInfo",
    "Scope",
    "is_position_only",
    "lookup",
    "markdown_table",
    "names_in_scope",
    "suggest",
]

Scope = Literal["account", "position"]


@dataclass(frozen=True, slots=True)
class NameInfo:
    """One readable name: where it is usable, its unit, and a one-line doc for the README."""

    name: str
    scope: Scope
    unit: str
    doc: str


def _a(name: str, unit: str, doc: str) -> NameInfo:
    return NameInfo(name, "account", unit, doc)


def _p(name: str, unit: str, doc: str) -> NameInfo:
    return NameInfo(name, "position", unit, doc)


ACCOUNT_NAMES: tuple[NameInfo, ...] = (
    _a("equity", "USD", "deposit + realised_pnl + unrealised_pnl + net_funding"),
    _a("deposit", "USD", "deposited collateral as the exchange reports it"),
    _a("available_balance", "USD", "balance free for new orders, as the exchange reports it"),
    _a("realised_pnl", "USD", "realised profit and loss"),
    _a("unrealised_pnl", "USD", "unrealised profit and loss of all positions"),
    _a("net_funding", "USD", "funding received minus funding paid"),
    _a("fees", "USD", "trading fees paid"),
    _a("order_margin", "USD", "margin held by open orders"),
    _a("position_margin", "USD", "margin held by open positions"),
    _a("margin_usage", "ratio", "(position_margin + order_margin) / equity; 0.8 is 80 %"),
    _a(
        "maintenance_usage",
        "ratio",
        "sum of maintenance requirements / equity; 1.0 is liquidation",
    ),
    _a("gross_notional", "USD", "sum of abs(position) × mark over all symbols"),
    _a("net_notional", "USD", "sum of signed position × mark over all symbols"),
    _a("account_leverage", "ratio", "gross_notional / equity"),
    _a("open_orders", "count", "number of open orders on the account"),
    _a("positions", "count", "number of non-zero positions"),
    _a("pnl_today", "USD", "equity change since the daily reset (default 00:00 UTC)"),
    _a("data_age", "seconds", "seconds since the last pulse"),
)

POSITION_NAMES: tuple[NameInfo, ...] = (
    _p("position", "base units", "signed position size (negative is short)"),
    _p("average_price", "USD per base unit", "average entry price"),
    _p("mark_price", "USD per base unit", "current mark price"),
    _p("notional", "USD", "abs(position) × mark_price"),
    _p("unrealised_pnl", "USD", "unrealised profit and loss of this position"),
    _p("leverage", "ratio", "the symbol's leverage setting"),
    _p("effective_leverage", "ratio", "notional / equity"),
    _p("initial_margin", "USD", "initial margin required by this position"),
    _p("maintenance_margin", "USD", "maintenance margin required by this position"),
    _p("margin_alloc", "USD", "margin allocated to this position"),
    _p("open_orders", "count", "number of open orders on this symbol"),
    _p("open_quantity", "base units", "total quantity of open orders on this symbol"),
    _p(
        "liquidation_distance",
        "ratio",
        "relative mark move that would bring maintenance_usage to 1.0",
    ),
)

_ACCOUNT = {info.name: info for info in ACCOUNT_NAMES}
_POSITION = {info.name: info for info in POSITION_NAMES}


def lookup(name: str, scope: Scope) -> NameInfo | None:
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


def markdown_table() -> str:
    """The names as a Markdown table (name, scope, unit, meaning) for the README."""
    lines = ["| name | scope | unit | meaning |", "|---|---|---|---|"]
    for info in (*ACCOUNT_NAMES, *POSITION_NAMES):
        scope = "account, position" if info.scope == "account" else "position"
        lines.append(f"| `{info.name}` | {scope} | {info.unit} | {info.doc} |")
    return "\n".join(lines) + "\n"
