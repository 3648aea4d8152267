"""Reference-data gauges, read at scrape time (docs/protocol.md §10, §11).

Per daemon: the data's age, failed fetches, symbols known. Per symbol with
``market_hours``: whether its market is open and the seconds to its close. Per
account and held symbol: the position limit that applies at the next market close
(the ``max_notional`` of the position's leverage level × 50 % overnight or 10 % over a
weekend) and the headroom to it (limit − notional; negative means the account will be
reduce-only at the close).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from riskwatch.refdata.fetch import RefdataSource
from riskwatch.refdata.hours import market_state
from riskwatch.refdata.model import LeverageLevel

__all__ = ["HeldPosition", "RefdataCollector", "level_cap"]


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """One account's position in one symbol, as the collector needs it."""

    account: str
    symbol: str
    leverage: float
    notional: float


def level_cap(levels: Iterable[LeverageLevel], leverage: float) -> float | None:
    """``max_notional`` of the level matching ``leverage`` (None when unknown)."""
    for level in levels:
        if abs(level.leverage - leverage) < 1e-9:
            return level.max_notional
    return None


class RefdataCollector(Collector):
    """Exports the gauges of the module docstring from ``source`` and ``positions``."""

    def __init__(
        self,
        source: RefdataSource,
        positions: Callable[[], Iterable[HeldPosition]],
    ) -> None:
        self._source = source
        self._positions = positions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges (see the module docstring)."""
        src = self._source
        now = src.clock.now()
        age = GaugeMetricFamily(
            "riskwatch_refdata_age_seconds", "Seconds since reference data was last fetched."
        )
        if src.fetched_at is not None:
            age.add_metric([], max(0.0, now - src.fetched_at))
        failures = GaugeMetricFamily(
            "riskwatch_refdata_fetch_failures", "Failed GET /refdata attempts since start."
        )
        failures.add_metric([], float(src.failures))
        symbols = GaugeMetricFamily(
            "riskwatch_refdata_symbols", "Symbols in the last reference data fetched."
        )
        symbols.add_metric([], float(len(src.refdata.symbols)))
        opened = GaugeMetricFamily(
            "riskwatch_market_open", "1 while the symbol's market is open.", labels=["symbol"]
        )
        to_close = GaugeMetricFamily(
            "riskwatch_seconds_to_market_close",
            "Seconds until the symbol's market closes (0 when closed).",
            labels=["symbol"],
        )
        factors: dict[str, float] = {}
        for name, ref in sorted(src.refdata.symbols.items()):
            state = market_state(ref.market_hours, now)
            if state is None:
                continue
            factors[name] = state.close_factor
            opened.add_metric([name], 1.0 if state.open else 0.0)
            to_close.add_metric([name], state.seconds_to_close)
        limit = GaugeMetricFamily(
            "riskwatch_position_limit_at_close_usd",
            "Position limit at the next market close: the leverage level's max_notional x "
            "0.5 (overnight) or 0.1 (weekend).",
            labels=["account", "symbol"],
        )
        headroom = GaugeMetricFamily(
            "riskwatch_position_limit_headroom_at_close_usd",
            "Position limit at the next market close minus the position's notional, USD.",
            labels=["account", "symbol"],
        )
        # Every held position is listed only when a symbol has market hours (a listing
        # of thousands of positions per scrape for nothing otherwise).
        for held in self._positions() if factors else ():
            factor = factors.get(held.symbol)
            cap = level_cap(src.refdata.levels.get(held.symbol, ()), held.leverage)
            if factor is None or cap is None:
                continue
            limit.add_metric([held.account, held.symbol], cap * factor)
            headroom.add_metric([held.account, held.symbol], cap * factor - held.notional)
        yield from (age, failures, symbols, opened, to_close, limit, headroom)
