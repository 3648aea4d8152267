"""The sans-I/O trade and market-data sessions (riskwatch.qfex.session)."""

from __future__ import annotations

import json
from random import Random
from typing import Any

import pytest

from riskwatch.model import (
    Ack,
    Authenticated,
    BadMessage,
    ErrorReply,
    MarkPrice,
    OpenOrders,
    OrderUpdate,
    PositionUpdate,
    Subscribed,
)
from riskwatch.qfex import commands
from riskwatch.qfex.auth import verify
from riskwatch.qfex.schemas import decode_trade
from riskwatch.qfex.session import DEFAULT_CHANNELS, MdsSession, SessionState, TradeSession
from tests.support.asyncapi_schemas import validate_client_message, validate_mds_message
from tests.support.paths import QFEX_EXAMPLES

SECRET = "very-secret-key-123"
JWT = "eyJhbGciOiJFUzI1NiJ9.payload.sig"
T0 = 1_760_545_414.75
EXAMPLES = QFEX_EXAMPLES


def state(session: TradeSession | MdsSession) -> SessionState:
    return session.state


def make(**kwargs: Any) -> TradeSession:
    base: dict[str, Any] = {"public_key": "qfex_pub_1", "secret_key": SECRET}
    base.update(kwargs)
    if "jwt" in kwargs:
        base.pop("public_key")
        base.pop("secret_key")
    return TradeSession(nonce_factory=lambda: "ab" * 16, **base)


def sent(session: TradeSession) -> list[dict[str, Any]]:
    return [json.loads(f) for f in session.data_to_send()]


def live(session: TradeSession | None = None, now: float = T0) -> TradeSession:
    s = session or make()
    s.connection_made(now)
    s.receive_text('{"authenticated": true}', now)
    for ch in s.channels:
        s.receive_text(json.dumps({"subscribed": ch}), now)
    s.data_to_send()
    s.events_received()
    assert [r.command.kind for r in s.resolutions_received()] == ["auth"] + ["subscribe"] * len(
        s.channels
    )
    assert state(s) is SessionState.LIVE
    return s


def order_frame(cid: str, status: str = "ACK", order_id: str = "o-1") -> str:
    return json.dumps(
        {
            "order_response": {
                "order_id": order_id,
                "symbol": "AAPL-USD",
                "status": status,
                "quantity": 2.0,
                "quantity_remaining": 2.0,
                "client_order_id": cid,
            }
        }
    )


# --- auth and subscribe ---------------------------------------------------------------


def test_connection_made_queues_valid_hmac_auth() -> None:
    """connection_made queues one signed HMAC auth frame using int(now) seconds."""
    s = make(account_id="sub-1")
    assert state(s) is SessionState.CONNECTING
    s.connection_made(T0)
    assert state(s) is SessionState.AUTHENTICATING
    (frame,) = sent(s)
    validate_client_message(frame)
    h = frame["params"]["hmac"]
    assert h["unix_ts"] == int(T0)
    assert verify(SECRET, h["nonce"], h["unix_ts"], h["signature"])
    assert frame["params"]["account_id"] == "sub-1"


def test_jwt_auth_frame() -> None:
    """A jwt session authenticates with the jwt form."""
    s = make(jwt=JWT)
    s.connection_made(T0)
    (frame,) = sent(s)
    validate_client_message(frame)
    assert frame["params"] == {"jwt": JWT}


def test_auth_then_one_subscribe_per_channel_then_live() -> None:
    """Auth success queues one subscribe per channel; all confirmations make it LIVE."""
    s = make()
    s.connection_made(T0)
    s.data_to_send()
    s.receive_text('{"authenticated": true}', T0 + 0.1)
    assert state(s) is SessionState.SUBSCRIBING
    frames = sent(s)
    assert [f["params"]["channels"] for f in frames] == [[c] for c in DEFAULT_CHANNELS]
    for f in frames:
        validate_client_message(f)
    for ch in DEFAULT_CHANNELS[:-1]:
        s.receive_text(json.dumps({"subscribed": ch}), T0 + 0.2)
        assert state(s) is SessionState.SUBSCRIBING
    s.receive_text(json.dumps({"subscribed": DEFAULT_CHANNELS[-1]}), T0 + 0.3)
    assert state(s) is SessionState.LIVE
    events = s.events_received()
    assert isinstance(events[0], Authenticated)
    assert [getattr(e, "channel", None) for e in events[1:]] == list(DEFAULT_CHANNELS)
    assert s.pending == ()


def test_legacy_auth_success_also_subscribes() -> None:
    """The legacy {"type":"auth","result":"success"} reply is a success too."""
    s = make(channels=["positions"])
    s.connection_made(T0)
    s.data_to_send()
    s.receive_text((EXAMPLES / "server.auth.legacy.json").read_text(), T0)
    assert state(s) is SessionState.SUBSCRIBING
    assert sent(s) == [json.loads(commands.subscribe("positions"))]


def test_data_event_implies_subscription() -> None:
    """A position pulse during SUBSCRIBING confirms the positions channel."""
    s = make(channels=["positions"])
    s.connection_made(T0)
    s.receive_text('{"authenticated": true}', T0)
    s.receive_text((EXAMPLES / "server.position_response.json").read_text(), T0 + 1)
    assert state(s) is SessionState.LIVE
    assert isinstance(s.events_received()[-1], PositionUpdate)


def test_no_channels_goes_live_at_auth() -> None:
    """With no channels the session is LIVE as soon as auth succeeds."""
    s = make(channels=[])
    s.connection_made(T0)
    s.receive_text('{"authenticated": true}', T0)
    assert state(s) is SessionState.LIVE


@pytest.mark.parametrize(
    "reply",
    [
        '{"authenticated": false}',
        '{"type": "auth", "result": "failed"}',
        '{"err": {"error_code": "PermissionDenied", "message": "bad signature"}}',
        '{"type": "error", "error_code": "InvalidParameter"}',
    ],
)
def test_auth_rejected(reply: str) -> None:
    """A negative auth reply or an err while authenticating means AUTH_REJECTED."""
    s = make()
    s.connection_made(T0)
    s.data_to_send()
    s.receive_text(reply, T0 + 1)
    assert state(s) is SessionState.AUTH_REJECTED
    assert s.data_to_send() == []
    (event,) = s.events_received()
    assert isinstance(event, Authenticated | ErrorReply)
    if isinstance(event, ErrorReply):
        assert isinstance(event.incoming_message, dict)
        assert event.incoming_message["type"] == "auth"


def test_already_authenticated_err_proceeds() -> None:
    """An AlreadyAuthenticated err while authenticating proceeds to subscribing."""
    s = make(channels=["balances"])
    s.connection_made(T0)
    s.receive_text('{"err": {"error_code": "AlreadyAuthenticated"}}', T0)
    assert state(s) is SessionState.SUBSCRIBING


def test_bad_frames_do_not_move_state() -> None:
    """Garbage while authenticating is reported as BadMessage and changes nothing."""
    s = make()
    s.connection_made(T0)
    s.receive_text(b"\xff{{", T0)
    assert state(s) is SessionState.AUTHENTICATING
    assert isinstance(s.events_received()[0], BadMessage)


def test_connection_lost_closes_and_expires_pending() -> None:
    """connection_lost closes the session and reports pending commands as expired."""
    s = live()
    s.send(commands.cancel_all_orders(), T0)
    s.connection_lost()
    assert state(s) is SessionState.CLOSED
    assert [c.kind for c in s.expired_commands()] == ["cancel_all_orders"]
    s.receive_text('{"authenticated": true}', T0)
    assert s.events_received() == []


# --- sending and correlation -------------------------------------------------------------


def test_send_queues_frames_in_order() -> None:
    """send queues the frame text unchanged, in order."""
    s = live()
    frames = [commands.cancel_all_orders(), commands.close_position("AAPL-USD", "rw-1")]
    for f in frames:
        s.send(f, T0)
    assert s.data_to_send() == frames
    assert [c.kind for c in s.pending] == ["cancel_all_orders", "close_position"]


def test_send_refuses_cancel_on_disconnect() -> None:
    """The session never sends cancel_on_disconnect."""
    s = live()
    frame = '{"type":"cancel_on_disconnect","params":{"cancel_on_disconnect":true}}'
    with pytest.raises(ValueError, match="cancel_on_disconnect"):
        s.send(frame, T0)
    assert s.data_to_send() == []


def test_whole_session_never_emits_cancel_on_disconnect() -> None:
    """No frame of a full auth/subscribe/command session is cancel_on_disconnect."""
    s = make()
    s.connection_made(T0)
    out = s.data_to_send()
    s.receive_text('{"authenticated": true}', T0)
    out += s.data_to_send()
    s.send(commands.cancel_all_orders(), T0)
    out += s.data_to_send()
    assert all("cancel_on_disconnect" not in f for f in out)


@pytest.mark.parametrize("state_of", ["new", "authenticating", "rejected", "closed"])
def test_send_refused_before_auth(state_of: str) -> None:
    """Commands cannot be sent before auth succeeds or after close."""
    s = make()
    if state_of != "new":
        s.connection_made(T0)
    if state_of == "rejected":
        s.receive_text('{"authenticated": false}', T0)
    if state_of == "closed":
        s.connection_lost()
    with pytest.raises(RuntimeError, match="state"):
        s.send(commands.cancel_all_orders(), T0)


def test_send_rejects_non_command() -> None:
    """send refuses text that is not a command object."""
    s = live()
    with pytest.raises(ValueError, match="command"):
        s.send("[1]", T0)
    with pytest.raises(ValueError, match="JSON"):
        s.send("nope", T0)


def test_err_without_echo_goes_to_oldest_pending() -> None:
    """An err with no incoming_message is attributed to the oldest pending command."""
    s = live()
    close = commands.close_position("AAPL-USD", "rw-aaa")
    s.send(close, T0)
    s.send(commands.cancel_all_orders(), T0 + 1)
    s.receive_text('{"err": {"error_code": "InvalidOrder", "message": "no position"}}', T0 + 2)
    (event,) = s.events_received()
    assert isinstance(event, ErrorReply)
    assert event.incoming_message == json.loads(close)
    assert event.error_code == "InvalidOrder"
    (res,) = s.resolutions_received()
    assert (res.command.kind, res.command.client_order_id, res.ok) == (
        "close_position",
        "rw-aaa",
        False,
    )
    assert [c.kind for c in s.pending] == ["cancel_all_orders"]


def test_err_with_echo_goes_to_echoed_command() -> None:
    """An err echoing a command resolves that command, not the oldest, and stays as sent."""
    s = live()
    s.send(commands.cancel_all_orders(), T0)
    lev = commands.set_user_leverage("AAPL-USD", 5)
    s.send(lev, T0)
    s.receive_text(
        json.dumps(
            {"err": {"error_code": "InvalidParameter", "incoming_message": json.loads(lev)}}
        ),
        T0,
    )
    (event,) = s.events_received()
    assert isinstance(event, ErrorReply)
    assert event.incoming_message == json.loads(lev)
    assert [c.kind for c in s.pending] == ["cancel_all_orders"]


def test_err_with_no_pending_passes_through() -> None:
    """An err when nothing is pending is emitted unchanged."""
    s = live()
    s.receive_text('{"err": {"error_code": "RateLimited"}}', T0)
    assert s.events_received() == [ErrorReply("RateLimited", None, None, T0)]
    assert s.resolutions_received() == []


def test_order_response_resolves_by_client_order_id() -> None:
    """An order_response with our client_order_id resolves that command only."""
    s = live()
    s.send(commands.cancel_all_orders(), T0)
    s.send(commands.close_position("AAPL-USD", "rw-close"), T0)
    s.receive_text(order_frame("someone-else"), T0)
    assert len(s.pending) == 2
    s.receive_text(order_frame("rw-close"), T0 + 0.5)
    (res,) = s.resolutions_received()
    assert res.command.kind == "close_position"
    assert res.ok
    assert isinstance(res.reply, OrderUpdate)
    assert [c.kind for c in s.pending] == ["cancel_all_orders"]


def test_cancel_order_resolved_by_order_id() -> None:
    """A cancel_order by order_id is resolved by the order_response of that order."""
    s = live()
    s.send(commands.cancel_order("AAPL-USD", "o-9"), T0)
    s.receive_text(order_frame("", "CANCELLED", order_id="o-9"), T0)
    (res,) = s.resolutions_received()
    assert res.command.kind == "cancel_order"


def test_ack_resolves_oldest_acked_command() -> None:
    """A bare ack resolves the oldest command that expects an ack, skipping others."""
    s = live()
    s.send(commands.close_position("AAPL-USD", "rw-1"), T0)
    s.send(commands.cancel_all_orders(), T0)
    s.receive_text('{"ack_response": true}', T0)
    (res,) = s.resolutions_received()
    assert res.command.kind == "cancel_all_orders"
    assert isinstance(res.reply, Ack)
    assert [c.kind for c in s.pending] == ["close_position"]


def test_ack_with_echo_resolves_that_command() -> None:
    """An ack echoing set_user_leverage resolves it even when cancel_all_orders is older."""
    s = live()
    s.send(commands.cancel_all_orders(), T0)
    lev = commands.set_user_leverage("AAPL-USD", 3)
    s.send(lev, T0)
    s.receive_text(json.dumps({"ack": {"incoming_message": json.loads(lev)}}), T0)
    (res,) = s.resolutions_received()
    assert res.command.kind == "set_user_leverage"


def test_ack_response_false_is_error_on_oldest() -> None:
    """ack_response false resolves the oldest command as failed."""
    s = live()
    s.send(commands.set_user_leverage("AAPL-USD", 3), T0)
    s.receive_text('{"ack_response": false}', T0)
    (res,) = s.resolutions_received()
    assert res.command.kind == "set_user_leverage"
    assert not res.ok


def test_open_orders_resolves_get_user_orders() -> None:
    """all_orders_response resolves the oldest get_user_orders."""
    s = live()
    s.send(commands.get_user_orders(), T0)
    s.receive_text('{"all_orders_response": {"orders": [], "twaps": []}}', T0)
    (res,) = s.resolutions_received()
    assert isinstance(res.reply, OpenOrders)
    assert s.pending == ()


def test_named_reply_resolves_its_command() -> None:
    """user_leverage_response resolves get_user_leverage."""
    s = live()
    s.send(commands.get_user_leverage(), T0)
    s.receive_text('{"user_leverage_response": []}', T0)
    assert [r.command.kind for r in s.resolutions_received()] == ["get_user_leverage"]


def test_pending_commands_expire() -> None:
    """A command unanswered past pending_timeout leaves the FIFO and escapes later blame."""
    s = live(make(pending_timeout=10.0))
    s.send(commands.cancel_all_orders(), T0)
    s.send(commands.close_position("AAPL-USD", "rw-2"), T0 + 8)
    s.receive_text('{"err": {"error_code": "ServerError"}}', T0 + 12)
    assert [c.kind for c in s.expired_commands()] == ["cancel_all_orders"]
    (event,) = s.events_received()
    assert isinstance(event, ErrorReply)
    assert isinstance(event.incoming_message, dict)
    assert event.incoming_message["type"] == "close_position"


def test_subscribe_error_marks_channel_failed_and_goes_live() -> None:
    """An err for a subscribe marks that channel failed; the rest still reach LIVE."""
    s = make(channels=["positions", "stop_orders"])
    s.connection_made(T0)
    s.receive_text('{"authenticated": true}', T0)
    s.receive_text('{"subscribed": "positions"}', T0)
    s.receive_text('{"err": {"error_code": "InvalidParameter"}}', T0)
    assert s.failed_channels == {"stop_orders"}
    assert state(s) is SessionState.LIVE


# --- secrets and construction ------------------------------------------------------------


def test_secret_never_in_repr_or_pending() -> None:
    """Neither the HMAC secret nor the JWT shows in repr or pending frames."""
    s = make()
    s.connection_made(T0)
    assert SECRET not in repr(s)
    assert SECRET not in str(s.pending)
    j = make(jwt=JWT)
    j.connection_made(T0)
    assert JWT not in repr(j)
    assert JWT not in str(j.pending)
    assert "qfex_pub_1" in repr(s)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"public_key": "p", "secret_key": None},
        {"public_key": None, "secret_key": "s"},
        {"public_key": "p", "secret_key": "s", "jwt": "j"},
        {"public_key": "p", "secret_key": "s", "channels": ["orders"]},
        {"public_key": "p", "secret_key": "s", "channels": ["fills", "fills"]},
    ],
)
def test_bad_construction(kwargs: dict[str, Any]) -> None:
    """Missing or conflicting credentials and bad channels raise ValueError."""
    with pytest.raises(ValueError) as info:
        TradeSession(**kwargs)
    assert "s" != str(info.value)


# --- MDS ---------------------------------------------------------------------------------


def test_mds_session_subscribes_one_frame_and_decodes() -> None:
    """MdsSession sends one mark_price frame for all symbols and decodes marks."""
    m = MdsSession(["AAPL-USD", "TSLA-USD", "AAPL-USD"])
    m.connection_made(T0)
    (frame,) = [json.loads(f) for f in m.data_to_send()]
    validate_mds_message(frame)
    assert frame == {
        "type": "subscribe",
        "channels": ["mark_price"],
        "symbols": ["AAPL-USD", "TSLA-USD"],
    }
    m.receive_text((EXAMPLES / "server.mds.mark_price.json").read_bytes(), T0 + 1)
    (event,) = m.events_received()
    assert isinstance(event, MarkPrice)
    assert event.received_at == T0 + 1


def test_mds_watch_subscribes_new_symbols_only() -> None:
    """watch queues a frame with only the symbols not yet watched, once connected."""
    m = MdsSession()
    m.watch(["A-USD"])
    assert m.data_to_send() == []
    m.connection_made(T0)
    assert len(m.data_to_send()) == 1
    m.watch(["A-USD", "B-USD"])
    assert [json.loads(f)["symbols"] for f in m.data_to_send()] == [["B-USD"]]
    m.watch(["B-USD"])
    assert m.data_to_send() == []
    assert m.symbols == ("A-USD", "B-USD")


def test_mds_without_symbols_sends_nothing() -> None:
    """With no symbols watched, connection_made sends nothing (an empty list is invalid)."""
    m = MdsSession()
    m.connection_made(T0)
    assert m.data_to_send() == []
    m.connection_lost()
    assert state(m) is SessionState.CLOSED


def test_subscribed_event_types() -> None:
    """Subscribed events come through events_received during subscribing."""
    s = make(channels=["fills"])
    s.connection_made(T0)
    s.receive_text('{"authenticated": true}', T0)
    s.receive_text('{"subscribed": "fills"}', T0)
    assert [type(e) for e in s.events_received()] == [Authenticated, Subscribed]


def _position_text(symbol: str, position: float, *, indent: int | None = None) -> str:
    body = json.loads((EXAMPLES / "server.position_response.json").read_text())
    body["position_response"].update(
        symbol=symbol, position=position, average_price=100.0, unrealised_pnl=position
    )
    return json.dumps(body, indent=indent)


def test_repeated_position_frames_give_the_events_of_a_full_decode() -> None:
    """Once LIVE, a position frame with its symbol's last text is not decoded again
    (riskwatch/qfex/session.py, receive_text): whatever the order of repeats, changes,
    other frames and bad ones, every frame's events equal those of decoding it, each
    at its own receive time."""
    pool = [
        _position_text(symbol, size, indent=indent)
        for symbol in ("AAPL-USD", "BTC-USD", "ETH-USD")
        for size in (0.0, 2.0, -3.5)
        for indent in (None, 2)
    ]
    pool += [
        (EXAMPLES / "server.balance_response.json").read_text(),
        '{"position_response": null}',
        '{"position_response": {"symbol": "AAPL-USD"}}',
        '{"something_new": 1}',
    ]
    s = live()
    rng = Random(7)
    for i in range(2000):
        # A fresh string each time, as read from a socket.
        text = "".join(list(rng.choice(pool)))
        now = T0 + 1 + i * 0.01
        s.receive_text(text, now)
        assert s.events_received() == decode_trade(text, now)
        assert state(s) is SessionState.LIVE
    assert len(s._pulse_by_text) <= 3  # one text kept per symbol
    assert set(s._pulse_text_of) <= {"AAPL-USD", "BTC-USD", "ETH-USD"}


def test_a_repeated_position_frame_is_stamped_with_its_own_receive_time() -> None:
    text = _position_text("AAPL-USD", 2.0)
    s = live()
    s.receive_text(text, T0 + 1)
    (first,) = s.events_received()
    s.receive_text("".join(list(text)), T0 + 2)
    (again,) = s.events_received()
    assert isinstance(first, PositionUpdate)
    assert isinstance(again, PositionUpdate)
    assert (first.received_at, again.received_at) == (T0 + 1, T0 + 2)
    assert first.position == again.position == 2.0


def test_position_frames_before_live_still_count_as_subscription_data() -> None:
    """Before LIVE every frame is decoded and handled: a position pulse still tells the
    subscribing session that the positions channel delivers."""
    s = make(channels=["positions", "balances"])
    s.connection_made(T0)
    s.receive_text('{"authenticated": true}', T0)
    text = _position_text("AAPL-USD", 2.0)
    s.receive_text(text, T0 + 1)
    s.receive_text(text, T0 + 2)
    assert [type(e) for e in s.events_received()][-2:] == [PositionUpdate, PositionUpdate]
    assert state(s) is SessionState.SUBSCRIBING
    s.receive_text((EXAMPLES / "server.balance_response.json").read_text(), T0 + 3)
    assert state(s) is SessionState.LIVE
