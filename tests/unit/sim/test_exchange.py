"""Unit tests of the simulated matching engine, driven without sockets or clocks."""

from __future__ import annotations

from typing import Any

import pytest

from riskwatch.sim.exchange import Exchange, Out
from riskwatch.sim.scenario import parse_scenario
from tests.support.asyncapi_schemas import validate_server_message

NOW = 1_760_000_000.0


def exchange(**account: Any) -> Exchange:
    raw = {
        "name": "t",
        "symbols": [
            {"symbol": "AAPL-USD", "mark": 200, "funding": {"interval": "10s", "rate": 0.001}},
        ],
        "accounts": [{"name": "a", "public_key": "pk", "deposit": 10000, **account}],
    }
    return Exchange(parse_scenario(raw))


def statuses(outs: list[Out]) -> list[str]:
    return [
        o.frame["order_response"]["status"] if "order_response" in o.frame else next(iter(o.frame))
        for o in outs
    ]


def order(**params: Any) -> dict[str, Any]:
    base = {
        "symbol": "AAPL-USD",
        "side": "BUY",
        "order_type": "LIMIT",
        "order_time_in_force": "GTC",
        "quantity": 10,
        "price": 190,
    }
    return {"type": "add_order", "params": {**base, **params}}


def test_resting_order_fills_when_the_mark_reaches_it() -> None:
    """A resting bid fills at its price once the mark trades down to it."""
    ex = exchange()
    assert statuses(ex.handle("a", order(), NOW)) == ["ACK"]
    assert ex.set_mark("AAPL-USD", 195.0, NOW) == []
    outs = ex.set_mark("AAPL-USD", 189.0, NOW)
    assert statuses(outs) == ["fill_response"]
    assert outs[0].channel == "fills"
    pos = ex.ledgers["a"].position("AAPL-USD")
    assert (pos.qty, pos.average_price) == (10.0, 190.0)
    assert ex.ledgers["a"].open_orders() == []


def test_ioc_that_does_not_cross_is_cancelled() -> None:
    """A non-marketable IOC is acknowledged then cancelled, never resting."""
    ex = exchange()
    outs = ex.handle("a", order(order_time_in_force="IOC"), NOW)
    assert statuses(outs) == ["ACK", "CANCELLED"]
    assert all(o.channel == "order_responses" for o in outs)


def test_margin_check_and_reduce_only() -> None:
    """Orders beyond available balance fail the margin check; reduce-only needs a position."""
    ex = exchange()
    big = order(quantity=1000, price=199)  # margin 1000 × 199 × 0.05 = 9950 of 10000
    assert statuses(ex.handle("a", big, NOW)) == ["ACK"]
    assert statuses(ex.handle("a", order(quantity=100, price=199), NOW)) == ["FAILED_MARGIN_CHECK"]
    assert statuses(ex.handle("a", order(side="SELL", reduce_only=True), NOW)) == ["REJECTED"]


def test_funding_is_paid_by_longs_each_interval() -> None:
    """A long pays qty × mark × rate at every funding interval of scenario time."""
    ex = exchange(positions=[{"symbol": "AAPL-USD", "qty": 10, "avg": 200}])
    ex.advance(9.9, NOW)
    assert ex.ledgers["a"].figures().net_funding == 0.0
    ex.advance(30.0, NOW)
    assert ex.ledgers["a"].figures().net_funding == pytest.approx(-3 * 10 * 200 * 0.001)


def test_reduce_only_twap_stops_at_flat() -> None:
    """A reduce-only TWAP larger than the position only closes the position."""
    ex = exchange(positions=[{"symbol": "AAPL-USD", "qty": 3, "avg": 200}])
    request = {
        "type": "add_twap",
        "params": {
            "symbol": "AAPL-USD",
            "side": "SELL",
            "total_quantity": 10,
            "num_orders": 2,
            "order_interval_secs": 30,
            "reduce_only": True,
        },
    }
    assert "twap_response" in ex.handle("a", request, NOW)[0].frame
    ex.advance(0.0, NOW)
    ex.advance(30.0, NOW)
    assert ex.ledgers["a"].position("AAPL-USD").qty == 0.0
    assert ex.twaps["a"] == {}


def test_unknown_command_and_bad_params() -> None:
    """Unknown commands and wrong param types become err InvalidParameter."""
    ex = exchange()
    bad = ex.handle("a", {"type": "nope", "params": {}}, NOW)
    assert bad[0].frame["err"]["error_code"] == "InvalidParameter"
    wrong = ex.handle("a", order(quantity="ten"), NOW)
    assert "quantity" in wrong[0].frame["err"]["message"]


def test_every_reply_validates_against_the_schema() -> None:
    """Replies of every handled command validate against the trade AsyncAPI."""
    ex = exchange(positions=[{"symbol": "AAPL-USD", "qty": 3, "avg": 200}])
    ack = ex.handle("a", order(client_order_id="c1"), NOW)
    order_id = ack[0].frame["order_response"]["order_id"]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("add_order", order(side="SELL", order_type="MARKET", order_time_in_force="IOC")),
        ("get_order", {"order_id": order_id, "symbol": "AAPL-USD"}),
        (
            "modify_order",
            {
                "order_id": order_id,
                "symbol": "AAPL-USD",
                "price": 185,
                "quantity": 5,
                "side": "BUY",
                "order_type": "LIMIT",
            },
        ),
        ("modify_order", {"order_id": "nope", "symbol": "AAPL-USD", "side": "BUY"}),
        ("get_user_trades", {}),
        ("get_user_leverage", {}),
        ("get_available_leverage_levels", {}),
        ("get_user_orders", {"symbol": "AAPL-USD"}),
        (
            "cancel_order",
            {"symbol": "AAPL-USD", "order_id": "nope", "cancel_order_id_type": "order_id"},
        ),
        (
            "cancel_order",
            {"symbol": "AAPL-USD", "order_id": "c1", "cancel_order_id_type": "client_order_id"},
        ),
        ("close_position", {"symbol": "AAPL-USD"}),
        ("close_position", {"symbol": "NOPE-USD"}),
        ("cancel_all_orders", {}),
    ]
    seen = set()
    for kind, params in requests:
        for out in ex.handle("a", {"type": kind, "params": params}, NOW):
            validate_server_message(out.frame)
            seen.add(next(iter(out.frame)))
    assert {"order_response", "fill_response", "user_trades_response", "ack"} <= seen
    assert {"user_leverage_response", "available_leverage_levels_response"} <= seen
