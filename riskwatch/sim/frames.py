"""Builders of the simulator's outgoing frames, current and legacy shapes (pure).

Current shapes follow the trade AsyncAPI (docs/protocol.md §3–§9); legacy shapes are the
older docs generation (docs/protocol.md §16: ``{"type":"auth","result":…}``, v4 envelopes,
``ack_response``, flat ``{"type":"error",…}``, ``user_orders``).
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

from riskwatch.sim.scenario import SymbolSpec


def err(code: str, message: str | None, incoming: object = None) -> dict[str, Any]:
    """Return an ``err`` frame; ``incoming`` is the request (object) or raw text."""
    body: dict[str, Any] = {"error_code": code, "message": message}
    # The schema allows an object or a string here, not null: omit it when unknown.
    if isinstance(incoming, dict | str):
        body["incoming_message"] = incoming
    return {"err": body}


def ack(incoming: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"ack": {"incoming_message": …}}`` (TRADE-AA ``AckResponse``)."""
    return {"ack": {"incoming_message": incoming}}


def iso(now: float) -> str:
    """Return Unix seconds ``now`` as an ISO-8601 UTC string with milliseconds and ``Z``."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def price_text(price: float, tick: float) -> str:
    """Return ``price`` as MDS sends prices: a decimal string at the tick's precision."""
    digits = max(0, len(f"{tick:.10f}".rstrip("0").split(".")[1]))
    return f"{price:.{digits}f}"


def mark_price(symbol: str, price: str, now: float) -> dict[str, Any]:
    """Return an MDS ``mark_price`` frame (ex:server.mds.mark_price.json)."""
    return {"type": "mark_price", "symbol": symbol, "price": price, "time": iso(now)}


def market_stats(
    sequence: int,
    symbol: str,
    marks: dict[str, str],
    spreads: dict[str, tuple[str, str]],
    now: float,
) -> dict[str, Any]:
    """Return an MDS ``market_stats`` snapshot (docs/protocol.md §12)."""
    t = iso(now)
    return {
        "type": "market_stats",
        "sequence": sequence,
        "time": t,
        "symbol": symbol,
        "bbos": [
            {"time": t, "symbol": s, "bid": [[bid, "1"]], "ask": [[ask, "1"]]}
            for s, (bid, ask) in spreads.items()
        ],
        "mark_prices": [{"time": t, "symbol": s, "price": p} for s, p in marks.items()],
        "open_interests": [],
        "daily_volumes": [],
    }


def v4_envelope(
    channel: str, connection_id: str, message_id: int, account_id: str, contents: list[Any]
) -> dict[str, Any]:
    """Return a legacy ``v4_positions`` / ``v4_balances`` envelope (docs/protocol.md §16.1)."""
    return {
        "type": "subscribed",
        "connection_id": connection_id,
        "message_id": message_id,
        "id": account_id,
        "channel": channel,
        "contents": contents,
    }


def to_legacy(frame: dict[str, Any]) -> dict[str, Any]:
    """Map a current-shape frame to its legacy form; frames without one pass through."""
    if "err" in frame:
        return {"type": "error", **frame["err"]}
    if "ack" in frame:
        return {"ack_response": True}
    if "authenticated" in frame:
        return {"type": "auth", "result": "success" if frame["authenticated"] else "failure"}
    if "all_orders_response" in frame:
        orders = frame["all_orders_response"]["orders"]
        return {"user_orders": orders, "count": len(orders)}
    return frame


def refdata_symbol(spec: SymbolSpec, mark: float) -> dict[str, Any]:
    """One ``RefdataSymbol`` of ``GET /refdata`` (OpenAPI; docs/protocol.md §11)."""
    base = spec.symbol.split("-")[0]
    return {
        "clobPairId": str(zlib.crc32(spec.symbol.encode()) % 1000),
        "symbol": spec.symbol,
        "underlier_price": f"{mark:g}",
        "price_change_24h": "0",
        "default_max_leverage": int(spec.max_leverage),
        "tick_size": f"{spec.tick_size:g}",
        "lot_size": f"{spec.lot_size:g}",
        "min_price": f"{mark * 0.5:g}",
        "max_price": f"{mark * 1.5:g}",
        "min_quantity": f"{spec.min_quantity:g}",
        "max_quantity": "100000000",
        "base_asset": base,
        "quote_asset": "USD",
        "margin_asset": "USD",
        "order_time_in_force": ["GTC", "IOC", "FOK"],
        "order_types": ["LIMIT", "MARKET", "ALO"],
        "market_hours": spec.market_hours or {},
        "status": spec.status,
        "product_category": "equity",
    }
