"""Builders for every frame riskwatch sends to QFEX: pure, returning compact JSON text.

Every trade-gateway command has the shape ``{"type": <command>, "params": {...}}``
(docs/protocol.md §3), even with empty params. Each builder validates its arguments and
raises ``ValueError`` naming the offending value (never a secret) when QFEX would
reject them or when the frame would not match TRADE-AA.

There is deliberately no ``cancel_on_disconnect`` builder: on QFEX its scope may be
every open order of the account, not only this connection's (docs/protocol.md §7, §16.10),
so a dropped riskwatch socket would cancel the trading bot's orders.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec

from riskwatch.qfex.auth import sign

__all__ = [
    "CANCEL_ID_TYPES",
    "MDS_CHANNELS",
    "MIN_TWAP_INTERVAL_SECS",
    "MIN_TWAP_ORDERS",
    "TRADE_CHANNELS",
    "add_twap",
    "auth_hmac",
    "auth_jwt",
    "cancel_all_orders",
    "cancel_order",
    "client_order_id",
    "close_position",
    "get_user_leverage",
    "get_user_orders",
    "mds_subscribe",
    "mds_unsubscribe",
    "set_user_leverage",
    "subscribe",
    "unsubscribe",
]

TRADE_CHANNELS: Final = frozenset(
    {"positions", "balances", "order_responses", "stop_orders", "fills"}
)
"""Trade-gateway channels (docs/protocol.md §4; TRADE-AA ``UnsubscribeCommand`` enum)."""

MDS_CHANNELS: Final = frozenset(
    {
        "level2",
        "trade",
        "candle",
        "bbo",
        "underlier",
        "mark_price",
        "funding",
        "open_interest",
        "minmax_price",
        "market_stats",
    }
)
"""Market-data channels (docs/protocol.md §12; MDS-AA)."""

CANCEL_ID_TYPES: Final = ("order_id", "client_order_id", "twap_id", "client_twap_id")
"""``cancel_order_id_type`` values; the id itself always goes in ``order_id`` (§7)."""

MIN_TWAP_ORDERS: Final = 2
MIN_TWAP_INTERVAL_SECS: Final = 30
"""add_twap validation limits (docs/protocol.md §7, DOCS add_twap)."""

MAX_NONCE_CHARS: Final = 100  # docs/protocol.md §2.1
MAX_CLIENT_ID_CHARS: Final = 36
"""Longest client id riskwatch produces or accepts: a UUID's length, the form every
QFEX example uses (the real limit is undocumented, docs/protocol.md §7 add_twap)."""

_CLIENT_ID_HASH_CHARS: Final = 20  # 80 bits: collisions are negligible per account

Side = Literal["BUY", "SELL"]

_encode = msgspec.json.Encoder().encode


def _frame(kind: str, params: dict[str, Any]) -> str:
    return _encode({"type": kind, "params": params}).decode("utf-8")


def _check_symbol(symbol: str) -> None:
    if not isinstance(symbol, str) or not symbol:
        msg = f"symbol must be a non-empty string, got {symbol!r}"
        raise ValueError(msg)


def _check_client_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID_CHARS:
        msg = f"{what} must be 1..{MAX_CLIENT_ID_CHARS} characters, got {value!r}"
        raise ValueError(msg)


def _check_positive(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{what} must be a number, got {value!r}"
        raise ValueError(msg)
    if not math.isfinite(value) or value <= 0:
        msg = f"{what} must be a positive finite number, got {value!r}"
        raise ValueError(msg)


def _check_count(value: int | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{what} must be a non-negative integer, got {value!r}"
        raise ValueError(msg)


# --- authentication (docs/protocol.md §2.1) ----------------------------------------------


def auth_hmac(
    public_key: str,
    secret_key: str,
    unix_ts: int,
    nonce: str,
    account_id: str | None = None,
) -> str:
    """The HMAC ``auth`` frame: signature = hex HMAC-SHA256(secret, ``nonce:unix_ts``).

    ``unix_ts`` is integer Unix seconds; ``nonce`` hex, at most 100 characters and
    never reused within 15 minutes (use :func:`riskwatch.qfex.auth.new_nonce`).
    ``account_id`` selects a subaccount. The returned text carries the signature,
    never the secret.
    """
    if not public_key:
        msg = "public_key must not be empty"
        raise ValueError(msg)
    if isinstance(unix_ts, bool) or not isinstance(unix_ts, int) or unix_ts < 0:
        msg = f"unix_ts must be non-negative integer seconds, got {unix_ts!r}"
        raise ValueError(msg)
    if not nonce or len(nonce) > MAX_NONCE_CHARS:
        msg = f"nonce must be 1..{MAX_NONCE_CHARS} characters, got {len(nonce)}"
        raise ValueError(msg)
    params: dict[str, Any] = {
        "hmac": {
            "public_key": public_key,
            "nonce": nonce,
            "unix_ts": unix_ts,
            "signature": sign(secret_key, nonce, unix_ts),
        }
    }
    if account_id is not None:
        params["account_id"] = account_id
    return _frame("auth", params)


def auth_jwt(jwt: str, account_id: str | None = None) -> str:
    """The JWT ``auth`` frame (docs/protocol.md §2.1); ``account_id`` selects a subaccount."""
    if not jwt:
        msg = "jwt must not be empty"
        raise ValueError(msg)
    params: dict[str, Any] = {"jwt": jwt}
    if account_id is not None:
        params["account_id"] = account_id
    return _frame("auth", params)


# --- subscriptions (docs/protocol.md §4, §12) ---------------------------------------
# One channel per frame: docs/design.md#precise-points.


def _check_trade_channel(channel: str) -> None:
    if channel not in TRADE_CHANNELS:
        msg = f"unknown trade channel {channel!r}; expected one of {sorted(TRADE_CHANNELS)}"
        raise ValueError(msg)


def subscribe(channel: str) -> str:
    """``{"type":"subscribe","params":{"channels":[channel]}}`` for one trade channel."""
    _check_trade_channel(channel)
    return _frame("subscribe", {"channels": [channel]})


def unsubscribe(channel: str) -> str:
    """``{"type":"unsubscribe","params":{"channels":[channel]}}`` for one trade channel."""
    _check_trade_channel(channel)
    return _frame("unsubscribe", {"channels": [channel]})


def _mds(kind: str, channel: str, symbols: Sequence[str]) -> str:
    if channel not in MDS_CHANNELS:
        msg = f"unknown market-data channel {channel!r}; expected one of {sorted(MDS_CHANNELS)}"
        raise ValueError(msg)
    if isinstance(symbols, str):
        msg = f"symbols must be a sequence of symbols, not the string {symbols!r}"
        raise ValueError(msg)
    listed = list(symbols)
    if not listed:
        msg = f"{kind} of {channel!r} needs at least one symbol"
        raise ValueError(msg)
    for symbol in listed:
        _check_symbol(symbol)
    # MDS commands are flat: no "params" (docs/protocol.md §12, MDS-AA).
    return _encode({"type": kind, "channels": [channel], "symbols": listed}).decode("utf-8")


def mds_subscribe(channel: str, symbols: Sequence[str]) -> str:
    """MDS ``subscribe`` of one channel for ``symbols`` (``"*"`` where documented)."""
    return _mds("subscribe", channel, symbols)


def mds_unsubscribe(channel: str, symbols: Sequence[str]) -> str:
    """MDS ``unsubscribe`` of one channel for ``symbols``."""
    return _mds("unsubscribe", channel, symbols)


# --- risk-control commands (docs/protocol.md §7) -----------------------------------------


def close_position(symbol: str, client_order_id: str) -> str:
    """``close_position``: the engine sends a reduce-only LIMIT IOC for the full size.

    Always carries our own ``client_order_id`` (see :func:`client_order_id`) so the
    ``order_response`` can be matched (docs/protocol.md §3: never rely on server ids).
    """
    _check_symbol(symbol)
    _check_client_id(client_order_id, "client_order_id")
    return _frame("close_position", {"symbol": symbol, "client_order_id": client_order_id})


def cancel_all_orders() -> str:
    """``cancel_all_orders`` with empty params: every open order of the account."""
    return _frame("cancel_all_orders", {})


def cancel_order(symbol: str, order_id: str, id_type: str = "order_id") -> str:
    """``cancel_order``; ``order_id`` holds the id of kind ``id_type`` (§7, §16.11)."""
    _check_symbol(symbol)
    if id_type not in CANCEL_ID_TYPES:
        msg = f"unknown id_type {id_type!r}; expected one of {list(CANCEL_ID_TYPES)}"
        raise ValueError(msg)
    if not isinstance(order_id, str) or not order_id:
        msg = f"order_id must be a non-empty string, got {order_id!r}"
        raise ValueError(msg)
    return _frame(
        "cancel_order", {"symbol": symbol, "order_id": order_id, "cancel_order_id_type": id_type}
    )


def get_user_orders(
    limit: int | None = None, offset: int | None = None, symbol: str | None = None
) -> str:
    """``get_user_orders``; omitted params take QFEX defaults (limit 1000, offset 0, all)."""
    _check_count(limit, "limit")
    _check_count(offset, "offset")
    params: dict[str, Any] = {}
    if limit is not None:
        params["limit"] = limit
    if offset is not None:
        params["offset"] = offset
    if symbol is not None:
        _check_symbol(symbol)
        params["symbol"] = symbol
    return _frame("get_user_orders", params)


def set_user_leverage(symbol: str, leverage: float) -> str:
    """``set_user_leverage`` (leverage a positive number, e.g. ``5.0``).

    QFEX rejects it while the symbol has open orders or a position (docs/protocol.md §7).
    """
    _check_symbol(symbol)
    _check_positive(leverage, "leverage")
    return _frame("set_user_leverage", {"symbol": symbol, "leverage": float(leverage)})


def get_user_leverage() -> str:
    """``get_user_leverage`` with empty params: the current level of every symbol."""
    return _frame("get_user_leverage", {})


def get_available_leverage_levels() -> str:
    """``get_available_leverage_levels`` with empty params: every level of every symbol
    (docs/protocol.md §7, §11)."""
    return _frame("get_available_leverage_levels", {})


def add_twap(
    symbol: str,
    side: Side,
    total_quantity: float,
    num_orders: int,
    order_interval_secs: int,
    reduce_only: bool = True,
    client_twap_id: str | None = None,
) -> str:
    """``add_twap``: ``num_orders`` slices ``order_interval_secs`` apart.

    Raises ValueError unless ``num_orders >= 2`` and ``order_interval_secs >= 30``
    (DOCS add_twap) and the other values are well formed. ``reduce_only`` defaults to
    True: riskwatch only ever uses a TWAP to reduce a position.
    """
    _check_symbol(symbol)
    if side not in ("BUY", "SELL"):
        msg = f"side must be 'BUY' or 'SELL', got {side!r}"
        raise ValueError(msg)
    _check_positive(total_quantity, "total_quantity")
    if isinstance(num_orders, bool) or not isinstance(num_orders, int):
        msg = f"num_orders must be an integer, got {num_orders!r}"
        raise ValueError(msg)
    if num_orders < MIN_TWAP_ORDERS:
        msg = f"num_orders must be at least {MIN_TWAP_ORDERS}, got {num_orders}"
        raise ValueError(msg)
    if isinstance(order_interval_secs, bool) or not isinstance(order_interval_secs, int):
        msg = f"order_interval_secs must be an integer, got {order_interval_secs!r}"
        raise ValueError(msg)
    if order_interval_secs < MIN_TWAP_INTERVAL_SECS:
        msg = (
            f"order_interval_secs must be at least {MIN_TWAP_INTERVAL_SECS}, "
            f"got {order_interval_secs}"
        )
        raise ValueError(msg)
    params: dict[str, Any] = {
        "symbol": symbol,
        "side": side,
        "total_quantity": float(total_quantity),
        "num_orders": num_orders,
        "order_interval_secs": order_interval_secs,
        "reduce_only": bool(reduce_only),
    }
    if client_twap_id is not None:
        _check_client_id(client_twap_id, "client_twap_id")
        params["client_twap_id"] = client_twap_id
    return _frame("add_twap", params)


# --- deterministic ids (docs/design.md#precise-points) -----------------------------------------


def client_order_id(rule: str, account: str, symbol: str, trip: int | str, attempt: int) -> str:
    """``"rw-"`` + 20 lowercase hex digits of SHA-256 over (rule, account, symbol, trip, attempt).

    Deterministic: the same trip and attempt always give the same id, so a restarted
    daemon recognises its own orders; a new attempt gives a new id. 23 characters of
    ``[a-z0-9-]``, within every client-id limit QFEX shows. The parts are JSON-encoded
    before hashing so that ``("a-b", "c")`` and ``("a", "b-c")`` cannot collide.
    """
    parts = _encode([rule, account, symbol, str(trip), attempt])
    digest = hashlib.sha256(parts).hexdigest()
    return "rw-" + digest[:_CLIENT_ID_HASH_CHARS]
