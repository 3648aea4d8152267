"""The market figures of a position row, from reference data (pure; docs/protocol.md §10).

:class:`MarketFiguresOf` is the ``market`` provider of
:func:`riskwatch.state.derived.compute`: for a symbol, the position's leverage and
notional, and ``now``, it gives ``market_open`` (1/0), ``seconds_to_market_close``,
``position_limit_at_close`` (the ``max_notional`` of the position's leverage level ×
the next closure's factor) and ``position_limit_headroom_at_close`` (that limit minus
the notional). Each is None when the reference data needed is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from riskwatch.refdata.hours import MarketState, market_state
from riskwatch.refdata.model import Refdata

__all__ = ["MarketFiguresOf"]

_UNSEEN = object()


class MarketFiguresOf:
    """Market figures from the reference data ``current()`` returns at each call.

    The market state of a symbol is computed once per whole second of ``now`` (time-zone
    arithmetic is the costly part; the rules read it on every pulse)."""

    __slots__ = ("_caps", "_current", "_second", "_states", "_token")

    def __init__(self, current: Callable[[], Refdata]) -> None:
        self._current = current
        self._second: tuple[int, Refdata | None] = (-1, None)
        self._states: dict[str, MarketState | None] = {}
        # Stands for the reference data in keys: compared by identity, never field by field.
        self._token: tuple[Refdata | None, object] = (None, object())
        self._caps: tuple[Refdata | None, dict[tuple[str, float], float | None]] = (None, {})

    def _state(self, data: Refdata, symbol: str, now: float) -> MarketState | None:
        second = (int(now), data)
        if second[0] != self._second[0] or second[1] is not self._second[1]:
            self._second, self._states = second, {}
        if symbol not in self._states:
            ref = data.symbol(symbol)
            self._states[symbol] = market_state(
                ref.market_hours if ref is not None else None, float(int(now))
            )
        return self._states[symbol]

    def _cap(self, data: Refdata, symbol: str, leverage: float) -> float | None:
        """``max_notional`` of the level of ``leverage`` (None when unknown), kept per
        reference data: a handful of levels per symbol, read for every position row."""
        if self._caps[0] is not data:
            self._caps = (data, {})
        caps = self._caps[1]
        found = caps.get((symbol, leverage), _UNSEEN)
        if found is _UNSEEN:
            found = next(
                (
                    lv.max_notional
                    for lv in data.levels.get(symbol, ())
                    if abs(lv.leverage - leverage) < 1e-9
                ),
                None,
            )
            caps[(symbol, leverage)] = found
        return found  # type: ignore[return-value]

    def key(self, symbol: str, now: float) -> object:
        """What the figures of ``symbol`` at ``now`` depend on besides leverage and
        notional: the reference data (by identity) and the symbol's market state."""
        data = self._current()
        if self._token[0] is not data:
            self._token = (data, object())
        return (self._token[1], self._state(data, symbol, now))

    def __call__(
        self, symbol: str, leverage: float, notional: float, now: float
    ) -> Mapping[str, float | None]:
        """The four market figures of one position (see the module docstring)."""
        data = self._current()
        state = self._state(data, symbol, now)
        cap = self._cap(data, symbol, leverage)
        limit = cap * state.close_factor if cap is not None and state is not None else None
        return {
            "market_open": None if state is None else (1.0 if state.open else 0.0),
            "seconds_to_market_close": None if state is None else round(state.seconds_to_close),
            "position_limit_at_close": limit,
            "position_limit_headroom_at_close": None if limit is None else limit - notional,
        }
