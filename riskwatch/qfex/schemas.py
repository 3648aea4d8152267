"""Decode QFEX WebSocket frames into the domain events of :mod:`riskwatch.model`.

Two entry points, both pure and total (they never raise):

- :func:`decode_trade` for the trade gateway (``wss://trade.qfex.com``);
- :func:`decode_mds` for the market-data gateway (``wss://mds.qfex.com``).

Each takes the frame as ``str`` or ``bytes`` and ``now`` (Unix seconds, the time the
frame was read) and returns a list of events, usually one. A frame that cannot be
decoded (not JSON, not an object, non-UTF-8, truncated, over :data:`MAX_FRAME_CHARS`,
a known message with a missing required field or a wrong type) becomes one
:class:`~riskwatch.model.BadMessage`; a well-formed object of no known type becomes one
:class:`~riskwatch.model.UnknownMessage`.

Trade frames and the events they give (docs/protocol.md §3, both sides of each §16 conflict):

=========================================================  ==============================
frame                                                      events
=========================================================  ==============================
``{"position_response": {...}}``                           PositionUpdate
``{"type":…,"channel":"v4_positions","contents":[…]}``     one PositionUpdate per item
``{"balance_response": {...}}``                            BalanceUpdate
``{"type":…,"channel":"v4_balances","contents":[…]}``      one BalanceUpdate per item
``{"authenticated": bool}``                                Authenticated
``{"type":"auth","result":"success"|other}``               Authenticated (ok iff success)
``{"subscribed": ch}`` / ``{"unsubscribed": ch}``          Subscribed
``{"ack": {"incoming_message": {...}}}``                   Ack
``{"ack_response": true}``                                 Ack (incoming_message None)
``{"ack_response": false}``                                ErrorReply ``AckResponseFalse``
``{"err": {...}}`` / ``{"type":"error",...}``              ErrorReply
``{"order_response": {...}}``                              OrderUpdate
``{"fill_response": {...}}``                               Fill
``{"all_orders_response": {"orders": [...]}}``             OpenOrders (``twaps`` ignored)
``{"user_orders": [...], "count": n}``                     OpenOrders
``user_leverage_response``, ``available_leverage_levels_   OtherReply(name=key,
response``, ``user_trades_response``, ``user_trades``,     payload=value)
``twap_response``, ``stop_order_response``
=========================================================  ==============================

Numbers may arrive as JSON numbers or numeric strings (``"437.45"``, ``"nan"``);
``open_orders`` may be the float ``0.0`` and becomes an int. The non-JSON literals
``NaN``, ``Infinity`` and ``-Infinity`` (what Python's ``json.dumps`` writes) and
out-of-range numbers such as ``1e999`` or a 400-digit integer are accepted and pass
through as non-finite floats: judging plausibility is the state reducer's job, not
the decoder's.

Required fields (absent → BadMessage): position ``symbol, position, average_price,
unrealised_pnl, realised_pnl, leverage, initial_margin, maintenance_margin`` (``net_funding,
margin_alloc, open_orders, open_quantity`` default to 0); balance ``deposit,
realised_pnl, unrealised_pnl, net_funding, order_margin, position_margin,
available_balance``; order ``order_id, symbol, status, quantity, quantity_remaining``;
fill ``order_id, symbol, side, price, quantity``; err ``error_code``.

Legacy v4 margins (docs/protocol.md §16.3). In the ``v4_positions`` envelope
``initial_margin`` / ``maintenance_margin`` may be USD amounts rather than rates (the
only example has ``0``/``0`` at 20× leverage). :func:`v4_margin_rates` converts them:

1. both 0 and ``leverage > 0``: rates are ``1/leverage`` and ``(2/3)/leverage``, the
   relation every current example obeys (docs/protocol.md §6);
2. ``position != 0`` and either value ``> 1``: both are amounts; each is divided by the
   notional ``|position| × implied mark`` (``average_price + unrealised_pnl/position``);
   if that notional is not a positive finite number, rule 1's derivation is used when
   ``leverage > 0``, else the values pass through;
3. otherwise both are taken as rates already.

A rate can never exceed 1 (100 % margin), so values above 1 are surely amounts; an
amount at or below 1 USD on a tiny position is indistinguishable from a rate and is
read as one. ``position_response`` (the current form) is always rates and is passed
through unchanged.

MDS frames: ``mark_price`` → MarkPrice; ``market_stats`` → one MarkPrice per
``mark_prices`` item (none when the list is empty); a JSON array of frames and a
``{"contents": [...]}`` envelope (item type from the item, else the envelope's
``channel``, else its ``type``) are unpacked; every other typed frame (``bbo``,
``level2``, ``trade``, ``funding``, ``candle``, ...) → OtherReply(name=type,
payload=frame). Prices may be strings or numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import msgspec
from msgspec import UNSET, Struct

from riskwatch.model import (
    Ack,
    Authenticated,
    BadMessage,
    BalanceUpdate,
    ErrorReply,
    Event,
    Fill,
    MarkPrice,
    OpenOrders,
    OrderUpdate,
    OtherReply,
    PositionUpdate,
    Subscribed,
    UnknownMessage,
)

__all__ = [
    "MAX_FRAME_CHARS",
    "SAMPLE_CHARS",
    "decode_mds",
    "decode_trade",
    "v4_margin_rates",
]

MAX_FRAME_CHARS: Final = 4 * 1024 * 1024
"""Frames longer than this (characters or bytes) are rejected as BadMessage unread.

A 1000-order ``all_orders_response`` is about 0.4 MB; the limit leaves room while
keeping one hostile frame from costing seconds of decoding.
"""

SAMPLE_CHARS: Final = 200
"""Length of ``BadMessage.sample`` / ``UnknownMessage.sample`` (model.py contract)."""

_MAINTENANCE_OF_INITIAL: Final = 2.0 / 3.0  # MM rate = ⅔ × IM rate (docs/protocol.md §6)
_OTHER_REPLIES: Final = (
    "user_leverage_response",
    "available_leverage_levels_response",
    "user_trades_response",
    "user_trades",
    "twap_response",
    "stop_order_response",
)


# --- wire structs: QFEX's own field names (TRADE-AA schemas) -----------------------


class _Position(Struct, kw_only=True, frozen=True, gc=False):
    """TRADE-AA ``PositionPayload`` (and a ``v4_positions`` item)."""

    symbol: str
    position: float
    average_price: float
    unrealised_pnl: float
    realised_pnl: float
    leverage: float
    initial_margin: float
    maintenance_margin: float
    net_funding: float = 0.0
    margin_alloc: float = 0.0
    open_orders: int = 0
    open_quantity: float = 0.0


class _Balance(Struct, kw_only=True, frozen=True, gc=False):
    """TRADE-AA ``BalancePayload`` (and a ``v4_balances`` item)."""

    deposit: float
    realised_pnl: float
    unrealised_pnl: float
    net_funding: float
    order_margin: float
    position_margin: float
    available_balance: float
    fees: float | None = None
    referral_rewards: float | None = None


class _Order(Struct, kw_only=True, frozen=True, gc=False):
    """TRADE-AA ``OrderResponse`` (docs/protocol.md §5.3).

    ``quantity_remaining`` may be absent and ``price`` null (a MARKET order has no
    price); :func:`_order_event` says what riskwatch reads then.
    """

    order_id: str
    symbol: str
    status: str
    quantity: float
    quantity_remaining: float | None = None
    side: str = ""
    type: str = ""
    time_in_force: str = ""
    price: float | None = None
    client_order_id: str | None = None
    update_time: float | None = None


class _Fill(Struct, kw_only=True, frozen=True, gc=False):
    """TRADE-AA ``FillResponse`` (docs/protocol.md §5.4)."""

    order_id: str
    symbol: str
    side: str
    price: float
    quantity: float
    trade_id: str | None = None
    client_order_id: str | None = None
    remaining_quantity: float | None = None
    fee: float = 0.0
    realised_pnl: float = 0.0
    timestamp: float | None = None


class _Err(Struct, kw_only=True, frozen=True):
    """TRADE-AA ``ErrResponse`` (docs/protocol.md §9.1); also the flat legacy form's fields."""

    error_code: str
    message: str | None = None
    incoming_message: Any = None


class _AllOrders(Struct, kw_only=True, frozen=True, gc=False):
    """TRADE-AA ``AllOrdersResponse``; ``twaps`` is not needed by riskwatch."""

    orders: list[_Order] = []


class _TradeFrame(Struct, kw_only=True, frozen=True):
    """Every top-level key the trade gateway is known to send (docs/protocol.md §3, §16).

    Legacy fields that only matter when ``type`` says so are typed ``Any`` so that a
    new message reusing one of those names is still ``UnknownMessage``, not bad.
    """

    position_response: _Position | None = None
    balance_response: _Balance | None = None
    order_response: _Order | None = None
    fill_response: _Fill | None = None
    authenticated: bool | None = None
    subscribed: str | None = None
    unsubscribed: str | None = None
    ack: Any = UNSET
    ack_response: bool | None = None
    err: _Err | None = None
    all_orders_response: _AllOrders | None = None
    user_orders: list[_Order] | None = None
    user_leverage_response: Any = UNSET
    available_leverage_levels_response: Any = UNSET
    user_trades_response: Any = UNSET
    user_trades: Any = UNSET
    twap_response: Any = UNSET
    stop_order_response: Any = UNSET
    # Legacy forms keyed by "type" (docs/protocol.md §16.1, §16.2, §16.6, §16.12).
    type: Any = UNSET
    result: Any = UNSET
    channel: Any = UNSET
    contents: Any = UNSET


class _MarkItem(Struct, kw_only=True, frozen=True, gc=False):
    """MDS-AA ``MarkPricePayload``: price arrives as a string."""

    symbol: str
    price: float
    time: str | None = None


class _MarketStats(Struct, kw_only=True, frozen=True, gc=False):
    """The part of MDS ``market_stats`` riskwatch uses (docs/protocol.md §12)."""

    mark_prices: list[_MarkItem] = []


# Known keys whose struct default is None, so that a JSON null reads as "absent".
_NULLABLE_KNOWN: Final = frozenset(
    name
    for name, default in zip(
        _TradeFrame.__struct_fields__, _TradeFrame.__struct_defaults__, strict=True
    )
    if default is None
)
_TRADE_DECODER: Final = msgspec.json.Decoder(_TradeFrame, strict=False)
_ANY_DECODER: Final = msgspec.json.Decoder(strict=False)


# --- helpers ----------------------------------------------------------------------


def _sample(data: str | bytes) -> str:
    """First characters of a frame, printable whatever its encoding."""
    if isinstance(data, bytes):
        return data[:SAMPLE_CHARS].decode("utf-8", "replace")
    return data[:SAMPLE_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


def _bad(reason: str, data: str | bytes, now: float) -> list[Event]:
    return [BadMessage(reason=reason, sample=_sample(data), received_at=now)]


_INT64_LIMIT: Final = 2**63


def _parse_int(text: str) -> int | float:
    """An integer literal; one beyond 64 bits becomes a float (``inf`` if huge)."""
    value = int(text)
    return value if -_INT64_LIMIT <= value < _INT64_LIMIT else float(text)


def _loads_lenient(data: str | bytes) -> Any:
    """Decode JSON with the stdlib, which also reads NaN/Infinity and 1e999 (→ inf).

    Integer literals too large for msgspec become floats, so ``9…9`` (400 digits)
    passes through as ``inf`` like ``1e999``. Raises ValueError (including
    UnicodeDecodeError) or RecursionError on bad input.
    """
    return json.loads(data, parse_int=_parse_int)


def _decode_with_fallback(data: str | bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """msgspec first (fast); on failure the lenient stdlib decode plus ``convert``.

    Raises msgspec.ValidationError, ValueError or RecursionError when both fail; the
    first (msgspec) error is raised when the lenient path fails to parse the text too.
    """
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as first:
        try:
            obj = _loads_lenient(data)
        except (ValueError, RecursionError):
            raise first from None
        if decoder.type is Any:
            return obj
        return msgspec.convert(obj, decoder.type, strict=False)


def _first_key(data: str | bytes) -> str:
    """Name for an unknown object: its ``type`` string, else its first key, else ``""``."""
    try:
        obj = _loads_lenient(data)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(obj, dict):
        return ""
    kind = obj.get("type")
    if isinstance(kind, str):
        return kind
    return next(iter(obj), "")


def _position_event(p: _Position, now: float, *, v4: bool) -> PositionUpdate:
    im, mm = p.initial_margin, p.maintenance_margin
    if v4:
        im, mm = v4_margin_rates(
            im, mm, position=p.position, average_price=p.average_price,
            unrealised_pnl=p.unrealised_pnl, leverage=p.leverage,
        )  # fmt: skip
    return PositionUpdate(
        symbol=p.symbol,
        position=p.position,
        average_price=p.average_price,
        unrealised_pnl=p.unrealised_pnl,
        realised_pnl=p.realised_pnl,
        net_funding=p.net_funding,
        margin_alloc=p.margin_alloc,
        open_orders=p.open_orders,
        open_quantity=p.open_quantity,
        leverage=p.leverage,
        initial_margin_rate=im,
        maintenance_margin_rate=mm,
        received_at=now,
    )


def _balance_event(b: _Balance, now: float) -> BalanceUpdate:
    return BalanceUpdate(
        deposit=b.deposit,
        realised_pnl=b.realised_pnl,
        unrealised_pnl=b.unrealised_pnl,
        net_funding=b.net_funding,
        order_margin=b.order_margin,
        position_margin=b.position_margin,
        available_balance=b.available_balance,
        fees=b.fees,
        referral_rewards=b.referral_rewards,
        received_at=now,
    )


# Statuses of an order still working: without a remainder, nothing is known filled.
_WORKING_STATUSES: Final = frozenset({"ACK", "MODIFIED"})


def _order_event(o: _Order, now: float) -> OrderUpdate:
    """The event of one order. docs/protocol.md §5.3: an absent ``quantity_remaining``
    reads as the whole quantity while the order is working (``ACK``, ``MODIFIED``) and
    as 0 once it is final; a null ``price`` reads as 0 (no limit price)."""
    remaining = o.quantity_remaining
    if remaining is None:
        remaining = o.quantity if o.status in _WORKING_STATUSES else 0.0
    return OrderUpdate(
        order_id=o.order_id,
        client_order_id=o.client_order_id or "",
        symbol=o.symbol,
        status=o.status,
        side=o.side,
        order_type=o.type,
        time_in_force=o.time_in_force,
        quantity=o.quantity,
        quantity_remaining=remaining,
        price=o.price if o.price is not None else 0.0,
        update_time=o.update_time,
        received_at=now,
    )


def _fill_event(f: _Fill, now: float) -> Fill:
    return Fill(
        trade_id=f.trade_id or "",
        order_id=f.order_id,
        client_order_id=f.client_order_id or "",
        symbol=f.symbol,
        side=f.side,
        price=f.price,
        quantity=f.quantity,
        remaining_quantity=f.remaining_quantity,
        fee=f.fee,
        realised_pnl=f.realised_pnl,
        timestamp=f.timestamp,
        received_at=now,
    )


def _error_event(e: _Err, now: float) -> ErrorReply:
    incoming = e.incoming_message
    if incoming is not None and not isinstance(incoming, dict | str):
        # The schema says object or string; keep anything else readable rather than drop.
        incoming = msgspec.json.encode(incoming).decode("utf-8")
    return ErrorReply(
        error_code=e.error_code, message=e.message, incoming_message=incoming, received_at=now
    )


def v4_margin_rates(
    initial_margin: float,
    maintenance_margin: float,
    *,
    position: float,
    average_price: float,
    unrealised_pnl: float,
    leverage: float,
) -> tuple[float, float]:
    """Return ``(initial, maintenance)`` margin rates from a legacy ``v4_positions`` item.

    The three rules are in the module docstring (docs/protocol.md §16.3). Pure; never
    raises, non-finite inputs give non-finite or passed-through outputs.
    """
    lev_ok = leverage > 0 and math.isfinite(leverage)
    if initial_margin == 0 and maintenance_margin == 0:
        if lev_ok:
            return 1.0 / leverage, _MAINTENANCE_OF_INITIAL / leverage
        return initial_margin, maintenance_margin
    if position != 0 and (initial_margin > 1 or maintenance_margin > 1):
        mark = average_price + unrealised_pnl / position
        notional = abs(position) * mark
        if notional > 0 and math.isfinite(notional):
            return initial_margin / notional, maintenance_margin / notional
        if lev_ok:
            return 1.0 / leverage, _MAINTENANCE_OF_INITIAL / leverage
    return initial_margin, maintenance_margin


def _legacy_v4(frame: _TradeFrame, data: str | bytes, now: float) -> list[Event] | None:
    """Events of a ``v4_positions`` / ``v4_balances`` envelope; None if not one."""
    if frame.channel not in ("v4_positions", "v4_balances"):
        return None
    if not isinstance(frame.contents, list):
        return _bad(f"{frame.channel} envelope without a contents list", data, now)
    events: list[Event] = []
    if frame.channel == "v4_positions":
        items = msgspec.convert(frame.contents, list[_Position], strict=False)
        for p in items:
            events.append(_position_event(p, now, v4=True))
    else:
        for b in msgspec.convert(frame.contents, list[_Balance], strict=False):
            events.append(_balance_event(b, now))
    return events


def _legacy_typed(frame: _TradeFrame, data: str | bytes, now: float) -> list[Event] | None:
    """Events of the ``{"type": ...}`` legacy forms; None if the frame is none of them."""
    v4 = _legacy_v4(frame, data, now)
    if v4 is not None:
        return v4
    if frame.type == "auth":
        # docs/protocol.md §16.6: OLDDOCS {"type":"auth","result":"success"}.
        if not isinstance(frame.result, str):
            return _bad(f"legacy auth reply with result {frame.result!r}", data, now)
        ok = frame.result == "success"
        return [Authenticated(ok=ok, detail=frame.result, received_at=now)]
    if frame.type == "error":
        # docs/protocol.md §16.12: flat {"type":"error","error_code",...}.
        err = _decode_with_fallback(data, msgspec.json.Decoder(_Err, strict=False))
        return [_error_event(err, now)]
    return None


def _trade_events(frame: _TradeFrame, data: str | bytes, now: float) -> list[Event]:
    # Fast path first: the 1 s pulses are most of the traffic (docs/protocol.md §4.2).
    if frame.position_response is not None:
        events: list[Event] = [_position_event(frame.position_response, now, v4=False)]
    elif frame.balance_response is not None:
        events = [_balance_event(frame.balance_response, now)]
    else:
        events = []
    # Any other known key (a frame normally carries exactly one, docs/protocol.md §3).
    if frame.order_response is not None:
        events.append(_order_event(frame.order_response, now))
    if frame.fill_response is not None:
        events.append(_fill_event(frame.fill_response, now))
    if frame.authenticated is not None:
        events.append(Authenticated(ok=frame.authenticated, detail="", received_at=now))
    if frame.subscribed is not None:
        events.append(Subscribed(channel=frame.subscribed, subscribed=True, received_at=now))
    if frame.unsubscribed is not None:
        events.append(Subscribed(channel=frame.unsubscribed, subscribed=False, received_at=now))
    if frame.ack is not UNSET:
        body = frame.ack
        incoming = body.get("incoming_message") if isinstance(body, dict) else None
        events.append(
            Ack(incoming_message=incoming if isinstance(incoming, dict) else None, received_at=now)
        )
    if frame.ack_response is not None:
        # docs/protocol.md §16.7: DOCS show {"ack_response": true}; false is undocumented and
        # read as a refusal so that the pending command is resolved as failed.
        if frame.ack_response:
            events.append(Ack(incoming_message=None, received_at=now))
        else:
            events.append(
                ErrorReply(
                    error_code="AckResponseFalse",
                    message="ack_response false",
                    incoming_message=None,
                    received_at=now,
                )
            )
    if frame.err is not None:
        events.append(_error_event(frame.err, now))
    if frame.all_orders_response is not None:
        orders = tuple(_order_event(o, now) for o in frame.all_orders_response.orders)
        events.append(OpenOrders(orders=orders, received_at=now))
    if frame.user_orders is not None:
        orders = tuple(_order_event(o, now) for o in frame.user_orders)
        events.append(OpenOrders(orders=orders, received_at=now))
    for name in _OTHER_REPLIES:
        payload = getattr(frame, name)
        if payload is not UNSET:
            events.append(OtherReply(name=name, payload=payload, received_at=now))
    if events:
        return events
    if frame.type is not UNSET or frame.channel is not UNSET:
        legacy = _legacy_typed(frame, data, now)
        if legacy is not None:
            return legacy
    obj = _loads_lenient(data)
    nulled = [k for k in _NULLABLE_KNOWN if k in obj] if isinstance(obj, dict) else []
    if nulled:
        # {"position_response": null}: a known message without its body.
        return _bad(f"{nulled[0]} is null", data, now)
    return [UnknownMessage(key=_first_key(data), sample=_sample(data), received_at=now)]


def decode_trade(data: str | bytes, now: float) -> list[Event]:
    """Decode one trade-gateway frame into events; never raises (see module docstring).

    ``now`` is the receive time, Unix seconds; it becomes every event's ``received_at``.
    """
    if len(data) > MAX_FRAME_CHARS:
        return _bad(f"frame of {len(data)} characters exceeds {MAX_FRAME_CHARS}", data, now)
    try:
        frame = _decode_with_fallback(data, _TRADE_DECODER)
        return _trade_events(frame, data, now)
    except msgspec.ValidationError as exc:
        return _bad(f"invalid frame: {exc}", data, now)
    except (msgspec.DecodeError, ValueError) as exc:
        return _bad(f"undecodable frame: {exc}", data, now)
    except RecursionError:
        return _bad("undecodable frame: nested too deeply", data, now)
    except Exception as exc:
        return _bad(f"decoder failure: {type(exc).__name__}: {exc}", data, now)


# --- MDS --------------------------------------------------------------------------


def _mds_frame(obj: Any, data: str | bytes, now: float, out: list[Event], depth: int) -> None:
    """Append the events of one decoded MDS value (object, array or envelope) to out."""
    if depth > 2:
        out.extend(_bad("mds frames nested too deeply", data, now))
        return
    if isinstance(obj, list):
        for item in obj:
            _mds_frame(item, data, now, out, depth + 1)
        return
    if not isinstance(obj, dict):
        out.extend(_bad(f"mds frame is a {type(obj).__name__}, not an object", data, now))
        return
    kind = obj.get("type")
    contents = obj.get("contents")
    if contents is not None and "symbol" not in obj:
        # Envelope (CLI mds.go): items inherit the channel as their type.
        inherited = obj.get("channel") if isinstance(obj.get("channel"), str) else kind
        items = contents if isinstance(contents, list) else [contents]
        for item in items:
            if isinstance(item, dict) and "type" not in item and isinstance(inherited, str):
                item = {**item, "type": inherited.removeprefix("v4_")}
            _mds_frame(item, data, now, out, depth + 1)
        return
    if not isinstance(kind, str):
        out.append(UnknownMessage(key=next(iter(obj), ""), sample=_sample(data), received_at=now))
        return
    try:
        if kind == "mark_price":
            m = msgspec.convert(obj, _MarkItem, strict=False)
            out.append(
                MarkPrice(symbol=m.symbol, price=m.price, exchange_time=m.time, received_at=now)
            )
        elif kind == "market_stats":
            stats = msgspec.convert(obj, _MarketStats, strict=False)
            for m in stats.mark_prices:
                out.append(
                    MarkPrice(symbol=m.symbol, price=m.price, exchange_time=m.time, received_at=now)
                )
        else:
            out.append(OtherReply(name=kind, payload=obj, received_at=now))
    except msgspec.ValidationError as exc:
        out.extend(_bad(f"invalid {kind} frame: {exc}", data, now))


def decode_mds(data: str | bytes, now: float) -> list[Event]:
    """Decode one market-data frame into events; never raises (see module docstring).

    ``now`` is the receive time, Unix seconds; it becomes every event's ``received_at``.
    """
    if len(data) > MAX_FRAME_CHARS:
        return _bad(f"frame of {len(data)} characters exceeds {MAX_FRAME_CHARS}", data, now)
    try:
        obj = _decode_with_fallback(data, _ANY_DECODER)
        out: list[Event] = []
        _mds_frame(obj, data, now, out, 0)
        return out
    except (msgspec.DecodeError, ValueError) as exc:
        return _bad(f"undecodable frame: {exc}", data, now)
    except RecursionError:
        return _bad("undecodable frame: nested too deeply", data, now)
    except Exception as exc:
        return _bad(f"decoder failure: {type(exc).__name__}: {exc}", data, now)
