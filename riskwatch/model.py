"""Domain events: what the QFEX session turns wire frames into.

Every event is a frozen ``msgspec.Struct`` carrying ``received_at``: the wall-clock
time (Unix seconds, float) at which the frame that produced it was read from the
socket, as stamped by the caller of ``Session.receive_text(text, now)``. Pure code
downstream (state, rules, actions) uses that time and never reads a clock. A copy with
other values is ``msgspec.structs.replace(event, field=value)``.

Why structs rather than frozen dataclasses: the decoder builds one event per received
frame, twenty thousand a second at a thousand accounts, and a frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``: decoding a position frame
took 4.3 µs with them and takes 1.1 µs with structs (``bench/bench_decode.py``,
docs/performance.md). Events of scalar fields only are not tracked by the garbage
collector (``gc=False``): they cannot be part of a reference cycle.

Units: money is USD, quantities are base units, prices USD per base unit, rates are
fractions (0.05 = 5 %). Numbers are floats: QFEX sends JSON floats on the trade
gateway, and floats are what the rule evaluator computes with.

``kind`` is a class-level label used for ``riskwatch_messages_total{kind}``; its
values are exactly docs/metrics.md's list.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

EventKind = Literal[
    "position",
    "balance",
    "order",
    "fill",
    "mark_price",
    "ack",
    "error",
    "auth",
    "subscribed",
    "bad",
    "unknown",
]


class PositionUpdate(msgspec.Struct, frozen=True, gc=False):
    """One symbol of a position pulse (``position_response`` or a ``v4_positions`` item).

    ``position`` is signed (short < 0). ``initial_margin_rate`` and
    ``maintenance_margin_rate`` are fractions of notional (docs/protocol.md §5.1; the legacy
    envelope's amounts are converted by the decoder, see §16.3). ``mark_price`` is the
    mark implied by the frame (``average_price + unrealised_pnl / position``) when the
    position is not flat, else None.
    """

    kind: ClassVar[EventKind] = "position"
    symbol: str
    position: float
    average_price: float
    unrealised_pnl: float
    realised_pnl: float
    net_funding: float
    margin_alloc: float
    open_orders: int
    open_quantity: float
    leverage: float
    initial_margin_rate: float
    maintenance_margin_rate: float
    received_at: float

    @property
    def implied_mark(self) -> float | None:
        """The mark price this frame implies, or None for a flat position."""
        if self.position == 0:
            return None
        return self.average_price + self.unrealised_pnl / self.position


class BalanceUpdate(msgspec.Struct, frozen=True, gc=False):
    """The account's balance pulse (``balance_response`` or a ``v4_balances`` item).

    ``fees`` and ``referral_rewards`` are None when the frame does not carry them
    (the current examples never do; TRADE-AA lists them as optional).
    """

    kind: ClassVar[EventKind] = "balance"
    deposit: float
    realised_pnl: float
    unrealised_pnl: float
    net_funding: float
    order_margin: float
    position_margin: float
    available_balance: float
    fees: float | None
    referral_rewards: float | None
    received_at: float

    @property
    def cash_and_realised(self) -> float:
        """``deposit + realised_pnl + net_funding − fees + referral_rewards`` (USD).

        docs/protocol.md §6: the docs define Cash as deposits + net funding + referral
        rewards − fees, and Equity as Cash + realised + unrealised; a balance that
        reports ``fees`` or ``referral_rewards`` apart therefore has them outside
        ``realised_pnl``. Absent fields count 0 (then fees are inside realised PnL).
        """
        return (
            self.deposit
            + self.realised_pnl
            + self.net_funding
            - (self.fees or 0.0)
            + (self.referral_rewards or 0.0)
        )

    @property
    def reported_equity(self) -> float:
        """Equity as the exchange's own figures give it (docs/design.md#precise-points)."""
        return self.cash_and_realised + self.unrealised_pnl

    @property
    def available_drift(self) -> float:
        """``reported_equity − position_margin − order_margin − available_balance``:
        0 when riskwatch's equity formula (fees included) agrees with the exchange's
        available balance (docs/protocol.md §6 cross-check)."""
        return (
            self.reported_equity - self.position_margin - self.order_margin - self.available_balance
        )


class MarkPrice(msgspec.Struct, frozen=True, gc=False):
    """A mark price from the market-data gateway (``mark_price`` or ``market_stats``)."""

    kind: ClassVar[EventKind] = "mark_price"
    symbol: str
    price: float
    exchange_time: str | None
    received_at: float


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """An ``order_response`` (or one order of an orders listing).

    ``status`` is QFEX's string (docs/protocol.md §9.2), kept verbatim so that statuses we
    do not know yet still flow through. ``client_order_id`` is ``""`` when none was sent.
    """

    kind: ClassVar[EventKind] = "order"
    order_id: str
    client_order_id: str
    symbol: str
    status: str
    side: str
    order_type: str
    time_in_force: str
    quantity: float
    quantity_remaining: float
    price: float
    update_time: float | None
    received_at: float

    @property
    def filled_quantity(self) -> float:
        """Quantity filled so far (``quantity - quantity_remaining``)."""
        return self.quantity - self.quantity_remaining


class OpenOrders(msgspec.Struct, frozen=True):
    """The reply to ``get_user_orders`` (``all_orders_response`` or legacy ``user_orders``)."""

    kind: ClassVar[EventKind] = "order"
    orders: tuple[OrderUpdate, ...]
    received_at: float


class Fill(msgspec.Struct, frozen=True, gc=False):
    """A ``fill_response``: one execution of one of the account's orders."""

    kind: ClassVar[EventKind] = "fill"
    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    price: float
    quantity: float
    remaining_quantity: float | None
    fee: float
    realised_pnl: float
    timestamp: float | None
    received_at: float


class Authenticated(msgspec.Struct, frozen=True, gc=False):
    """The auth reply: ``{"authenticated": bool}`` or legacy ``{"type":"auth","result":…}``."""

    kind: ClassVar[EventKind] = "auth"
    ok: bool
    detail: str
    received_at: float


class Subscribed(msgspec.Struct, frozen=True, gc=False):
    """``{"subscribed": ch}`` / ``{"unsubscribed": ch}`` (``subscribed`` False for the latter)."""

    kind: ClassVar[EventKind] = "subscribed"
    channel: str
    subscribed: bool
    received_at: float


class Ack(msgspec.Struct, frozen=True):
    """``{"ack": {"incoming_message": …}}`` or ``{"ack_response": true}``.

    Both forms are documented: docs/protocol.md §16.7.
    """

    kind: ClassVar[EventKind] = "ack"
    incoming_message: dict[str, Any] | None
    received_at: float


class ErrorReply(msgspec.Struct, frozen=True):
    """``{"err": {…}}`` or the flat ``{"type": "error", …}`` form (docs/protocol.md §16.12)."""

    kind: ClassVar[EventKind] = "error"
    error_code: str
    message: str | None
    incoming_message: dict[str, Any] | str | None
    received_at: float


class BadMessage(msgspec.Struct, frozen=True, gc=False):
    """A frame that could not be decoded or failed validation: counted, logged, skipped.

    ``sample`` is the first bytes of the frame (at most 200 characters), for the log.
    """

    kind: ClassVar[EventKind] = "bad"
    reason: str
    sample: str
    received_at: float


class UnknownMessage(msgspec.Struct, frozen=True, gc=False):
    """A well-formed JSON object of no known type (a newer server message): counted, skipped."""

    kind: ClassVar[EventKind] = "unknown"
    key: str
    sample: str
    received_at: float


class OtherReply(msgspec.Struct, frozen=True):
    """A known reply to a command riskwatch rarely needs, kept whole for whoever asked.

    Covers ``user_leverage_response``, ``available_leverage_levels_response``,
    ``user_trades_response`` / ``user_trades``, ``twap_response`` and
    ``stop_order_response``. ``name`` is the top-level key; ``payload`` its decoded
    JSON value. Counted with kind ``ack`` (a reply to something we sent).
    """

    kind: ClassVar[EventKind] = "ack"
    name: str
    payload: Any
    received_at: float


Event = (
    PositionUpdate
    | BalanceUpdate
    | MarkPrice
    | OrderUpdate
    | OpenOrders
    | Fill
    | Authenticated
    | Subscribed
    | Ack
    | ErrorReply
    | BadMessage
    | UnknownMessage
    | OtherReply
)
"""Every event the QFEX session can produce."""
