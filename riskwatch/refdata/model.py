"""Parsed reference data (docs/protocol.md §11, §5.5).

``GET /refdata`` answers ``{"type": …, "data": [RefdataSymbol, …]}`` where numbers are
strings (``"0.001"``) except ``default_max_leverage`` (an integer), and
``market_hours`` is ``{"tz": …, "monday": {"open": "HH:MM:SS", "close": …}, …}``
(days without trading are absent). Leverage levels come from the trade gateway's
``available_leverage_levels_response``: a list of ``{symbol, leverage (a string),
initial_margin, maintenance_margin, max_notional}`` (legacy name ``max_position``).
A field that is missing or unreadable is None: riskwatch then falls back to its
defaults and says so, rather than refusing the whole document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Final

__all__ = [
    "DAYS",
    "DayHours",
    "LeverageLevel",
    "MarketHours",
    "Refdata",
    "SymbolRef",
    "parse_leverage_levels",
    "parse_refdata",
]

DAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""``market_hours`` keys, in ``datetime.weekday()`` order."""


@dataclass(frozen=True, slots=True)
class DayHours:
    """One day's trading session in the market's time zone (``close`` may be 24:00)."""

    open: time
    close: time | None  # None = midnight at the end of the day


@dataclass(frozen=True, slots=True)
class MarketHours:
    """A symbol's weekly sessions: ``days[weekday]`` or None when closed all day."""

    tz: str
    days: tuple[DayHours | None, ...]


@dataclass(frozen=True, slots=True)
class LeverageLevel:
    """One selectable leverage of a symbol and its caps (rates, USD)."""

    leverage: float
    max_notional: float | None = None
    initial_margin: float | None = None
    maintenance_margin: float | None = None


@dataclass(frozen=True, slots=True)
class SymbolRef:
    """What one symbol allows. Quantities in base units, prices in USD."""

    symbol: str
    lot_size: float | None = None
    min_quantity: float | None = None
    max_quantity: float | None = None
    tick_size: float | None = None
    status: str | None = None
    default_max_leverage: int | None = None
    market_hours: MarketHours | None = None


@dataclass(frozen=True, slots=True)
class Refdata:
    """Every symbol's reference data and leverage levels, as last fetched."""

    symbols: Mapping[str, SymbolRef] = field(default_factory=dict)
    levels: Mapping[str, tuple[LeverageLevel, ...]] = field(default_factory=dict)

    def symbol(self, symbol: str) -> SymbolRef | None:
        """The symbol's reference data, or None when unknown."""
        return self.symbols.get(symbol)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number == number else None  # NaN is no number
    return None


def _clock(text: Any) -> time | None:
    if not isinstance(text, str):
        return None
    if text.startswith("24:00"):
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        return None


def _hours(raw: Any) -> MarketHours | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("tz"), str):
        return None
    days: list[DayHours | None] = []
    for name in DAYS:
        day = raw.get(name)
        opening = _clock(day.get("open")) if isinstance(day, dict) else None
        if not isinstance(day, dict) or opening is None:
            days.append(None)
            continue
        days.append(DayHours(open=opening, close=_clock(day.get("close"))))
    return MarketHours(tz=raw["tz"], days=tuple(days))


def parse_refdata(document: Any) -> dict[str, SymbolRef]:
    """Symbols of a ``GET /refdata`` answer; raises ValueError if it has no ``data`` list."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        msg = "refdata answer has no data list"
        raise ValueError(msg)
    out: dict[str, SymbolRef] = {}
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
            continue
        lev = item.get("default_max_leverage")
        lev = lev if isinstance(lev, int) and not isinstance(lev, bool) else None
        out[item["symbol"]] = SymbolRef(
            symbol=item["symbol"],
            lot_size=_num(item.get("lot_size")),
            min_quantity=_num(item.get("min_quantity")),
            max_quantity=_num(item.get("max_quantity")),
            tick_size=_num(item.get("tick_size")),
            status=item.get("status") if isinstance(item.get("status"), str) else None,
            default_max_leverage=lev
            if isinstance(lev, int) and not isinstance(lev, bool)
            else None,
            market_hours=_hours(item.get("market_hours")),
        )
    return out


def parse_leverage_levels(payload: Any) -> dict[str, tuple[LeverageLevel, ...]]:
    """Levels per symbol of an ``available_leverage_levels_response`` payload, by leverage."""
    by_symbol: dict[str, list[LeverageLevel]] = {}
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
            continue
        leverage = _num(item.get("leverage"))
        if leverage is None or leverage <= 0:
            continue
        cap = item.get("max_notional", item.get("max_position"))
        by_symbol.setdefault(item["symbol"], []).append(
            LeverageLevel(
                leverage=leverage,
                max_notional=_num(cap),
                initial_margin=_num(item.get("initial_margin")),
                maintenance_margin=_num(item.get("maintenance_margin")),
            )
        )
    return {s: tuple(sorted(v, key=lambda lv: lv.leverage)) for s, v in by_symbol.items()}
