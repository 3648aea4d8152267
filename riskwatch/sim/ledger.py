"""Account arithmetic of the simulated exchange (pure: no I/O, no clock).

One :class:`Ledger` per account: a deposit, positions per symbol, open orders and the
marks it was last told. Formulas (docs/protocol.md §5–§6), all money in USD:

- ``unrealised = qty × (mark − average_price)`` per symbol (qty signed, short < 0);
- IM rate = ``1 / leverage``, MM rate = ``(2/3) / leverage`` (every QFEX example);
- ``position_margin = Σ |qty| × mark × IM rate``;
- ``order_margin = Σ open-order remaining qty × order price × IM rate``;
- ``equity = deposit + realised + unrealised + net_funding``;
- ``available_balance = equity − position_margin − order_margin``.

Fees are netted into ``realised_pnl`` (docs/protocol.md §16 lists whether QFEX does so as
unknown; netting keeps the equity formula above exact for the payloads we send).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import Any

MM_FACTOR = 2.0 / 3.0
_EPS = 1e-12


def im_rate(leverage: float) -> float:
    """Return the initial-margin rate (fraction of notional) at ``leverage``."""
    return 1.0 / leverage


def mm_rate(leverage: float) -> float:
    """Return the maintenance-margin rate (fraction of notional) at ``leverage``."""
    return MM_FACTOR / leverage


@functools.cache
def _position_id(account: str, symbol: str) -> str:
    """The stable id of ``account``'s ``symbol`` position (a UUID5: the same at every pulse,
    as a position keeps its id; cached, since a pulse sends every position of every account)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"riskwatch-sim/{account}/{symbol}"))


@dataclass(slots=True)
class Order:
    """An order as the simulated engine keeps it; quantities in base units, prices USD."""

    order_id: str
    symbol: str
    side: str  # BUY | SELL
    quantity: float
    price: float
    order_type: str = "LIMIT"
    time_in_force: str = "GTC"
    client_order_id: str = ""
    quantity_remaining: float = -1.0
    reduce_only: bool = False
    status: str = "ACK"
    update_time: float = 0.0
    trade_id: str | None = None

    def __post_init__(self) -> None:
        if self.quantity_remaining < 0:
            self.quantity_remaining = self.quantity

    def payload(self, user_id: str) -> dict[str, Any]:
        """Return the ``order_response`` body (docs/protocol.md §5.3 field set)."""
        return {
            "order_id": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "quantity": self.quantity,
            "price": self.price,
            "take_profit": 0.0,
            "stop_loss": 0.0,
            "side": self.side,
            "type": self.order_type,
            "time_in_force": self.time_in_force,
            "user_id": user_id,
            "client_order_id": self.client_order_id,
            "quantity_remaining": self.quantity_remaining,
            "update_time": self.update_time,
            "trade_id": self.trade_id,
        }


@dataclass(slots=True)
class Position:
    """One symbol's position: signed qty, average entry, cumulative realised and funding."""

    symbol: str
    qty: float = 0.0
    average_price: float = 0.0
    realised_pnl: float = 0.0
    net_funding: float = 0.0
    leverage: float = 20.0


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did: realised PnL of the closed part (gross) and the fee (USD)."""

    realised_pnl: float
    fee: float


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """Every derived account figure, for tests to compare with what clients compute."""

    equity: float
    position_margin: float
    order_margin: float
    available_balance: float
    unrealised_pnl: float
    realised_pnl: float
    net_funding: float
    fees: float
    unrealised: dict[str, float]
    notional: dict[str, float]
    maintenance_requirement: float
    margin_usage: float
    maintenance_usage: float


@dataclass(slots=True)
class Ledger:
    """One account's books. Mutate through the methods; read through payloads/figures."""

    name: str
    deposit: float
    user_id: str
    account_id: str
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    fees: float = 0.0
    fees_apart: bool = False
    """Fees kept out of ``realised_pnl`` and reported in the balance's ``fees``
    (docs/protocol.md §5.2, §6: the docs' Cash subtracts fees as their own term)."""

    # -- setup -------------------------------------------------------------------

    def add_symbol(self, symbol: str, mark: float, leverage: float = 20.0) -> None:
        """Make ``symbol`` known (flat) at ``mark``; a known symbol keeps its position."""
        self.marks[symbol] = mark
        self.positions.setdefault(symbol, Position(symbol=symbol, leverage=leverage))

    def position(self, symbol: str) -> Position:
        """Return the position record of ``symbol``; raise KeyError naming it if unknown."""
        try:
            return self.positions[symbol]
        except KeyError:
            msg = f"unknown symbol {symbol!r}"
            raise KeyError(msg) from None

    def set_mark(self, symbol: str, price: float) -> None:
        """Move the mark of ``symbol`` (USD); unrealised PnL and margins follow."""
        self.position(symbol)
        if not price > 0:
            msg = f"mark must be positive, got {price!r}"
            raise ValueError(msg)
        self.marks[symbol] = price

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage of ``symbol``; the caller checks QFEX's preconditions."""
        if not leverage > 0:
            msg = f"leverage must be positive, got {leverage!r}"
            raise ValueError(msg)
        self.position(symbol).leverage = leverage

    # -- trading -----------------------------------------------------------------

    def apply_fill(
        self, symbol: str, side: str, qty: float, price: float, fee: float = 0.0
    ) -> FillResult:
        """Book a fill of ``qty`` (> 0) at ``price``: increase, reduce or flip the position.

        Increase: the average price becomes the quantity-weighted average. Reduce: the
        closed part realises ``closed × (price − avg)`` (sign of the old position);
        the average stays. Flip: the old position closes entirely and the rest opens at
        ``price``. ``fee`` (USD) is subtracted from the symbol's realised PnL, or kept
        apart in :attr:`fees` only when :attr:`fees_apart`.
        """
        if not qty > 0:
            msg = f"fill quantity must be positive, got {qty!r}"
            raise ValueError(msg)
        pos = self.position(symbol)
        signed = qty if side == "BUY" else -qty
        realised = 0.0
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            new_qty = pos.qty + signed
            pos.average_price = (abs(pos.qty) * pos.average_price + qty * price) / abs(new_qty)
            pos.qty = new_qty
        else:
            closed = min(abs(pos.qty), qty)
            direction = 1.0 if pos.qty > 0 else -1.0
            realised = closed * (price - pos.average_price) * direction
            new_qty = pos.qty + signed
            if abs(new_qty) < _EPS:
                pos.qty, pos.average_price = 0.0, 0.0
            elif (new_qty > 0) == (pos.qty > 0):
                pos.qty = new_qty
            else:
                pos.qty, pos.average_price = new_qty, price
        pos.realised_pnl += realised if self.fees_apart else realised - fee
        self.fees += fee
        return FillResult(realised_pnl=realised, fee=fee)

    def apply_funding(self, symbol: str, amount: float) -> None:
        """Add a funding payment (USD; negative = paid) to ``symbol`` and the account."""
        self.position(symbol).net_funding += amount

    # -- derived -----------------------------------------------------------------

    def unrealised(self, symbol: str) -> float:
        """Return ``qty × (mark − average_price)`` for ``symbol`` (USD)."""
        pos = self.position(symbol)
        return pos.qty * (self.marks[symbol] - pos.average_price) if pos.qty else 0.0

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders (all symbols, or one), oldest first."""
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    def _order_margin(self, symbol: str | None = None) -> float:
        return sum(
            o.quantity_remaining * o.price * im_rate(self.positions[o.symbol].leverage)
            for o in self.open_orders(symbol)
        )

    def figures(self) -> LedgerFigures:
        """Return every account figure at the current marks (see the module docstring)."""
        unreal = {s: self.unrealised(s) for s in self.positions}
        notional = {s: abs(p.qty) * self.marks[s] for s, p in self.positions.items()}
        position_margin = sum(notional[s] * im_rate(p.leverage) for s, p in self.positions.items())
        mm = sum(notional[s] * mm_rate(p.leverage) for s, p in self.positions.items())
        order_margin = self._order_margin()
        realised = sum(p.realised_pnl for p in self.positions.values())
        funding = sum(p.net_funding for p in self.positions.values())
        unrealised = sum(unreal.values())
        equity = self.deposit + realised + unrealised + funding
        if self.fees_apart:
            equity -= self.fees
        used = position_margin + order_margin
        return LedgerFigures(
            equity=equity,
            position_margin=position_margin,
            order_margin=order_margin,
            available_balance=equity - used,
            unrealised_pnl=unrealised,
            realised_pnl=realised,
            net_funding=funding,
            fees=self.fees,
            unrealised=unreal,
            notional=notional,
            maintenance_requirement=mm,
            margin_usage=used / equity if equity > 0 else float("inf"),
            maintenance_usage=mm / equity if equity > 0 else float("inf"),
        )

    def position_payload(self, symbol: str) -> dict[str, Any]:
        """Return the ``position_response`` body for ``symbol`` (docs/protocol.md §5.1 fields)."""
        pos = self.position(symbol)
        orders = self.open_orders(symbol)
        return {
            "id": _position_id(self.name, symbol),
            "symbol": symbol,
            "position": pos.qty,
            # margin_alloc is undocumented (docs/protocol.md §5.1); QFEX examples send 0.
            "margin_alloc": 0.0,
            "realised_pnl": pos.realised_pnl,
            "unrealised_pnl": self.unrealised(symbol),
            "net_funding": pos.net_funding,
            "open_orders": float(len(orders)),
            "open_quantity": sum(o.quantity_remaining for o in orders),
            "leverage": float(pos.leverage),
            "initial_margin": im_rate(pos.leverage),
            "maintenance_margin": mm_rate(pos.leverage),
            "average_price": pos.average_price,
        }

    def balance_payload(self) -> dict[str, Any]:
        """Return the ``balance_response`` body (docs/protocol.md §5.2 example field set)."""
        f = self.figures()
        return {
            "id": self.account_id,
            "user_id": self.user_id,
            "deposit": self.deposit,
            "realised_pnl": f.realised_pnl,
            "order_margin": f.order_margin,
            "position_margin": f.position_margin,
            "unrealised_pnl": f.unrealised_pnl,
            "net_funding": f.net_funding,
            "available_balance": f.available_balance,
            **({"fees": self.fees} if self.fees_apart else {}),
        }
