"""Decoding of QFEX trade and market-data frames (riskwatch.qfex.schemas)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskwatch.model import (
    Ack,
    Authenticated,
    BadMessage,
    BalanceUpdate,
    ErrorReply,
    Fill,
    MarkPrice,
    OpenOrders,
    OrderUpdate,
    OtherReply,
    PositionUpdate,
    Subscribed,
    UnknownMessage,
)
from riskwatch.qfex.schemas import (
    MAX_FRAME_CHARS,
    SAMPLE_CHARS,
    decode_mds,
    decode_trade,
    v4_margin_rates,
)
from tests.support.asyncapi_schemas import strip_jsonc
from tests.support.paths import QFEX_EXAMPLES

EXAMPLES = QFEX_EXAMPLES
NOW = 1_760_000_000.5


def example_text(name: str) -> str:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    return strip_jsonc(text) if name.endswith(".jsonc") else text


def truncated_text(name: str) -> str:
    lines = (EXAMPLES / name).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def one(events: list[Any]) -> Any:
    assert len(events) == 1, events
    return events[0]


POSITION = {
    "symbol": "AAPL-USD",
    "position": -2.0,
    "average_price": 200.0,
    "unrealised_pnl": 10.0,
    "realised_pnl": 1.5,
    "net_funding": -0.25,
    "margin_alloc": 0.0,
    "open_orders": 3.0,
    "open_quantity": 4.0,
    "leverage": 10.0,
    "initial_margin": 0.1,
    "maintenance_margin": 0.0666,
}

# --- every server example: expected event types ---------------------------------------

TRADE_EXPECTED = {
    "server.ack_response.json": [Ack],
    "server.auth.legacy.json": [Authenticated],
    "server.available_leverage_levels_response.legacy.json": [OtherReply],
    "server.balance_response.json": [BalanceUpdate],
    "server.err.json": [ErrorReply],
    "server.error.legacy_flat.json": [ErrorReply],
    "server.fill_response.json": [Fill],
    "server.order_response.ack.json": [OrderUpdate],
    "server.order_response.ack.legacy.json": [OrderUpdate],
    "server.order_response.cancel_order.legacy.json": [OrderUpdate],
    "server.order_response.cancelled.json": [OrderUpdate],
    "server.order_response.cancelled.legacy.json": [OrderUpdate],
    "server.order_response.modified.legacy.json": [OrderUpdate],
    "server.order_response.stop_cancelled.json": [OrderUpdate],
    "server.position_response.json": [PositionUpdate],
    "server.subscribed.balances.json": [Subscribed],
    "server.subscribed.fills.json": [Subscribed],
    "server.subscribed.order_responses.json": [Subscribed],
    "server.subscribed.positions.json": [Subscribed],
    "server.user_leverage_response.json": [OtherReply],
    "server.user_leverage_response.legacy.json": [OtherReply],
    "server.user_orders.legacy.json": [OpenOrders],
    "server.user_trades.json": [OtherReply],
    "server.v4_balances.json": [BalanceUpdate],
    "server.v4_positions.json": [PositionUpdate],
    # Legacy market-data envelopes of the retired v4 gateway: not trade messages.
    "server.v4_bbo.json": [UnknownMessage],
    "server.v4_candles.json": [UnknownMessage],
    "server.v4_orderbook.json": [UnknownMessage],
    "server.v4_trades.json": [UnknownMessage],
}


def test_every_server_example_is_listed() -> None:
    """Every non-truncated server example appears in exactly one expectation table."""
    names = {
        p.name
        for p in EXAMPLES.glob("server.*")
        if p.suffix in (".json", ".jsonc") and not p.name.startswith("server.mds.")
    }
    assert names == set(TRADE_EXPECTED)


@pytest.mark.parametrize("name", sorted(TRADE_EXPECTED))
def test_trade_example_decodes_to_expected_types(name: str) -> None:
    """Each trade-gateway example decodes to the listed event types, stamped with now."""
    events = decode_trade(example_text(name), NOW)
    assert [type(e) for e in events] == TRADE_EXPECTED[name]
    assert all(e.received_at == NOW for e in events)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EXAMPLES.glob("server.mds.*") if p.suffix != ".txt")
)
def test_mds_example_decodes(name: str) -> None:
    """Each MDS example gives MarkPrice for mark channels and OtherReply(type) otherwise."""
    text = example_text(name)
    events = decode_mds(text, NOW)
    kind = json.loads(text)["type"]
    if kind in ("mark_price", "market_stats"):
        assert events
        assert all(isinstance(e, MarkPrice) for e in events)
    else:
        assert [(type(e), getattr(e, "name", None)) for e in events] == [(OtherReply, kind)]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.TRUNCATED.txt")))
@pytest.mark.parametrize("decode", [decode_trade, decode_mds])
def test_truncated_examples_are_bad_messages(name: str, decode: Any) -> None:
    """A frame cut mid-way yields one BadMessage with a sample, and does not raise."""
    text = truncated_text(name)
    event = one(decode(text, NOW))
    assert isinstance(event, BadMessage)
    assert event.sample == text[:SAMPLE_CHARS]
    assert "malformed" in event.reason or "truncated" in event.reason


# --- values ------------------------------------------------------------------------------


def test_position_response_values() -> None:
    """position_response fields map one to one; open_orders 0.0 becomes the int 0."""
    p = one(decode_trade(example_text("server.position_response.json"), NOW))
    assert p == PositionUpdate(
        symbol="AAPL-USD",
        position=0.0,
        average_price=0.0,
        unrealised_pnl=0.0,
        realised_pnl=0.0,
        net_funding=0.0,
        margin_alloc=0.0,
        open_orders=0,
        open_quantity=0.0,
        leverage=20.0,
        initial_margin_rate=0.05,
        maintenance_margin_rate=0.03333333333333333,
        received_at=NOW,
    )
    assert type(p.open_orders) is int


def test_position_numeric_strings_and_short_sign() -> None:
    """Numeric strings decode as floats; a short keeps its sign and implies a mark."""
    raw = {k: str(v) if isinstance(v, float) else v for k, v in POSITION.items()}
    p = one(decode_trade(json.dumps({"position_response": raw}), NOW))
    assert isinstance(p, PositionUpdate)
    assert p.position == -2.0
    assert p.open_orders == 3
    assert p.implied_mark == pytest.approx(195.0)


def test_position_extra_fields_ignored() -> None:
    """Unknown extra fields (id, user_id, timestamp) do not disturb decoding."""
    raw = {**POSITION, "id": "x", "user_id": "u", "timestamp": "2025-05-09T03:47:20Z"}
    assert isinstance(
        one(decode_trade(json.dumps({"position_response": raw}), NOW)), PositionUpdate
    )


def test_balance_values() -> None:
    """balance_response maps to BalanceUpdate with fees/referral_rewards None when absent."""
    b = one(decode_trade(example_text("server.balance_response.json"), NOW))
    assert isinstance(b, BalanceUpdate)
    assert b.deposit == 9_990_000_000.0
    assert b.available_balance == 9_990_000_000.0
    assert b.fees is None
    assert b.referral_rewards is None


def test_balance_optional_fees() -> None:
    """fees and referral_rewards are carried when present."""
    raw = json.loads(example_text("server.balance_response.json"))
    raw["balance_response"] |= {"fees": 1.25, "referral_rewards": "0.5"}
    b = one(decode_trade(json.dumps(raw), NOW))
    assert (b.fees, b.referral_rewards) == (1.25, 0.5)


def test_v4_balances_envelope() -> None:
    """The legacy v4_balances envelope gives one BalanceUpdate per contents item."""
    b = one(decode_trade(example_text("server.v4_balances.json"), NOW))
    assert isinstance(b, BalanceUpdate)
    assert b.deposit == 1000.0
    assert b.realised_pnl == -898.65735
    assert b.net_funding == -1.5354636
    assert b.reported_equity == pytest.approx(1000 - 898.65735 - 1.5354636)


def test_v4_positions_envelope_converts_zero_margins() -> None:
    """A flat v4 item with 0/0 margins at 20x gets rates 1/20 and (2/3)/20."""
    p = one(decode_trade(example_text("server.v4_positions.json"), NOW))
    assert isinstance(p, PositionUpdate)
    assert p.symbol == "PLTR-USD"
    assert p.open_orders == 1
    assert p.open_quantity == 10.0
    assert p.initial_margin_rate == pytest.approx(0.05)
    assert p.maintenance_margin_rate == pytest.approx(0.05 * 2 / 3)


def test_v4_positions_many_items() -> None:
    """Each contents item of a v4_positions envelope becomes its own PositionUpdate."""
    items = [dict(POSITION, symbol=s) for s in ("A-USD", "B-USD", "C-USD")]
    frame = {"type": "channel_data", "channel": "v4_positions", "contents": items}
    events = decode_trade(json.dumps(frame), NOW)
    assert [getattr(e, "symbol", None) for e in events] == ["A-USD", "B-USD", "C-USD"]


def test_v4_positions_amount_margins_become_rates() -> None:
    """v4 margins above 1 are amounts, divided by |position| x implied mark."""
    item = dict(POSITION, initial_margin=39.0, maintenance_margin=26.0)
    frame = {"type": "subscribed", "channel": "v4_positions", "contents": [item]}
    p = one(decode_trade(json.dumps(frame), NOW))
    # |-2| x (200 + 10 / -2) = 390 USD notional.
    assert p.initial_margin_rate == pytest.approx(0.1)
    assert p.maintenance_margin_rate == pytest.approx(26.0 / 390.0)


def test_position_response_margins_pass_through() -> None:
    """position_response margins are rates already and are never converted."""
    raw = dict(POSITION, initial_margin=0.0, maintenance_margin=0.0)
    p = one(decode_trade(json.dumps({"position_response": raw}), NOW))
    assert (p.initial_margin_rate, p.maintenance_margin_rate) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("im", "mm", "position", "avg", "upnl", "lev", "expected"),
    [
        (0.0, 0.0, 0.0, 0.0, 0.0, 20.0, (0.05, 0.05 * 2 / 3)),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (0.0, 0.0)),
        (0.1, 0.05, 3.0, 100.0, 0.0, 10.0, (0.1, 0.05)),
        (30.0, 20.0, 3.0, 100.0, 0.0, 10.0, (0.1, 20.0 / 300.0)),
        (30.0, 0.5, -3.0, 100.0, 0.0, 10.0, (0.1, 0.5 / 300.0)),
        (30.0, 20.0, 3.0, 0.0, -1.0, 4.0, (0.25, 0.25 * 2 / 3)),
        (30.0, 20.0, 3.0, 0.0, -1.0, 0.0, (30.0, 20.0)),
    ],
)
def test_v4_margin_rates_rules(
    im: float,
    mm: float,
    position: float,
    avg: float,
    upnl: float,
    lev: float,
    expected: tuple[float, float],
) -> None:
    """v4_margin_rates applies the documented three rules and falls back safely."""
    got = v4_margin_rates(
        im, mm, position=position, average_price=avg, unrealised_pnl=upnl, leverage=lev
    )
    assert got == pytest.approx(expected)


def test_v4_margin_rates_non_finite_never_raises() -> None:
    """Non-finite inputs give an answer, not an exception."""
    nan = float("nan")
    v4_margin_rates(nan, nan, position=nan, average_price=nan, unrealised_pnl=nan, leverage=nan)
    got = v4_margin_rates(
        5.0, 3.0, position=1.0, average_price=math.inf, unrealised_pnl=0.0, leverage=nan
    )
    assert got == (5.0, 3.0)


def test_order_response_values() -> None:
    """order_response maps type to order_type and keeps an empty client_order_id."""
    o = one(decode_trade(example_text("server.order_response.ack.json"), NOW))
    assert o == OrderUpdate(
        order_id="5b309929-206f-40ec-804d-cbe46e81afc1",
        client_order_id="",
        symbol="AAPL-USD",
        status="ACK",
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=1.0,
        quantity_remaining=1.0,
        price=200.0,
        update_time=None,
        received_at=NOW,
    )


def test_order_status_unknown_kept_verbatim() -> None:
    """An order status outside the documented enum flows through unchanged."""
    raw = json.loads(example_text("server.order_response.cancelled.json"))
    raw["order_response"]["status"] = "SOMETHING_NEW"
    raw["order_response"]["client_order_id"] = None
    o = one(decode_trade(json.dumps(raw), NOW))
    assert o.status == "SOMETHING_NEW"
    assert o.client_order_id == ""


def test_fill_values() -> None:
    """fill_response carries price, quantity, fee, remaining and timestamp."""
    f = one(decode_trade(example_text("server.fill_response.json"), NOW))
    assert isinstance(f, Fill)
    assert (f.symbol, f.side, f.price, f.quantity) == ("US100-USD", "SELL", 25242.0, 0.004)
    assert f.fee == 0.00045
    assert f.remaining_quantity == 0.0
    assert f.timestamp == 1769439642.8484282
    assert f.client_order_id == "REDACTED"


def test_fill_without_remaining() -> None:
    """A first partial fill may lack remaining_quantity (3P note): None, not bad."""
    raw = json.loads(example_text("server.fill_response.json"))
    del raw["fill_response"]["remaining_quantity"]
    assert one(decode_trade(json.dumps(raw), NOW)).remaining_quantity is None


def test_all_orders_response() -> None:
    """all_orders_response gives OpenOrders with every order decoded."""
    order = json.loads(example_text("server.order_response.ack.json"))["order_response"]
    frame = {"all_orders_response": {"orders": [order, dict(order, order_id="2")], "twaps": []}}
    e = one(decode_trade(json.dumps(frame), NOW))
    assert isinstance(e, OpenOrders)
    assert [o.order_id for o in e.orders] == [order["order_id"], "2"]


def test_all_orders_response_empty() -> None:
    """An empty orders list is an empty OpenOrders, not a bad frame."""
    e = one(decode_trade('{"all_orders_response": {"orders": [], "twaps": []}}', NOW))
    assert e == OpenOrders(orders=(), received_at=NOW)


def test_user_orders_legacy() -> None:
    """Legacy user_orders (with count) gives OpenOrders."""
    e = one(decode_trade(example_text("server.user_orders.legacy.json"), NOW))
    assert [o.client_order_id for o in e.orders] == ["my-client-oid"]


def test_authenticated_forms() -> None:
    """authenticated true/false and legacy auth success/failure all decode."""
    assert one(decode_trade('{"authenticated": true}', NOW)).ok is True
    assert one(decode_trade('{"authenticated": false}', NOW)).ok is False
    assert one(decode_trade(example_text("server.auth.legacy.json"), NOW)).ok is True
    failed = one(decode_trade('{"type": "auth", "result": "invalid signature"}', NOW))
    assert failed == Authenticated(ok=False, detail="invalid signature", received_at=NOW)


def test_subscribed_and_unsubscribed() -> None:
    """subscribed/unsubscribed carry the channel and a direction flag."""
    assert one(decode_trade('{"subscribed": "positions"}', NOW)) == Subscribed(
        "positions", True, NOW
    )
    assert one(decode_trade('{"unsubscribed": "fills"}', NOW)) == Subscribed("fills", False, NOW)


def test_ack_forms() -> None:
    """ack echoes incoming_message; ack_response true is an Ack; false is an ErrorReply."""
    echoed = {"type": "cancel_all_orders", "params": {}}
    ack = one(decode_trade(json.dumps({"ack": {"incoming_message": echoed}}), NOW))
    assert ack == Ack(incoming_message=echoed, received_at=NOW)
    assert one(decode_trade('{"ack": {}}', NOW)) == Ack(None, NOW)
    assert one(decode_trade('{"ack_response": true}', NOW)) == Ack(None, NOW)
    refused = one(decode_trade('{"ack_response": false}', NOW))
    assert isinstance(refused, ErrorReply)
    assert refused.error_code == "AckResponseFalse"


def test_err_and_flat_error_agree() -> None:
    """The err envelope and the legacy flat error decode to the same ErrorReply."""
    a = one(decode_trade(example_text("server.err.json"), NOW))
    b = one(decode_trade(example_text("server.error.legacy_flat.json"), NOW))
    assert a == b
    assert a.error_code == "RateLimited"
    assert isinstance(a.incoming_message, dict)
    assert a.incoming_message["params"]["client_order_id"] == "my-order-001"


def test_err_minimal_and_string_echo() -> None:
    """An err with only error_code, or a string echo, is still an ErrorReply."""
    e = one(decode_trade('{"err": {"error_code": "NewCode"}}', NOW))
    assert e == ErrorReply("NewCode", None, None, NOW)
    s = one(
        decode_trade('{"err": {"error_code": "InvalidJSONFormat", "incoming_message": "x{"}}', NOW)
    )
    assert s.incoming_message == "x{"


@pytest.mark.parametrize(
    "name",
    [
        "user_leverage_response",
        "available_leverage_levels_response",
        "user_trades_response",
        "user_trades",
        "twap_response",
        "stop_order_response",
    ],
)
def test_other_replies(name: str) -> None:
    """The rarely needed replies become OtherReply with their payload kept whole."""
    payload = [{"symbol": "A-USD", "leverage": "20"}]
    e = one(decode_trade(json.dumps({name: payload}), NOW))
    assert e == OtherReply(name=name, payload=payload, received_at=NOW)


# --- malformed and unknown frames ---------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("", "truncated"),
        ("not json", "malformed"),
        ("[1, 2]", "object"),
        ("42", "object"),
        ('"text"', "object"),
        ("null", "object"),
        ('{"position_response": {"symbol": "A"', "truncated"),
        ('{"position_response": {"symbol": "A", "position": "abc"}}', "position"),
        ('{"position_response": {"symbol": "A"}}', "required"),
        ('{"position_response": {**}}', "malformed"),
        ('{"position_response": "x"}', "position_response"),
        ('{"position_response": null}', "null"),
        ('{"err": null}', "null"),
        ('{"balance_response": {"deposit": true}}', "deposit"),
        ('{"order_response": {"order_id": 5}}', "order_id"),
        ('{"authenticated": "maybe"}', "authenticated"),
        ('{"subscribed": 5}', "subscribed"),
        ('{"err": {"message": "no code"}}', "error_code"),
        ('{"type": "auth"}', "result"),
        ('{"type": "error", "message": "no code"}', "error_code"),
        ('{"type": "subscribed", "channel": "v4_positions", "contents": {}}', "contents"),
        (
            '{"type": "subscribed", "channel": "v4_balances", "contents": [{"deposit": 1}]}',
            "required",
        ),
        ('{"position_response": ' + json.dumps(dict(POSITION, open_orders=1.5)) + "}", "int"),
    ],
)
def test_malformed_trade_frames(frame: str, fragment: str) -> None:
    """Malformed or wrongly typed frames become one BadMessage naming the problem."""
    e = one(decode_trade(frame, NOW))
    assert isinstance(e, BadMessage), e
    assert fragment in e.reason
    assert e.sample == frame[:SAMPLE_CHARS]


def test_non_utf8_bytes() -> None:
    """Invalid UTF-8 bytes give a BadMessage whose sample is printable text."""
    data = b'{"subscribed": "\xff\xfe"}'
    e = one(decode_trade(data, NOW))
    assert isinstance(e, BadMessage)
    assert "\ufffd" in e.sample
    assert isinstance(one(decode_mds(data, NOW)), BadMessage)


def test_lone_surrogate_text() -> None:
    """A str frame holding a lone surrogate decodes without raising; samples stay encodable."""
    one(decode_trade('{"subscribed": "\udcff"}', NOW))
    e = one(decode_trade('{"subscribed": 1, "x": "\udcff"}', NOW))
    assert isinstance(e, BadMessage)
    e.sample.encode("utf-8")


def test_oversized_frame() -> None:
    """A frame over MAX_FRAME_CHARS is rejected unread with a short sample."""
    frame = '{"subscribed": "' + "x" * MAX_FRAME_CHARS + '"}'
    for decode in (decode_trade, decode_mds):
        e = one(decode(frame, NOW))
        assert isinstance(e, BadMessage)
        assert "exceeds" in e.reason
        assert len(e.sample) == SAMPLE_CHARS


def test_bytes_and_text_agree() -> None:
    """The same frame as bytes or str decodes to the same events."""
    text = example_text("server.position_response.json")
    assert decode_trade(text, NOW) == decode_trade(text.encode(), NOW)


def test_unknown_messages() -> None:
    """Well-formed objects of no known type are UnknownMessage keyed by type or first key."""
    assert (
        one(decode_trade('{"leaderboard_response": {"x": 1}}', NOW)).key == "leaderboard_response"
    )
    assert one(decode_trade('{"type": "pong"}', NOW)).key == "pong"
    assert one(decode_trade("{}", NOW)) == UnknownMessage(key="", sample="{}", received_at=NOW)
    # A name the legacy forms use, with an unrelated type, is unknown rather than bad.
    assert isinstance(one(decode_trade('{"message": 5, "result": [1]}', NOW)), UnknownMessage)


def test_non_finite_numbers_pass_through() -> None:
    """NaN/Infinity literals, 1e999 and "nan" strings decode as non-finite floats."""
    raw = json.dumps(dict(POSITION, position="nan", leverage="inf"))
    raw = raw.replace('"average_price": 200.0', '"average_price": NaN')
    raw = raw.replace('"unrealised_pnl": 10.0', '"unrealised_pnl": 1e999')
    raw = raw.replace('"realised_pnl": 1.5', '"realised_pnl": -Infinity')
    p = one(decode_trade('{"position_response": ' + raw + "}", NOW))
    assert isinstance(p, PositionUpdate), p
    assert math.isnan(p.position)
    assert math.isnan(p.average_price)
    assert p.unrealised_pnl == math.inf
    assert p.realised_pnl == -math.inf
    assert p.leverage == math.inf
    assert p.implied_mark is None or math.isnan(p.implied_mark)
    m = one(decode_mds('{"type": "mark_price", "symbol": "X", "price": NaN}', NOW))
    assert math.isnan(m.price)


def test_huge_integer_becomes_inf() -> None:
    """An integer literal beyond float range passes through as inf, like 1e999."""
    raw = json.loads(example_text("server.balance_response.json"))
    text = json.dumps(raw).replace("9990000000.0", "9" * 400, 1)
    b = one(decode_trade(text, NOW))
    assert isinstance(b, BalanceUpdate)
    assert b.deposit == math.inf


def test_non_finite_open_orders_is_bad() -> None:
    """A non-finite open_orders count cannot be an int: BadMessage, no exception."""
    raw = json.dumps(dict(POSITION, open_orders="nan"))
    assert isinstance(one(decode_trade('{"position_response": ' + raw + "}", NOW)), BadMessage)


# --- MDS ---------------------------------------------------------------------------------


def test_mark_price_values() -> None:
    """mark_price string prices become floats with the exchange time kept."""
    m = one(decode_mds(example_text("server.mds.mark_price.json"), NOW))
    assert m == MarkPrice("AAPL-USD", 437.45, "2025-05-08T20:52:48.000Z", NOW)


def test_market_stats_one_mark_per_item() -> None:
    """market_stats yields one MarkPrice per mark_prices item, and none for an empty list."""
    raw = json.loads(example_text("server.mds.market_stats.json"))
    raw["mark_prices"].append({"symbol": "TSLA-USD", "price": 250.5, "time": None})
    events = decode_mds(json.dumps(raw), NOW)
    assert all(isinstance(e, MarkPrice) for e in events)
    assert [(getattr(e, "symbol", None), getattr(e, "price", None)) for e in events] == [
        ("AAPL-USD", 10102.0),
        ("TSLA-USD", 250.5),
    ]
    raw["mark_prices"] = []
    assert decode_mds(json.dumps(raw), NOW) == []


def test_mds_arrays_and_envelopes() -> None:
    """Arrays of frames and contents envelopes are unpacked; items inherit the channel."""
    frames = [
        {"type": "mark_price", "symbol": "A", "price": "1.5"},
        {"type": "subscribed", "channel": "mark_price", "contents": [{"symbol": "B", "price": 2}]},
        {"type": "bbo", "symbol": "A", "bid": [], "ask": []},
    ]
    events = decode_mds(json.dumps(frames), NOW)
    assert [type(e) for e in events] == [MarkPrice, MarkPrice, OtherReply]
    assert [getattr(e, "symbol", None) for e in events[:2]] == ["A", "B"]


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "mark_price", "symbol": "A"}',
        '{"type": "mark_price", "symbol": "A", "price": "abc"}',
        '{"type": "mark_price", "symbol": 5, "price": "1"}',
        '{"type": "market_stats", "mark_prices": [{"symbol": "A"}]}',
        "[1]",
        '{"type": "mark_price", "symbol": "A", "price": "1"',
    ],
)
def test_malformed_mds_frames(frame: str) -> None:
    """Malformed MDS frames are BadMessage, never an exception."""
    assert any(isinstance(e, BadMessage) for e in decode_mds(frame, NOW))


def test_mds_unknown_untyped_object() -> None:
    """An MDS object without a type is UnknownMessage keyed by its first key."""
    assert one(decode_mds('{"hello": 1}', NOW)).key == "hello"


# --- properties: the decoders are total ------------------------------------------------------

scalars = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=10,
)
known_keys = st.sampled_from(
    [
        "position_response",
        "balance_response",
        "order_response",
        "fill_response",
        "authenticated",
        "subscribed",
        "ack",
        "ack_response",
        "err",
        "all_orders_response",
        "user_orders",
        "type",
        "channel",
        "contents",
        "mark_prices",
        "price",
        "symbol",
    ]
)
frames = st.dictionaries(known_keys, json_values, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Arbitrary bytes never make either decoder raise."""
    for decode in (decode_trade, decode_mds):
        events = decode(data, NOW)
        assert isinstance(events, list)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(data: str) -> None:
    """Arbitrary text never makes either decoder raise."""
    for decode in (decode_trade, decode_mds):
        assert isinstance(decode(data, NOW), list)


@settings(max_examples=150, deadline=None)
@given(frames, st.sampled_from(["", "v4_positions", "v4_balances", "mark_price", "error", "auth"]))
def test_random_json_objects_never_raise(frame: dict[str, Any], tag: str) -> None:
    """JSON objects built from known keys and random values never make a decoder raise."""
    if tag and "type" in frame:
        frame["type"] = tag
    if tag.startswith("v4_"):
        frame["channel"] = tag
    text = json.dumps(frame)
    for decode in (decode_trade, decode_mds):
        events = decode(text, NOW)
        assert events is not None
        for e in events:
            assert e.received_at == NOW


@settings(max_examples=80, deadline=None)
@given(st.fixed_dictionaries({k: scalars for k in POSITION}))
def test_random_position_payloads_never_raise(payload: dict[str, Any]) -> None:
    """position_response with random field values decodes or is BadMessage, never raises."""
    events = decode_trade(json.dumps({"position_response": payload}), NOW)
    assert len(events) == 1
    assert isinstance(events[0], PositionUpdate | BadMessage)


def test_order_response_without_remainder_or_price() -> None:
    """docs/protocol.md §5.3: no quantity_remaining and a null price still decode: a working
    order has nothing filled, a final one nothing left, and no price reads 0."""
    from riskwatch.qfex.schemas import decode_trade

    base = {"order_id": "o1", "symbol": "AAPL-USD", "quantity": 2.0, "price": None}
    (ack,) = decode_trade(json.dumps({"order_response": {**base, "status": "ACK"}}), 1.0)
    assert isinstance(ack, OrderUpdate)
    assert ack.quantity_remaining == 2.0
    assert ack.price == 0.0
    (done,) = decode_trade(json.dumps({"order_response": {**base, "status": "FILLED"}}), 1.0)
    assert isinstance(done, OrderUpdate)
    assert done.quantity_remaining == 0.0


@pytest.mark.parametrize(
    "extra",
    [
        {"ack_response": True},
        {"subscribed": "positions"},
        {"user_leverage_response": {"symbol": "BTC-USD", "leverage": 5}},
        {"err": {"error_code": "X", "message": "y"}},
    ],
)
def test_a_pulse_frame_with_another_key_yields_both_events(extra: dict[str, Any]) -> None:
    """The pulse fast path (schemas._trade_events) stops only at a frame that carries
    nothing but its pulse body."""
    body = json.loads((EXAMPLES / "server.position_response.json").read_text())
    alone = decode_trade(json.dumps(body), NOW)
    assert [type(e) for e in alone] == [PositionUpdate]
    events = decode_trade(json.dumps({**body, **extra}), NOW)
    assert type(events[0]) is PositionUpdate
    assert len(events) == 2
    assert type(events[1]) in (Ack, Subscribed, OtherReply, ErrorReply)
