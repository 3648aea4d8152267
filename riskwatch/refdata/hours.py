"""Market hours and the position limit at market close (pure; docs/protocol.md §10, §11).

QFEX trades every symbol around the clock, but outside the symbol's ``market_hours``
("Market Close") each participant's position limit falls to 50 % of normal overnight
and to 10 % over a weekend, and an account above it may only reduce. The docs do not
say what "overnight" and "weekend" are exactly; riskwatch reads them from
``market_hours`` (docs/protocol.md §16): a closure that ends on the next calendar day
(or the same day) is overnight, one that spans a whole day without hours is a weekend.

:func:`market_state` answers, at Unix time ``now``: is the market open, how many
seconds until it closes (0 when closed), and which fraction of the normal limit
applies at the next (or current) closure, so that a rule can de-risk *before* it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from riskwatch.refdata.model import MarketHours

__all__ = ["OVERNIGHT_FACTOR", "WEEKEND_FACTOR", "MarketState", "market_state"]

OVERNIGHT_FACTOR: Final = 0.5
WEEKEND_FACTOR: Final = 0.1


@dataclass(frozen=True, slots=True)
class MarketState:
    """``open``; ``seconds_to_close`` (0 when closed); ``close_factor``: the share of the
    normal position limit at the next closure (the current one when closed)."""

    open: bool
    seconds_to_close: float
    close_factor: float


def _sessions(hours: MarketHours, tz: ZoneInfo, day: date) -> tuple[datetime, datetime] | None:
    spec = hours.days[day.weekday()]
    if spec is None:
        return None
    start = datetime.combine(day, spec.open, tz)
    end = (
        datetime.combine(day + timedelta(days=1), dtime(0), tz)
        if spec.close is None
        else datetime.combine(day, spec.close, tz)
    )
    return (start, end) if end > start else None


def _next_factor(hours: MarketHours, close_day: date) -> float:
    """The factor of the closure that follows ``close_day``'s session: overnight when the
    next calendar day trades, else a weekend."""
    return (
        OVERNIGHT_FACTOR
        if hours.days[(close_day + timedelta(days=1)).weekday()]
        else WEEKEND_FACTOR
    )


def market_state(hours: MarketHours | None, now: float) -> MarketState | None:
    """The symbol's market at Unix time ``now``; None without usable hours."""
    if hours is None or not any(hours.days):
        return None
    try:
        tz = ZoneInfo(hours.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    local = datetime.fromtimestamp(now, UTC).astimezone(tz)
    today = local.date()
    session = _sessions(hours, tz, today)
    if session is not None and session[0] <= local < session[1]:
        return MarketState(True, (session[1] - local).total_seconds(), _next_factor(hours, today))
    close_day = today
    if session is None or local < session[0]:
        close_day = today - timedelta(days=1)
        while _sessions(hours, tz, close_day) is None:
            close_day -= timedelta(days=1)
    return MarketState(False, 0.0, _next_factor(hours, close_day))
