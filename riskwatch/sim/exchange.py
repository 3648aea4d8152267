"""The simulated matching engine and account books (sans-I/O: frames in, frames out).

:class:`Exchange` owns one :class:`~riskwatch.sim.ledger.Ledger` per scenario account,
the shared marks, TWAPs and trades. ``handle(account, request, now)`` processes one
authenticated trade command and returns the frames it causes as :class:`Out` values,
in delivery order; ``set_mark`` and ``advance`` (scenario time) do the same for resting
orders, funding and TWAP slices. Nothing here awaits or reads a clock: ``now`` is Unix
seconds for timestamps, ``t`` scenario seconds.

Delivery (docs/protocol.md §4 and changelog 2025-09-25): ``order_response`` frames go to the
account's ``order_responses`` subscribers, ``fill_response`` frames to ``fills``
subscribers; query replies (``channel=None``) go to the requesting connection only.

Choices where QFEX is silent (docs/protocol.md §16 unknowns), made here and documented:

- ``close_position`` with no position: an ``order_response`` ``REJECTED`` (quantity 0).
- ``close_position`` fills at its own limit price, ``close_slippage`` (default 0.1 %)
  through the mark; ``fill_fraction`` < 1 fills that share and then, IOC-like, sends a
  partial ``FILLED`` (``quantity_remaining`` > 0) followed by a terminal ``CANCELLED``.
- ``set_user_leverage`` on a symbol with a position or open orders: ``err``
  ``InvalidParameter`` naming the symbol; success: ``ack``.
- ``cancel_all_orders`` cancels orders, not TWAPs; the ``ack`` comes after the
  ``CANCELLED`` frames, also when there was nothing to cancel.
- LIMIT orders that cross the mark fill at the mark; resting ones fill at their price
  when the mark reaches it. Fees (``taker_fee`` × notional) are netted into realised PnL.
- TWAP slices run at creation and every ``order_interval_secs`` of scenario time as
  MARKET IOC orders; the final ``twap_response`` (status ``COMPLETED``) goes to
  ``order_responses`` subscribers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskwatch.errors import RiskwatchError
from riskwatch.sim import frames
from riskwatch.sim.ledger import Ledger, Order, im_rate, mm_rate
from riskwatch.sim.scenario import PricePath, Scenario, SymbolSpec

ORDER_RESPONSES = "order_responses"
FILLS = "fills"
LEVERAGE_LEVELS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 25.0, 30.0, 50.0)
MIN_TWAP_INTERVAL = 30.0
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Out:
    """A frame for ``account``: to subscribers of ``channel``, or (None) to the requester."""

    account: str
    channel: str | None
    frame: dict[str, Any]


@dataclass(slots=True)
class Twap:
    """A running TWAP (docs/protocol.md §5.5 field set)."""

    twap_id: str
    client_twap_id: str | None
    symbol: str
    side: str
    total_quantity: float
    num_orders: int
    interval: float
    reduce_only: bool
    start: float  # scenario time of the first slice
    created_at: float  # Unix seconds
    updated_at: float
    slices_done: int = 0
    filled: float = 0.0
    cost: float = 0.0
    status: str = "ACTIVE"

    def payload(self, user_id: str) -> dict[str, Any]:
        """Return the ``twap_response`` body."""
        return {
            "twap_id": self.twap_id,
            "client_twap_id": self.client_twap_id,
            "user_id": user_id,
            "status": self.status,
            "symbol": self.symbol,
            "total_quantity": self.total_quantity,
            "filled_quantity": self.filled,
            "average_fill_price": self.cost / self.filled if self.filled else 0.0,
            "total_num_orders": self.num_orders,
            "order_interval_secs": int(self.interval),
            "reduce_only": self.reduce_only,
            "side": self.side,
            "updated_at": self.updated_at,
            "created_at": self.created_at,
        }


class InvalidParams(RiskwatchError):
    """A command's params are unusable; the simulator answers ``err`` ``InvalidParameter``.

    Raised and caught inside the simulated exchange; it never leaves it.
    """


def _is_lot_multiple(qty: float, lot: float) -> bool:
    """Whether ``qty`` is a whole number of lots (docs/protocol.md §11 ``lot_size``)."""
    if lot <= 0:
        return True
    lots = qty / lot
    return abs(lots - round(lots)) < 1e-6


def _num(params: dict[str, Any], key: str, default: float | None = None) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{key} must be a number, got {value!r}"
        raise InvalidParams(msg)
    return float(value)


def _str(params: dict[str, Any], key: str, default: str | None = None) -> str:
    value = params.get(key, default)
    if not isinstance(value, str):
        msg = f"{key} must be a string, got {value!r}"
        raise InvalidParams(msg)
    return value


@dataclass
class Exchange:
    """Books and matching for every account of a scenario. See the module docstring."""

    scenario: Scenario
    seed: int = 0
    fill_fraction: float = 1.0
    close_slippage: float = 0.001
    ledgers: dict[str, Ledger] = field(init=False)
    twaps: dict[str, dict[str, Twap]] = field(init=False)
    trades: dict[str, list[dict[str, Any]]] = field(init=False)
    paths: dict[str, PricePath] = field(init=False)
    marks: dict[str, float] = field(init=False)
    _rng: random.Random = field(init=False)
    _next_funding: dict[str, float] = field(init=False)
    scenario_time: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.paths = {s.symbol: PricePath(s) for s in self.scenario.symbols}
        self.marks = {s.symbol: s.mark for s in self.scenario.symbols}
        self._next_funding = {
            s.symbol: s.funding.interval for s in self.scenario.symbols if s.funding
        }
        self.ledgers, self.twaps, self.trades = {}, {}, {}
        for acc in self.scenario.accounts:
            user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"riskwatch-sim/user/{acc.public_key}"))
            own = str(uuid.uuid5(uuid.NAMESPACE_URL, f"riskwatch-sim/account/{acc.name}"))
            ledger = Ledger(
                name=acc.name,
                deposit=acc.deposit,
                user_id=user_id,
                account_id=acc.account_id or own,
            )
            for spec in self.scenario.symbols:
                lev = acc.leverage.get(spec.symbol, spec.max_leverage)
                ledger.add_symbol(spec.symbol, spec.mark, lev)
            for pos in acc.positions:
                record = ledger.position(pos.symbol)
                record.qty, record.average_price = pos.qty, pos.avg if pos.qty else 0.0
                if pos.leverage is not None:
                    record.leverage = pos.leverage
            for o in acc.orders:
                order = Order(
                    order_id=self.new_id(),
                    symbol=o.symbol,
                    side=o.side,
                    quantity=o.qty,
                    price=o.price,
                    client_order_id=o.client_order_id,
                )
                ledger.orders[order.order_id] = order
            self.ledgers[acc.name] = ledger
            self.twaps[acc.name] = {}
            self.trades[acc.name] = []

    # -- identifiers and helpers --------------------------------------------------

    def new_id(self) -> str:
        """Return a fresh UUID4 string from the seeded generator (reproducible runs)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def spec(self, symbol: str) -> SymbolSpec:
        """Return the listed symbol's spec (KeyError naming it if unknown)."""
        return self.scenario.symbol(symbol)

    def _round(self, symbol: str, price: float) -> float:
        tick = self.spec(symbol).tick_size
        return round(round(price / tick) * tick, 10)

    def _order_out(self, account: str, order: Order) -> Out:
        return Out(account, ORDER_RESPONSES, {"order_response": order.payload(self._uid(account))})

    def _uid(self, account: str) -> str:
        return self.ledgers[account].user_id

    # -- marks, funding, TWAPs ------------------------------------------------------

    def path_price(self, symbol: str, t: float) -> float:
        """Return the scenario's mark of ``symbol`` at scenario time ``t`` (USD)."""
        return self.paths[symbol].price(t)

    def set_mark(self, symbol: str, price: float, now: float) -> list[Out]:
        """Move ``symbol``'s mark everywhere and fill resting orders the mark reached."""
        self.spec(symbol)
        self.marks[symbol] = price
        out: list[Out] = []
        for name, ledger in self.ledgers.items():
            ledger.set_mark(symbol, price)
            for order in list(ledger.open_orders(symbol)):
                reached = price <= order.price if order.side == "BUY" else price >= order.price
                if reached:
                    out += self._fill_resting(name, order, now)
        return out

    def _fill_resting(self, account: str, order: Order, now: float) -> list[Out]:
        ledger = self.ledgers[account]
        qty = order.quantity_remaining
        if order.reduce_only:
            qty = min(qty, self._reducible(ledger, order.symbol, order.side))
        out: list[Out] = []
        if qty > _EPS:
            out += self._execute(account, order, qty, order.price, now)
        del ledger.orders[order.order_id]
        if order.quantity_remaining > _EPS:
            order.status = "CANCELLED"
            order.update_time = now
            out.append(self._order_out(account, order))
        return out

    def advance(self, t: float, now: float) -> list[Out]:
        """Apply funding payments and TWAP slices due by scenario time ``t``."""
        self.scenario_time = t
        for symbol, due in list(self._next_funding.items()):
            funding = self.spec(symbol).funding
            assert funding is not None  # noqa: S101 - only symbols with funding are keyed
            while due <= t:
                for ledger in self.ledgers.values():
                    qty = ledger.position(symbol).qty
                    if qty:
                        # Longs pay a positive rate (docs/protocol.md §5.1: negative = paid).
                        ledger.apply_funding(symbol, -qty * self.marks[symbol] * funding.rate)
                due += funding.interval
            self._next_funding[symbol] = due
        out: list[Out] = []
        for account, twaps in self.twaps.items():
            for twap in list(twaps.values()):
                while (
                    twap.status == "ACTIVE" and twap.start + twap.slices_done * twap.interval <= t
                ):
                    out += self._twap_slice(account, twap, now)
        return out

    def _twap_slice(self, account: str, twap: Twap, now: float) -> list[Out]:
        ledger = self.ledgers[account]
        qty = twap.total_quantity / twap.num_orders
        if twap.reduce_only:
            qty = min(qty, self._reducible(ledger, twap.symbol, twap.side))
        twap.slices_done += 1
        twap.updated_at = now
        out: list[Out] = []
        if qty > _EPS:
            order = Order(
                order_id=self.new_id(),
                symbol=twap.symbol,
                side=twap.side,
                quantity=qty,
                price=self.marks[twap.symbol],
                order_type="MARKET",
                time_in_force="IOC",
                client_order_id=twap.client_twap_id or "",
                reduce_only=twap.reduce_only,
                update_time=now,
            )
            out.append(self._order_out(account, order))
            out += self._execute(account, order, qty, self.marks[twap.symbol], now)
            out.append(self._order_out(account, order))
            twap.filled += qty
            twap.cost += qty * self.marks[twap.symbol]
        if twap.slices_done >= twap.num_orders:
            twap.status = "COMPLETED"
            del self.twaps[account][twap.twap_id]
            out.append(
                Out(account, ORDER_RESPONSES, {"twap_response": twap.payload(ledger.user_id)})
            )
        return out

    # -- fills ---------------------------------------------------------------------

    @staticmethod
    def _reducible(ledger: Ledger, symbol: str, side: str) -> float:
        qty = ledger.position(symbol).qty
        if side == "SELL":
            return max(0.0, qty)
        return max(0.0, -qty)

    def _execute(
        self, account: str, order: Order, qty: float, price: float, now: float
    ) -> list[Out]:
        """Fill ``qty`` of ``order`` at ``price``; return its ``fill_response``."""
        ledger = self.ledgers[account]
        fee = qty * price * self.scenario.taker_fee
        result = ledger.apply_fill(order.symbol, order.side, qty, price, fee)
        order.quantity_remaining = max(0.0, order.quantity_remaining - qty)
        order.trade_id = self.new_id()
        order.status = "FILLED"
        order.update_time = now
        trade = {
            "trade_id": order.trade_id,
            "symbol": order.symbol,
            "price": price,
            "quantity": qty,
            "side": order.side,
            "order_id": order.order_id,
            "fee": fee,
            "order_type": order.order_type,
            "tif": order.time_in_force,
        }
        self.trades[account].append(trade)
        fill = {
            "trade_id": order.trade_id,
            "user_id": ledger.user_id,
            "symbol": order.symbol,
            "price": price,
            "quantity": qty,
            "side": order.side,
            "aggressor_side": order.side,
            "order_id": order.order_id,
            "fee": fee,
            "order_type": order.order_type,
            "tif": order.time_in_force,
            "order_price": order.price,
            "client_order_id": order.client_order_id,
            "remaining_quantity": order.quantity_remaining,
            "take_profit": 0.0,
            "stop_loss": 0.0,
            "execution_type": "NEW",
            "timestamp": now,
            "realised_pnl": result.realised_pnl,
        }
        return [Out(account, FILLS, {"fill_response": fill})]

    # -- commands ------------------------------------------------------------------

    def handle(self, account: str, request: dict[str, Any], now: float) -> list[Out]:
        """Process one authenticated trade command; unknown types get ``err``."""
        kind = request.get("type")
        params = request.get("params", {})
        handler = self._handlers().get(str(kind))
        if handler is None or not isinstance(params, dict):
            text = f"unknown command {kind!r}" if handler is None else "params must be an object"
            return [Out(account, None, frames.err("InvalidParameter", text, request))]
        try:
            return handler(account, params, request, now)
        except InvalidParams as exc:
            return [Out(account, None, frames.err("InvalidParameter", str(exc), request))]

    def _handlers(
        self,
    ) -> dict[str, Callable[[str, dict[str, Any], dict[str, Any], float], list[Out]]]:
        return {
            "add_order": self._add_order,
            "cancel_order": self._cancel_order,
            "modify_order": self._modify_order,
            "cancel_all_orders": self._cancel_all,
            "close_position": self._close_position,
            "get_user_orders": self._get_user_orders,
            "get_order": self._get_order,
            "get_user_trades": self._get_user_trades,
            "set_user_leverage": self._set_leverage,
            "get_user_leverage": self._get_leverage,
            "get_available_leverage_levels": self._get_levels,
            "add_twap": self._add_twap,
        }

    def _known_symbol(self, params: dict[str, Any]) -> str | None:
        symbol = params.get("symbol")
        if isinstance(symbol, str) and symbol in self.marks:
            return symbol
        return None

    def _add_order(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        side = _str(params, "side")
        if side not in ("BUY", "SELL"):
            msg = f"side must be BUY or SELL, got {side!r}"
            raise InvalidParams(msg)
        order_type = _str(params, "order_type", "LIMIT")
        tif = _str(params, "order_time_in_force", "GTC")
        qty = _num(params, "quantity")
        symbol_raw = params.get("symbol")
        price_raw = params.get("price")
        price = float(price_raw) if isinstance(price_raw, int | float) else 0.0
        client_id = params.get("client_order_id") or ""
        if not isinstance(client_id, str):
            msg = f"client_order_id must be a string, got {client_id!r}"
            raise InvalidParams(msg)
        order = Order(
            order_id=self.new_id(),
            symbol=str(symbol_raw),
            side=side,
            quantity=qty,
            price=price,
            order_type=order_type if order_type in ("LIMIT", "MARKET", "ALO") else "LIMIT",
            time_in_force=tif if tif in ("GTC", "IOC", "FOK") else "GTC",
            client_order_id=client_id,
            reduce_only=params.get("reduce_only") is True,
            update_time=now,
        )
        symbol = self._known_symbol(params)
        status = None
        if symbol is None:
            status = "BAD_SYMBOL"
        elif order_type not in ("LIMIT", "MARKET", "ALO"):
            status = "INVALID_ORDER_TYPE"
        elif tif not in ("GTC", "IOC", "FOK") or (order_type == "MARKET" and tif == "GTC"):
            status = "INVALID_TIME_IN_FORCE"
        elif qty < self.spec(symbol).min_quantity - 1e-12:
            status = "QUANTITY_LESS_THAN_MIN_QUANTITY"
        elif not _is_lot_multiple(qty, self.spec(symbol).lot_size):
            status = "INVALID_TICK_SIZE_PRECISION_QUANTITY"
        elif order_type != "MARKET" and price <= 0:
            status = "PRICE_LESS_THAN_MIN_PRICE"
        if status is not None or symbol is None:
            order.status = status or "REJECTED"
            return [self._order_out(account, order)]
        mark = self.marks[symbol]
        if order_type == "MARKET":
            order.price = mark
        crosses = order.order_type == "MARKET" or (
            price >= mark if side == "BUY" else price <= mark
        )
        if order.reduce_only:
            reducible = self._reducible(ledger, symbol, side)
            if reducible <= _EPS:
                order.status = "REJECTED"
                return [self._order_out(account, order)]
        else:
            increasing = self._reducible(ledger, symbol, side) <= _EPS
            need = qty * (mark if crosses else price) * im_rate(ledger.position(symbol).leverage)
            if increasing and need > ledger.figures().available_balance:
                order.status = "FAILED_MARGIN_CHECK"
                return [self._order_out(account, order)]
        if order_type == "ALO" and crosses:
            order.status = "REJECTED"  # post-only would take liquidity
            return [self._order_out(account, order)]
        out = [self._order_out(account, order)]
        if crosses:
            fill_qty = qty
            if order.reduce_only:
                fill_qty = min(qty, self._reducible(ledger, symbol, side))
            out += self._execute(account, order, fill_qty, mark, now)
            out.append(self._order_out(account, order))
            if order.quantity_remaining > _EPS:
                order.status = "CANCELLED"
                out.append(self._order_out(account, order))
            return out
        if tif in ("IOC", "FOK"):
            order.status = "CANCELLED"
            out.append(self._order_out(account, order))
            return out
        ledger.orders[order.order_id] = order
        return out

    def _close_position(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        symbol = self._known_symbol(params)
        client_id = params.get("client_order_id") or ""
        if not isinstance(client_id, str):
            msg = f"client_order_id must be a string, got {client_id!r}"
            raise InvalidParams(msg)
        qty = ledger.position(symbol).qty if symbol else 0.0
        mark = self.marks.get(symbol or "", 0.0)
        side = "SELL" if qty > 0 else "BUY"
        # Pegged near the mark, through it, so the IOC is marketable (docs/protocol.md §7).
        slip = -self.close_slippage if side == "SELL" else self.close_slippage
        order = Order(
            order_id=self.new_id(),
            symbol=str(params.get("symbol")),
            side=side,
            quantity=abs(qty),
            price=self._round(symbol, mark * (1 + slip)) if symbol else 0.0,
            order_type="LIMIT",
            time_in_force="IOC",
            client_order_id=client_id,
            reduce_only=True,
            update_time=now,
        )
        if symbol is None or abs(qty) <= _EPS:
            order.status = "BAD_SYMBOL" if symbol is None else "REJECTED"
            return [self._order_out(account, order)]
        out = [self._order_out(account, order)]
        filled = round(abs(qty) * max(0.0, min(1.0, self.fill_fraction)), 9)
        if filled > _EPS:
            out += self._execute(account, order, filled, order.price, now)
            out.append(self._order_out(account, order))
        if order.quantity_remaining > _EPS:
            order.status = "CANCELLED"
            order.update_time = now
            out.append(self._order_out(account, order))
        return out

    def _cancel_all(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        out = self.cancel_orders(account, now)
        out.append(Out(account, None, frames.ack(request)))
        return out

    def cancel_orders(self, account: str, now: float) -> list[Out]:
        """Cancel every open order of ``account``; one ``CANCELLED`` frame each."""
        ledger = self.ledgers[account]
        out = []
        for order in list(ledger.orders.values()):
            del ledger.orders[order.order_id]
            order.status = "CANCELLED"
            order.update_time = now
            out.append(self._order_out(account, order))
        return out

    def _cancel_order(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        ident = _str(params, "order_id")
        id_type = _str(params, "cancel_order_id_type", "order_id")
        symbol = params.get("symbol")
        if id_type in ("twap_id", "client_twap_id"):
            twaps = self.twaps[account]
            twap_hits = [
                t
                for t in twaps.values()
                if (t.twap_id if id_type == "twap_id" else t.client_twap_id) == ident
            ]
            out = []
            for twap in twap_hits:
                twap.status = "CANCELLED"
                twap.updated_at = now
                del twaps[twap.twap_id]
                out.append(Out(account, None, {"twap_response": twap.payload(ledger.user_id)}))
            return out or [
                Out(account, None, frames.err("InvalidParameter", f"no twap {ident!r}", request))
            ]
        if id_type not in ("order_id", "client_order_id"):
            msg = f"unknown cancel_order_id_type {id_type!r}"
            raise InvalidParams(msg)
        hits = [
            o
            for o in ledger.orders.values()
            if (o.order_id if id_type == "order_id" else o.client_order_id) == ident
            and (symbol is None or o.symbol == symbol)
        ]
        if not hits:
            ghost = Order(
                order_id=ident if id_type == "order_id" else "",
                symbol=str(symbol),
                side="BUY",
                quantity=0.0,
                price=0.0,
                client_order_id=ident if id_type == "client_order_id" else "",
                status="NO_SUCH_ORDER",
                update_time=now,
            )
            return [self._order_out(account, ghost)]
        out = []
        for order in hits:
            del ledger.orders[order.order_id]
            order.status = "CANCELLED"
            order.update_time = now
            out.append(self._order_out(account, order))
        return out

    def _modify_order(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        order = ledger.orders.get(str(params.get("order_id")))
        if order is None or params.get("side", order.side) != order.side:
            ghost = Order(
                order_id=str(params.get("order_id")),
                symbol=str(params.get("symbol")),
                side=str(params.get("side", "BUY"))
                if params.get("side") in ("BUY", "SELL")
                else "BUY",
                quantity=0.0,
                price=0.0,
                status="CANNOT_MODIFY_NO_SUCH_ORDER",
                update_time=now,
            )
            return [self._order_out(account, ghost)]
        order.price = _num(params, "price", order.price)
        new_qty = _num(params, "quantity", order.quantity)
        order.quantity_remaining = max(0.0, order.quantity_remaining + new_qty - order.quantity)
        order.quantity = new_qty
        order.status = "MODIFIED"
        order.update_time = now
        return [self._order_out(account, order)]

    def _get_user_orders(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        symbol = params.get("symbol")
        limit = int(_num(params, "limit", 1000))
        offset = int(_num(params, "offset", 0))
        orders = [
            o.payload(ledger.user_id)
            for o in ledger.orders.values()
            if symbol is None or o.symbol == symbol
        ][offset : offset + limit]
        twaps = [
            t.payload(ledger.user_id)
            for t in self.twaps[account].values()
            if symbol is None or t.symbol == symbol
        ]
        return [Out(account, None, {"all_orders_response": {"orders": orders, "twaps": twaps}})]

    def _get_order(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        ident = _str(params, "order_id")
        for order in ledger.orders.values():
            if ident in (order.order_id, order.client_order_id):
                return [Out(account, None, {"order_response": order.payload(ledger.user_id)})]
        ghost = Order(
            order_id=ident,
            symbol=str(params.get("symbol")),
            side="BUY",
            quantity=0.0,
            price=0.0,
            status="NO_SUCH_ORDER",
            update_time=now,
        )
        return [Out(account, None, {"order_response": ghost.payload(ledger.user_id)})]

    def _get_user_trades(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        limit = int(_num(params, "limit", 1000))
        offset = int(_num(params, "offset", 0))
        trades = self.trades[account][offset : offset + limit]
        return [Out(account, None, {"user_trades_response": list(trades)})]

    def _set_leverage(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        symbol = self._known_symbol(params)
        leverage = _num(params, "leverage")
        if symbol is None:
            msg = f"unknown symbol {params.get('symbol')!r}"
            raise InvalidParams(msg)
        cap = self.spec(symbol).max_leverage
        if not 1.0 <= leverage <= cap:
            msg = f"leverage {leverage!r} outside 1..{cap:g} for {symbol}"
            raise InvalidParams(msg)
        # Leverage comes in discrete levels (get_available_leverage_levels, §7).
        if leverage not in LEVERAGE_LEVELS:
            levels = ", ".join(f"{x:g}" for x in LEVERAGE_LEVELS if x <= cap)
            msg = f"leverage {leverage:g} is not an available level for {symbol} ({levels})"
            raise InvalidParams(msg)
        # DOCS set_leverage: rejected while the symbol has a position or open orders.
        if abs(ledger.position(symbol).qty) > _EPS or ledger.open_orders(symbol):
            text = f"cannot change leverage of {symbol} with an open position or open orders"
            return [Out(account, None, frames.err("InvalidParameter", text, request))]
        ledger.set_leverage(symbol, leverage)
        return [Out(account, None, frames.ack(request))]

    def _leverage_entry(self, symbol: str, leverage: float, account: str) -> dict[str, Any]:
        return {
            "id": str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"riskwatch-sim/lev/{account}/{symbol}/{leverage}")
            ),
            "symbol": symbol,
            "initial_margin": im_rate(leverage),
            "maintenance_margin": mm_rate(leverage),
            # Higher leverage, lower cap (docs/protocol.md §7); the figures are illustrative.
            "max_notional": 10_000_000.0 / leverage,
            "leverage": f"{leverage:g}",
        }

    def _get_leverage(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        ledger = self.ledgers[account]
        items = [self._leverage_entry(s, p.leverage, account) for s, p in ledger.positions.items()]
        return [Out(account, None, {"user_leverage_response": items})]

    def _get_levels(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        items = [
            self._leverage_entry(spec.symbol, lev, account)
            for spec in self.scenario.symbols
            for lev in LEVERAGE_LEVELS
            if lev <= spec.max_leverage
        ]
        return [Out(account, None, {"available_leverage_levels_response": items})]

    def _add_twap(
        self, account: str, params: dict[str, Any], request: dict[str, Any], now: float
    ) -> list[Out]:
        # Validation per DOCS add_twap (docs/protocol.md §7).
        symbol = self._known_symbol(params)
        if symbol is None:
            msg = f"unknown symbol {params.get('symbol')!r}"
            raise InvalidParams(msg)
        side = _str(params, "side")
        if side not in ("BUY", "SELL"):
            msg = f"side must be BUY or SELL, got {side!r}"
            raise InvalidParams(msg)
        total = _num(params, "total_quantity")
        num = _num(params, "num_orders")
        interval = _num(params, "order_interval_secs")
        reduce_only = params.get("reduce_only")
        if not isinstance(reduce_only, bool):
            msg = f"reduce_only must be a boolean, got {reduce_only!r}"
            raise InvalidParams(msg)
        if num < 2 or num != int(num):
            msg = f"num_orders must be an integer >= 2, got {num!r}"
            raise InvalidParams(msg)
        if interval < MIN_TWAP_INTERVAL:
            msg = f"order_interval_secs must be >= 30, got {interval!r}"
            raise InvalidParams(msg)
        spec = self.spec(symbol)
        if total / num < spec.min_quantity - 1e-12:
            msg = f"total_quantity / num_orders below the minimum quantity: {total!r}"
            raise InvalidParams(msg)
        if not _is_lot_multiple(total, spec.lot_size):
            msg = f"total_quantity is not a multiple of the lot size {spec.lot_size:g}: {total!r}"
            raise InvalidParams(msg)
        client_twap_id = params.get("client_twap_id")
        if client_twap_id is not None and (
            not isinstance(client_twap_id, str) or len(client_twap_id) > 64
        ):
            msg = (
                f"client_twap_id must be a string of at most 64 characters, got {client_twap_id!r}"
            )
            raise InvalidParams(msg)
        twap = Twap(
            twap_id=self.new_id(),
            client_twap_id=client_twap_id,
            symbol=symbol,
            side=side,
            total_quantity=total,
            num_orders=int(num),
            interval=interval,
            reduce_only=reduce_only,
            start=self.scenario_time,
            created_at=now,
            updated_at=now,
        )
        self.twaps[account][twap.twap_id] = twap
        return [Out(account, None, {"twap_response": twap.payload(self._uid(account))})]
