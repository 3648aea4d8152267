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
from functools import partial
from typing import Final, NamedTuple

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from riskwatch.metrics import OwnedGauges, OwnedSeries
from riskwatch.refdata.fetch import RefdataSource
from riskwatch.refdata.hours import market_state
from riskwatch.refdata.model import LeverageLevel, Refdata

__all__ = ["HeldPositions", "RefdataCollector", "level_cap"]


class HeldPositions(NamedTuple):
    """One account's non-flat positions, as the collector needs them."""

    account: str
    held: tuple[tuple[str, float, float], ...]
    """``(symbol, leverage, notional)`` of each non-flat position."""


def level_cap(levels: Iterable[LeverageLevel], leverage: float) -> float | None:
    """``max_notional`` of the level matching ``leverage`` (None when unknown)."""
    for level in levels:
        if abs(level.leverage - leverage) < 1e-9:
            return level.max_notional
    return None


_FAMILIES: Final = (
    ("riskwatch_refdata_age_seconds", "Seconds since reference data was last fetched.", ()),
    ("riskwatch_refdata_fetch_failures", "Failed GET /refdata attempts since start.", ()),
    ("riskwatch_refdata_symbols", "Symbols in the last reference data fetched.", ()),
    ("riskwatch_market_open", "1 while the symbol's market is open.", ("symbol",)),
    (
        "riskwatch_seconds_to_market_close",
        "Seconds until the symbol's market closes (0 when closed).",
        ("symbol",),
    ),
    (
        "riskwatch_position_limit_at_close_usd",
        "Position limit at the next market close: the leverage level's max_notional x "
        "0.5 (overnight) or 0.1 (weekend).",
        ("account", "symbol"),
    ),
    (
        "riskwatch_position_limit_headroom_at_close_usd",
        "Position limit at the next market close minus the position's notional, USD.",
        ("account", "symbol"),
    ),
)
_AGE, _FAILURES, _SYMBOLS, _OPEN, _TO_CLOSE, _LIMIT, _HEADROOM = range(7)

_Markets = tuple[tuple[str, bool, float, float], ...]
"""``(symbol, open, seconds to close, close factor)`` of each symbol with market hours."""


def _daemon_series(
    age: float | None, failures: int, symbols: int, markets: _Markets
) -> Iterator[OwnedSeries]:
    if age is not None:
        yield _AGE, (), age
    yield _FAILURES, (), float(failures)
    yield _SYMBOLS, (), float(symbols)
    for name, is_open, to_close, _ in markets:
        yield _OPEN, (name,), 1.0 if is_open else 0.0
        yield _TO_CLOSE, (name,), to_close


def _account_series(
    account: HeldPositions, data: Refdata, factors: dict[str, float]
) -> Iterator[OwnedSeries]:
    for symbol, leverage, notional in account.held:
        factor = factors.get(symbol)
        cap = level_cap(data.levels.get(symbol, ()), leverage)
        if factor is None or cap is None:
            continue
        labels = (account.account, symbol)
        yield _LIMIT, labels, cap * factor
        yield _HEADROOM, labels, cap * factor - notional


class RefdataCollector(Collector):
    """Exports the gauges of the module docstring from ``source`` and ``positions``.

    An account's limit and headroom lines are rendered again only when its positions,
    the reference data or a close factor changed (:class:`~riskwatch.metrics.OwnedGauges`).
    """

    def __init__(
        self,
        source: RefdataSource,
        positions: Callable[[], Iterable[HeldPositions]],
    ) -> None:
        self._source = source
        self._positions = positions
        self._gauges = OwnedGauges(_FAMILIES)

    def _markets(self, now: float) -> _Markets:
        out = []
        for name, ref in sorted(self._source.refdata.symbols.items()):
            state = market_state(ref.market_hours, now)
            if state is not None:
                out.append((name, state.open, state.seconds_to_close, state.close_factor))
        return tuple(out)

    def _owners(self) -> Iterator[tuple[str, object, Callable[[], Iterable[OwnedSeries]]]]:
        """``(owner, key, series)`` of the daemon (owner "") and of each account."""
        src = self._source
        now = src.clock.now()
        data = src.refdata
        markets = self._markets(now)
        age = None if src.fetched_at is None else max(0.0, now - src.fetched_at)
        daemon = (age, src.failures, len(data.symbols), markets)
        yield "", daemon, partial(_daemon_series, *daemon)
        factors = {name: factor for name, _, _, factor in markets}
        # Every held position is listed only when a symbol has market hours (a listing
        # of thousands of positions per scrape for nothing otherwise).
        if not factors:
            return
        close_factors = tuple(factors.values())
        for account in self._positions():
            key = (data, close_factors, account.held)
            yield account.account, key, partial(_account_series, account, data, factors)

    def render_chunks(self) -> Iterator[str]:
        """The gauges as text-format lines, in pieces (``metrics.exposition_chunks``)."""
        return self._gauges.render(self._owners())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges (see the module docstring)."""
        yield from self._gauges.build(series() for _, _, series in self._owners())
