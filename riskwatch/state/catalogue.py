"""The catalogue of figure names: the one list every figure of riskwatch is declared in.

Each :class:`FigureInfo` names one figure, its scope, its unit and a one-line meaning.
Everything else is generated from this list:

- the keys of :func:`riskwatch.state.derived.compute`'s ``Figures.account`` and of each
  ``Figures.positions`` row (:data:`ACCOUNT_NAMES`, :data:`POSITION_NAMES`, in this order);
- the names a rule expression may read (:mod:`riskwatch.rules.expr.names`): the figures
  with ``rules=True``;
- the names table of the rules documentation (:func:`markdown_table`; print it with
  ``python -m riskwatch.state.catalogue``; a test holds the documentation to it).

To add a figure: add its entry here, compute it in :mod:`riskwatch.state.derived`, and
regenerate the table. Account figures are readable in account and position rules;
position figures only in position rules. ``unrealised_pnl`` and ``open_orders`` exist at
both scopes: in a position rule they mean the position's own figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ACCOUNT_FIGURES",
    "ACCOUNT_NAMES",
    "POSITION_FIGURES",
    "POSITION_NAMES",
    "FigureInfo",
    "Scope",
    "markdown_table",
]

Scope = Literal["account", "position"]


@dataclass(frozen=True, slots=True)
class FigureInfo:
    """One figure: its scope, unit, one-line meaning, and whether rules may read it.

    ``rules=False`` marks a diagnostic figure: computed and exported as a metric, but not
    part of the rule language.
    """

    name: str
    scope: Scope
    unit: str
    doc: str
    rules: bool = True


def _a(name: str, unit: str, doc: str, *, rules: bool = True) -> FigureInfo:
    return FigureInfo(name, "account", unit, doc, rules)


def _p(name: str, unit: str, doc: str) -> FigureInfo:
    return FigureInfo(name, "position", unit, doc)


ACCOUNT_FIGURES: Final[tuple[FigureInfo, ...]] = (
    _a(
        "equity",
        "USD",
        "deposit + realised_pnl + unrealised_pnl + net_funding − fees + referral rewards",
    ),
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
    _a(
        "equity_drift",
        "USD",
        "at the last balance pulse: riskwatch's equity just before it minus the reported one",
        rules=False,
    ),
    _a(
        "reported_equity",
        "USD",
        "equity summed from the last balance pulse's own figures",
        rules=False,
    ),
)
"""Every account figure, in the order of ``Figures.account``."""

POSITION_FIGURES: Final[tuple[FigureInfo, ...]] = (
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
    _p("market_open", "0 or 1", "1 while the symbol's market is open (refdata market_hours)"),
    _p("seconds_to_market_close", "seconds", "time until the market closes; 0 when closed"),
    _p(
        "position_limit_at_close",
        "USD",
        "position limit at the next market close: max_notional × 50 % overnight, 10 % weekend",
    ),
    _p(
        "position_limit_headroom_at_close",
        "USD",
        "position_limit_at_close − notional; below 0 the close makes the account reduce-only",
    ),
)
"""Every position figure, in the order of a ``Figures.positions`` row."""

ACCOUNT_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in ACCOUNT_FIGURES)
"""Every key of ``Figures.account``."""

POSITION_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in POSITION_FIGURES)
"""Every key of a ``Figures.positions`` row."""


def markdown_table() -> str:
    """The names a rule can read as a Markdown table (name, scope, unit, meaning)."""
    lines = ["| name | scope | unit | meaning |", "|---|---|---|---|"]
    for info in (*ACCOUNT_FIGURES, *POSITION_FIGURES):
        if not info.rules:
            continue
        scope = "account, position" if info.scope == "account" else "position"
        lines.append(f"| `{info.name}` | {scope} | {info.unit} | {info.doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
