"""Builders of exchange events and account snapshots for tests: one place, plain defaults.

Every builder returns the frozen event of :mod:`riskwatch.model` with each field given;
the defaults describe one small, consistent account, so a test names only the fields its
assertion is about:

- a 10-unit long of ``AAPL-USD`` at 200 with 20× leverage, margin rates :data:`IM_20X`
  and :data:`MM_20X` (⅔ of the initial rate: the QFEX relation, docs/protocol.md §6),
  whatever ``leverage`` says (pass the rates to change them);
- a balance with a 1000 USD deposit and 100 USD of position margin;
- every event received at ``at=1.0`` (seconds; tests use small clocks);
- notification routes and alert notices as the notifier's stages take them (an alert
  notice is stamped :data:`T0`, a realistic Unix time, for the dedup and silence clocks).

``**overrides`` on each builder replaces any other field by name (``msgspec.structs.replace``),
so an unusual value never needs a builder of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from riskwatch.config import RouteConfig
from riskwatch.model import BalanceUpdate, Event, MarkPrice, OrderUpdate, PositionUpdate
from riskwatch.notify.notice import AlertNotice
from riskwatch.secret import Secret
from riskwatch.state.account import AccountSnapshot, initial, reduce

__all__ = [
    "IM_20X",
    "MM_20X",
    "T0",
    "alert_notice",
    "balance_update",
    "mark_price",
    "order_update",
    "position_update",
    "route_config",
    "snapshot_of",
]

IM_20X = 0.05
"""Initial margin rate at 20× leverage: ``1 / leverage``."""
MM_20X = IM_20X * 2 / 3
"""Maintenance margin rate at 20× leverage: ⅔ of the initial rate."""
T0 = 1_700_000_000.0
"""The time of an alert notice unless a test says otherwise (2023-11-14T22:13:20Z)."""


def position_update(
    symbol: str = "AAPL-USD",
    qty: float = 10.0,
    avg: float = 200.0,
    upnl: float = 0.0,
    at: float = 1.0,
    *,
    leverage: float = 20.0,
    open_orders: int = 0,
    **overrides: Any,
) -> PositionUpdate:
    """A ``position_response`` as decoded: ``qty`` signed, the 20× margin rates."""
    event = PositionUpdate(
        symbol=symbol,
        position=qty,
        average_price=avg,
        unrealised_pnl=upnl,
        realised_pnl=0.0,
        net_funding=0.0,
        margin_alloc=0.0,
        open_orders=open_orders,
        open_quantity=0.0,
        leverage=leverage,
        initial_margin_rate=IM_20X,
        maintenance_margin_rate=MM_20X,
        received_at=at,
    )
    return msgspec.structs.replace(event, **overrides) if overrides else event


def balance_update(
    deposit: float = 1000.0,
    upnl: float = 0.0,
    realised: float = 0.0,
    funding: float = 0.0,
    position_margin: float = 100.0,
    at: float = 1.0,
    *,
    order_margin: float = 0.0,
    **overrides: Any,
) -> BalanceUpdate:
    """A ``balance_response`` as decoded; ``available_balance`` is deposit minus margins."""
    event = BalanceUpdate(
        deposit=deposit,
        realised_pnl=realised,
        unrealised_pnl=upnl,
        net_funding=funding,
        order_margin=order_margin,
        position_margin=position_margin,
        available_balance=deposit - position_margin - order_margin,
        fees=None,
        referral_rewards=None,
        received_at=at,
    )
    return msgspec.structs.replace(event, **overrides) if overrides else event


def mark_price(price: float, at: float = 1.0, symbol: str = "AAPL-USD") -> MarkPrice:
    """A market-data ``mark_price`` without an exchange time."""
    return MarkPrice(symbol=symbol, price=price, exchange_time=None, received_at=at)


def order_update(
    order_id: str = "o1",
    status: str = "ACK",
    symbol: str = "AAPL-USD",
    remaining: float = 1.0,
    at: float = 1.0,
    **overrides: Any,
) -> OrderUpdate:
    """An ``order_response``: a 1-unit GTC limit buy at 150 with ``remaining`` left."""
    event = OrderUpdate(
        order_id=order_id,
        client_order_id="",
        symbol=symbol,
        status=status,
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=1.0,
        quantity_remaining=remaining,
        price=150.0,
        update_time=None,
        received_at=at,
    )
    return msgspec.structs.replace(event, **overrides) if overrides else event


def snapshot_of(
    *events: Event,
    start: AccountSnapshot | None = None,
    account: str = "desk-a",
    accept_all: bool = True,
) -> AccountSnapshot:
    """Reduce ``events`` in order from ``start`` (else an empty snapshot of ``account``).

    With ``accept_all`` (the default) every event must be applied: an event the
    plausibility checks flag fails the test here, naming the event and the flag.
    """
    snap = start if start is not None else initial(account)
    for event in events:
        result = reduce(snap, event)
        if accept_all:
            assert result.flag is None, (event, result.flag)
        snap = result.snapshot
    return snap


def route_config(
    urls: list[str],
    *,
    match: Mapping[str, str] | None = None,
    match_re: Mapping[str, str] | None = None,
    **fields: Any,
) -> RouteConfig:
    """A notification route to ``urls`` (made secrets); ``match_re`` values are compiled."""
    return RouteConfig(
        urls=tuple(Secret(u) for u in urls),
        match=MappingProxyType(dict(match or {})),
        match_re=MappingProxyType({k: re.compile(v) for k, v in (match_re or {}).items()}),
        **fields,
    )


def alert_notice(rule: str = "MarginUsageHigh", **fields: Any) -> AlertNotice:
    """A firing warning of ``rule`` on desk-a, trip 1, at :data:`T0`; ``fields`` override."""
    values: dict[str, Any] = {
        "rule": rule,
        "account": "desk-a",
        "symbol": None,
        "status": "firing",
        "severity": "warning",
        "at": T0,
        "trip_id": 1,
        "summary": f"{rule} on desk-a at 91.0 %",
        **fields,
    }
    return AlertNotice(**values)
