"""Derived risk figures: what rules, metrics and the API read about an account.

``compute(snapshot, now, pnl_baseline=None) -> Figures`` is pure and cheap: the account
sums are kept incrementally by ``state/account.py``, so the account figures cost O(1), and
a position row (a few dozen float operations) is built only when something reads it.

Units: money in USD, quantities in base units, prices in USD per base unit, ratios and
rates as fractions (0.8 = 80 %), times in seconds. Every value is a ``float`` or ``None``
(counts too, so that rules compute with one type). ``None`` means "not known" and is
never exported as a metric.

Account scope (``Figures.account``); "the balance" is the last accepted balance pulse;
Σ runs over the account's positions:

``deposit``, ``available_balance``, ``realised_pnl``, ``net_funding``, ``order_margin``, ``fees``
    the balance's figures as reported (docs/design.md#precise-points:
    ``available_balance`` is taken as
    the exchange reports it). ``fees`` is None when the frame does not carry it
    (docs/protocol.md §5.2). All None before the first balance pulse.
``unrealised_pnl``
    the balance's ``unrealised_pnl`` plus the change, since that balance pulse, of
    Σ per-symbol unrealised PnL, where a symbol's unrealised PnL is its last pulse's
    figure while its mark is the pulse's own, and ``position × (mark − average_price)``
    once a newer market-data mark arrives. At a balance pulse it equals the exchange's.
``equity``
    ``deposit + realised_pnl + unrealised_pnl + net_funding − fees + referral_rewards``
    (docs/design.md#precise-points, docs/protocol.md §6; absent fee fields count 0).
``reported_equity``
    the same sum over the balance's own figures (no mark adjustment).
``equity_drift``
    at the most recent balance pulse: the ``equity`` riskwatch had computed just before
    it, minus ``reported_equity`` of that pulse. None until two balance pulses were seen.
``position_margin``
    the balance's ``position_margin`` plus the change, since that balance pulse, of
    Σ ``|position| × mark × initial_margin_rate``; floored at 0.
``margin_usage``
    ``(position_margin + order_margin) / equity`` (ratio).
``maintenance_usage``
    Σ ``|position| × mark × maintenance_margin_rate`` / ``equity``; 1.0 is liquidation.
``gross_notional``
    Σ ``|position| × mark``. Known without a balance (0.0 with no positions).
``net_notional``
    Σ ``position × mark`` (signed: longs minus shorts).
``account_leverage``
    ``gross_notional / equity``.
``open_orders``
    Σ over symbols of the open-order count: the symbol's last pulse's ``open_orders``
    plus the net change seen in order events since that pulse, floored at 0 (a
    ``get_user_orders`` reply resets the count to its listing).
``positions``
    count of non-flat positions.
``pnl_today``
    ``equity − pnl_baseline``; None without a baseline or without a balance. The
    baseline (equity at the daily reset) is kept by the caller, who owns the calendar.
``data_age``
    ``now − last_pulse_at``, floored at 0 (seconds since the last accepted position or
    balance frame); None before any pulse.

Ratios with a non-positive denominator: ``margin_usage``, ``maintenance_usage``,
``account_leverage`` and ``effective_leverage`` are ``+inf`` when ``equity <= 0`` and the
numerator is positive (an account with no equity and a requirement is past
liquidation), and 0.0 when the numerator is 0. All are None before the first balance.

Position scope (``Figures.positions[symbol]``), for every symbol with a position pulse
(QFEX pulses flat symbols that have a leverage record) and every symbol with open orders
known from order events; the rule engine decides which rows a rule looks at:

``position``
    signed size, base units (0.0 for a symbol known only from orders).
``average_price``
    the pulse's average entry price; None when flat (QFEX sends 0.0 there).
``mark_price``
    the latest accepted mark (pulse-implied or market data); None if never marked.
``notional``
    ``|position| × mark`` (0.0 when flat, whatever the mark).
``unrealised_pnl``
    as above for one symbol (0.0 when flat).
``leverage``
    the symbol's leverage setting from its pulse; None without a pulse.
``effective_leverage``
    ``notional / equity``; None before the first balance.
``initial_margin``, ``maintenance_margin``
    USD requirements: ``|position| × mark × rate`` with the pulse's rates; 0.0 when flat,
    None without a pulse.
``margin_alloc``
    the pulse's ``margin_alloc`` (undocumented by QFEX, docs/protocol.md §5.1); None without.
``open_orders``
    the symbol's open-order count (see the account figure).
``open_quantity``
    the pulse's ``open_quantity``; None without a pulse.
``liquidation_distance``
    the relative move ``x`` of this symbol's mark against the position (down for a long,
    up for a short) that brings ``maintenance_usage`` to 1.0, everything else fixed.
    With ``E`` = equity, ``M`` = Σ maintenance requirement, ``N`` = notional, ``r`` = the
    symbol's maintenance rate and ``d`` = +1 long / −1 short, the move changes equity by
    ``−N·x`` and the requirement by ``−d·N·r·x``; solving ``M − d·N·r·x = E − N·x``
    gives ``x = (E − M) / (N·(1 − d·r))``. 0.0 when already at or past liquidation
    (``E <= M``); ``+inf`` when no move gets there (``1 − d·r <= 0``, or a long whose
    mark would have to reach 0); None when flat or before the first balance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, NamedTuple, Protocol

from riskwatch.state.account import (
    AccountSnapshot,
    PositionState,
    estimated_equity,
    open_order_count,
)

_INF: Final = float("inf")

Row = dict[str, float | None]
"""One position row: name → value for every name in :data:`POSITION_NAMES`."""


class Figures(NamedTuple):
    """The derived figures of one account at one time (see the module docstring).

    ``account``: name → value for every name in :data:`ACCOUNT_NAMES`.
    ``positions``: symbol → :data:`Row`, read-only. :func:`compute` returns a
    :class:`PositionRows`, which builds a row on first access (a rule that reads one
    symbol pays for one row, not twenty); any mapping will do for a hand-built Figures.
    ``exchange_confirmed``: True when no non-flat position is marked by market data newer
    than its pulse, i.e. every figure rests on the exchange's own numbers (docs/rules.md,
    "Actions": actions act on the exchange's own data). ``last_pulse_at``: the snapshot's, so that
    a reader can recompute ``data_age`` at its own ``now``.
    """

    account: dict[str, float | None]
    positions: Mapping[str, Row]
    exchange_confirmed: bool
    last_pulse_at: float | None


def ratio(numerator: float, equity: float) -> float:
    """``numerator / equity`` with the documented rule for ``equity <= 0``."""
    if equity > 0:
        return numerator / equity
    return _INF if numerator > 0 else 0.0


def liquidation_distance(
    equity: float, maintenance: float, notional: float, rate: float, long: bool
) -> float | None:
    """Relative adverse mark move that brings maintenance usage to 1.0 (module docstring).

    ``equity`` and ``maintenance`` are the account's (USD); ``notional`` (USD) and
    ``rate`` (maintenance rate) the symbol's. None for ``notional <= 0``.
    """
    if notional <= 0:
        return None
    gap = equity - maintenance
    if gap <= 0:
        return 0.0
    denom = notional * (1.0 - rate) if long else notional * (1.0 + rate)
    if denom <= 0:
        return _INF
    x = gap / denom
    if long and x >= 1.0:
        # The mark would have to fall to zero or below: no such move.
        return _INF
    return x


class MarketFigures(Protocol):
    """The market figures of position rows, from reference data
    (:class:`riskwatch.refdata.figures.MarketFiguresOf`; docs/protocol.md §10, §11)."""

    def __call__(
        self, symbol: str, leverage: float, notional: float, now: float
    ) -> Mapping[str, float | None]:
        """``market_open``, ``seconds_to_market_close``, ``position_limit_at_close`` and
        ``position_limit_headroom_at_close`` of a position in ``symbol``."""

    def key(self, symbol: str, now: float) -> object:
        """What the figures of ``symbol`` at ``now`` depend on besides the position's
        leverage and notional: equal keys (with equal leverage and notional) mean equal
        figures."""


_NO_MARKET: Final[Mapping[str, float | None]] = {
    "market_open": None,
    "seconds_to_market_close": None,
    "position_limit_at_close": None,
    "position_limit_headroom_at_close": None,
}


class PositionRows(Mapping[str, Row]):
    """The position rows of one :class:`Figures`: a lazy, read-only mapping symbol → row.

    Rows are built on first access and kept; the mapping never changes otherwise. Its
    symbols are those of the snapshot's position pulses plus those with open orders
    known only from order events.
    """

    __slots__ = (
        "_equity",
        "_inputs",
        "_maintenance",
        "_market",
        "_now",
        "_rows",
        "_snapshot",
        "_symbols",
    )

    def __init__(
        self,
        snapshot: AccountSnapshot,
        equity: float | None,
        market: MarketFigures | None = None,
        now: float = 0.0,
    ) -> None:
        self._snapshot = snapshot
        self._market = market
        self._now = now
        self._equity = equity
        self._maintenance = snapshot.totals.maintenance_margin
        self._rows: dict[str, Row] = {}
        # Each symbol's state_inputs, built once: the rule engine's skip and the scrape's
        # kept lines compare (and keep) the same tuple.
        self._inputs: dict[str, tuple[object, ...]] = {}
        self._symbols: tuple[str, ...] | None = None

    def _keys(self) -> tuple[str, ...]:
        symbols = self._symbols
        if symbols is None:
            snap = self._snapshot
            positions = snap.positions
            extra = [
                sym
                for sym in snap.order_delta
                if sym not in positions and open_order_count(snap, sym) > 0
            ]
            symbols = (*positions, *extra) if extra else tuple(positions)
            self._symbols = symbols
        return symbols

    @property
    def shared_inputs(self) -> tuple[float | None, float]:
        """What every row depends on besides its own inputs: equity and the account's
        maintenance requirement."""
        return (self._equity, self._maintenance)

    def inputs(self, symbol: str) -> tuple[object, ...]:
        """Everything the row of ``symbol`` is computed from besides
        :attr:`shared_inputs`: two equal answers (with equal shared inputs) mean equal
        rows, without building them (the rule engine skips such a symbol)."""
        core = self.state_inputs(symbol)
        if self._market is None or symbol not in self._snapshot.positions:
            return core
        # Time-dependent: what the market figures are computed from is part of the inputs.
        return (core, self._market.key(symbol, self._now))

    def state_inputs(self, symbol: str) -> tuple[object, ...]:
        """What the row's figures other than the market figures (``market_open``,
        ``seconds_to_market_close``, ``position_limit_*``) are computed from, besides
        :attr:`shared_inputs`: the key of what ``/metrics`` exports of the row. Built
        once per symbol (the mapping never changes)."""
        known = self._inputs.get(symbol)
        if known is not None:
            return known
        built = self._state_inputs(symbol)
        self._inputs[symbol] = built
        return built

    def _state_inputs(self, symbol: str) -> tuple[object, ...]:
        snap = self._snapshot
        st = snap.positions.get(symbol)
        mark = snap.marks.get(symbol)
        price = mark.price if mark is not None else None
        delta = snap.order_delta.get(symbol)
        if st is None:
            return (None, price, delta)
        return self._core_inputs(st, price, delta)

    @staticmethod
    def _core_inputs(
        st: PositionState, price: float | None, delta: int | None
    ) -> tuple[object, ...]:
        p = st.pulse
        return (
            p.position,
            p.average_price,
            p.leverage,
            p.margin_alloc,
            p.open_orders,
            p.open_quantity,
            p.maintenance_margin_rate,
            st.notional,
            st.unrealised_pnl,
            st.initial_margin,
            st.maintenance_margin,
            price,
            delta,
        )

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __getitem__(self, symbol: str) -> Row:
        row = self._rows.get(symbol)
        if row is None:
            row = self._build(symbol)
            self._rows[symbol] = row
        return row

    def __repr__(self) -> str:
        return f"PositionRows({dict(self)!r})"

    def _build(self, symbol: str) -> Row:
        snap = self._snapshot
        equity = self._equity
        mark = snap.marks.get(symbol)
        mark_price = mark.price if mark is not None else None
        st = snap.positions.get(symbol)
        if st is None:
            count = open_order_count(snap, symbol)
            if count <= 0:
                raise KeyError(symbol)
            return {
                "position": 0.0,
                "average_price": None,
                "mark_price": mark_price,
                "notional": 0.0,
                "unrealised_pnl": 0.0,
                "leverage": None,
                "effective_leverage": None if equity is None else 0.0,
                "initial_margin": None,
                "maintenance_margin": None,
                "margin_alloc": None,
                "open_orders": float(count),
                "open_quantity": None,
                "liquidation_distance": None,
                **_NO_MARKET,
            }
        pulse = st.pulse
        qty = pulse.position
        notional = st.notional
        if equity is None:
            eff: float | None = None
            liq: float | None = None
        else:
            eff = ratio(notional, equity)
            liq = liquidation_distance(
                equity, self._maintenance, notional, pulse.maintenance_margin_rate, qty > 0
            )
        return {
            "position": qty,
            "average_price": pulse.average_price if qty != 0 else None,
            "mark_price": mark_price,
            "notional": notional,
            "unrealised_pnl": st.unrealised_pnl,
            "leverage": pulse.leverage,
            "effective_leverage": eff,
            "initial_margin": st.initial_margin,
            "maintenance_margin": st.maintenance_margin,
            "margin_alloc": pulse.margin_alloc,
            "open_orders": float(open_order_count(snap, symbol)),
            "open_quantity": pulse.open_quantity,
            "liquidation_distance": liq,
            **self._market_of(symbol),
        }

    def _market_of(self, symbol: str) -> Mapping[str, float | None]:
        """The row's market figures (all None without a market provider or a pulse)."""
        st = self._snapshot.positions.get(symbol)
        if self._market is None or st is None:
            return _NO_MARKET
        return self._market(symbol, st.pulse.leverage, st.notional, self._now)


def compute(
    snapshot: AccountSnapshot,
    now: float,
    pnl_baseline: float | None = None,
    market: MarketFigures | None = None,
) -> Figures:
    """Return the :class:`Figures` of ``snapshot`` at ``now`` (Unix seconds).

    ``pnl_baseline`` is the equity (USD) at the last daily reset, or None if unknown.
    ``market`` gives the market figures of the position rows (None: they are None).
    Cost: O(1) plus O(symbols with order events since their pulse); position rows are
    built when read.
    """
    t = snapshot.totals
    bal = snapshot.balance
    gross = t.gross_notional
    equity = estimated_equity(snapshot)
    last = snapshot.last_pulse_at
    data_age = None if last is None else max(0.0, now - last)
    open_orders = t.open_orders
    delta = snapshot.order_delta
    if delta:
        positions = snapshot.positions
        for sym, d in delta.items():
            st = positions.get(sym)
            base = int(st.pulse.open_orders) if st is not None else 0
            # Replace the symbol's pulse count by its floored, event-adjusted count.
            open_orders += max(0, base + d) - base

    account: dict[str, float | None]
    if bal is None or equity is None:
        account = {
            "equity": None,
            "deposit": None,
            "available_balance": None,
            "realised_pnl": None,
            "unrealised_pnl": None,
            "net_funding": None,
            "fees": None,
            "order_margin": None,
            "position_margin": None,
            "margin_usage": None,
            "maintenance_usage": None,
            "gross_notional": gross,
            "net_notional": t.net_notional,
            "account_leverage": None,
            "open_orders": float(open_orders),
            "positions": float(t.positions),
            "pnl_today": None,
            "data_age": data_age,
            "equity_drift": snapshot.equity_drift,
            "reported_equity": None,
        }
    else:
        position_margin = max(
            0.0, bal.position_margin + t.initial_margin - snapshot.anchor_initial_margin
        )
        account = {
            "equity": equity,
            "deposit": bal.deposit,
            "available_balance": bal.available_balance,
            "realised_pnl": bal.realised_pnl,
            "unrealised_pnl": bal.unrealised_pnl
            + t.unrealised_pnl
            - snapshot.anchor_unrealised_pnl,
            "net_funding": bal.net_funding,
            "fees": bal.fees,
            "order_margin": bal.order_margin,
            "position_margin": position_margin,
            "margin_usage": ratio(position_margin + bal.order_margin, equity),
            "maintenance_usage": ratio(t.maintenance_margin, equity),
            "gross_notional": gross,
            "net_notional": t.net_notional,
            "account_leverage": ratio(gross, equity),
            "open_orders": float(open_orders),
            "positions": float(t.positions),
            "pnl_today": None if pnl_baseline is None else equity - pnl_baseline,
            "data_age": data_age,
            "equity_drift": snapshot.equity_drift,
            "reported_equity": bal.reported_equity,
        }
    rows = PositionRows(snapshot, equity, market, now)
    return Figures(account, rows, t.mds_marked == 0, last)
