"""Integration tests of the QFEX simulator over loopback with a raw websockets client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from riskwatch.qfex.auth import new_nonce, sign
from riskwatch.sim.scenario import Scenario, list_scenarios, load_scenario, parse_scenario
from riskwatch.sim.server import Simulator
from tests.support.asyncapi_schemas import (
    validate_mds_message,
    validate_server_message,
)

MS = 0.001
KEY = "pk-a"

SCENARIO: dict[str, Any] = {
    "name": "test",
    "duration": "60s",
    "symbols": [
        {"symbol": "AAPL-USD", "mark": 200},
        {"symbol": "MSFT-USD", "mark": 400},
        {"symbol": "GOLD-USD", "mark": 2000, "tick_size": 0.1},
    ],
    "accounts": [
        {
            "name": "desk-a",
            "public_key": KEY,
            "deposit": 10000,
            "jwt": "jwt-a",
            "leverage": {"MSFT-USD": 20, "GOLD-USD": 10},
            "positions": [{"symbol": "AAPL-USD", "qty": 100, "avg": 200, "leverage": 10}],
            "orders": [
                {
                    "symbol": "MSFT-USD",
                    "side": "BUY",
                    "qty": 2,
                    "price": 380,
                    "client_order_id": "b1",
                },
                {"symbol": "MSFT-USD", "side": "SELL", "qty": 1, "price": 420},
            ],
        },
        {
            "name": "desk-a-sub",
            "public_key": KEY,
            "account_id": "sub-1",
            "deposit": 500,
        },
    ],
}


def scenario(**changes: Any) -> Scenario:
    return parse_scenario({**SCENARIO, **changes})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(
        scenario(), pulse_interval=100 * MS, auth_deadline=300 * MS, ping_interval=50 * MS
    ) as s:
        yield s


def auth_frame(
    secret: str = "sim-secret",  # noqa: S107 - the documented simulator credential
    ts: int | None = None,
    nonce: str | None = None,
    key: str = KEY,
    **extra: Any,
) -> dict[str, Any]:
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or new_nonce()
    hmac = {"public_key": key, "nonce": nonce, "unix_ts": ts, "signature": sign(secret, nonce, ts)}
    return {"type": "auth", "params": {"hmac": hmac, **extra}}


class Client:
    """A raw client that validates every received frame against the AsyncAPI schemas."""

    def __init__(self, ws: ClientConnection, legacy: bool = False) -> None:
        self.ws = ws
        self.legacy = legacy

    async def send(self, kind: str, **params: Any) -> dict[str, Any]:
        frame = {"type": kind, "params": params}
        await self.ws.send(json.dumps(frame))
        return frame

    async def recv(self, wait: float = 1000 * MS) -> dict[str, Any]:
        obj = json.loads(await asyncio.wait_for(self.ws.recv(), wait))
        validate_server_message(obj, allow_legacy=self.legacy)
        return obj  # type: ignore[no-any-return]

    async def recv_key(self, key: str, wait: float = 1000 * MS) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while True:
            obj = await self.recv(max(MS, deadline - time.monotonic()))
            if key in obj:
                return obj

    async def quiet(self, key: str, seconds: float) -> list[dict[str, Any]]:
        """Return every frame with ``key`` received during ``seconds``."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                obj = await self.recv(left)
            except TimeoutError:
                break
            if key in obj:
                got.append(obj)
        return got


async def login(
    sim: Simulator, channels: tuple[str, ...] = (), **auth: Any
) -> tuple[ClientConnection, Client]:
    ws = await connect(sim.trade_url, ping_interval=None)
    client = Client(ws, legacy=sim.legacy)
    await ws.send(json.dumps(auth_frame(**auth)))
    reply = await client.recv()
    assert reply in ({"authenticated": True}, {"type": "auth", "result": "success"})
    if channels:
        await client.send("subscribe", channels=list(channels))
        for _ in channels:
            await client.recv_key("subscribed")
    return ws, client


async def drain(ws: ClientConnection, into: list[str | bytes] | None = None) -> None:
    """Read frames until the connection closes (raises ConnectionClosed) or 1 s of silence."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 1000 * MS)
        if into is not None:
            into.append(frame)


# -- authentication ----------------------------------------------------------------------


async def test_good_auth_confirms_each_channel(sim: Simulator) -> None:
    """A signed auth succeeds and a multi-channel subscribe is confirmed once per channel."""
    async with connect(sim.trade_url + f"?api_key={KEY}") as ws:
        client = Client(ws)
        await ws.send(json.dumps(auth_frame()))
        assert await client.recv() == {"authenticated": True}
        channels = ["positions", "balances", "order_responses", "fills"]
        await client.send("subscribe", channels=channels)
        got = [await client.recv_key("subscribed") for _ in channels]
        assert got == [{"subscribed": c} for c in channels]
        await client.send("unsubscribe", channels=["fills"])
        assert await client.recv_key("unsubscribed") == {"unsubscribed": "fills"}


@pytest.mark.parametrize("case", ["bad_signature", "stale", "reused"])
async def test_rejected_auth_replies_false_and_closes(sim: Simulator, case: str) -> None:
    """Bad signatures, stale timestamps and reused nonces get authenticated false and a close."""
    frame = auth_frame(secret="wrong") if case == "bad_signature" else auth_frame()
    if case == "stale":
        frame = auth_frame(ts=int(time.time()) - 3600)
    if case == "reused":
        nonce = new_nonce()
        ws0, _ = await login(sim, nonce=nonce)
        await ws0.close()
        frame = auth_frame(nonce=nonce)
    async with connect(sim.trade_url) as ws:
        await ws.send(json.dumps(frame))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 1000 * MS))
        validate_server_message(reply)
        assert reply == {"authenticated": False}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 1000 * MS)
        assert ws.close_code == 1008


async def test_auth_deadline_closes(sim: Simulator) -> None:
    """A connection that never authenticates is closed after the deadline."""
    async with connect(sim.trade_url) as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2000 * MS)
        assert 250 * MS < time.monotonic() - started < 1500 * MS


async def test_commands_before_auth_and_second_auth(sim: Simulator) -> None:
    """Commands before auth get PermissionDenied; a second auth gets AlreadyAuthenticated."""
    async with connect(sim.trade_url) as ws:
        client = Client(ws)
        await client.send("subscribe", channels=["positions"])
        err = await client.recv()
        assert err["err"]["error_code"] == "PermissionDenied"
        await ws.send(json.dumps(auth_frame()))
        assert await client.recv() == {"authenticated": True}
        await ws.send(json.dumps(auth_frame()))
        assert (await client.recv())["err"]["error_code"] == "AlreadyAuthenticated"


async def test_jwt_and_subaccount(sim: Simulator) -> None:
    """JWT auth works and account_id selects the subaccount's books."""
    async with connect(sim.trade_url) as ws:
        client = Client(ws)
        await client.send("auth", jwt="jwt-a")
        assert await client.recv() == {"authenticated": True}
    ws, client = await login(sim, ("balances",), account_id="sub-1")
    async with ws:
        balance = (await client.recv_key("balance_response"))["balance_response"]
        assert balance["deposit"] == 500.0
        assert balance["id"] == "sub-1"


async def test_server_pings_after_auth(sim: Simulator) -> None:
    """The server sends WebSocket pings once authenticated, and the client answers them."""
    async with connect(sim.trade_url) as ws:
        await asyncio.sleep(150 * MS)
        assert sim.pongs_received("desk-a") == 0
        await ws.send(json.dumps(auth_frame()))
        await asyncio.sleep(200 * MS)
        assert sim.pongs_received("desk-a") >= 2


# -- pulses and arithmetic -----------------------------------------------------------------


async def test_pulse_contents_and_cadence(sim: Simulator) -> None:
    """Each pulse is one position_response per symbol (flat ones too) then one balance."""
    ws, client = await login(sim, ("positions", "balances"))
    async with ws:
        frames: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + 450 * MS
        while time.monotonic() < deadline:
            frames.append((time.monotonic(), await client.recv()))
        balances = [t for t, f in frames if "balance_response" in f]
        assert 2 <= len(balances) <= 5
        gaps = [b - a for a, b in itertools.pairwise(balances)]
        # 100 ms cadence; the bounds leave room for a loaded test machine.
        assert sum(gaps) / len(gaps) == pytest.approx(100 * MS, abs=60 * MS)
        kinds = [next(iter(f)) for _, f in frames]
        first = kinds.index("balance_response") + 1
        cycle = kinds[first : first + 4]
        assert cycle == ["position_response"] * 3 + ["balance_response"]
        symbols = [f["position_response"]["symbol"] for _, f in frames[first : first + 3]]
        assert symbols == ["AAPL-USD", "MSFT-USD", "GOLD-USD"]
        flat = frames[first + 2][1]["position_response"]
        assert flat["position"] == 0.0


async def test_moving_a_mark_moves_pulsed_figures(sim: Simulator) -> None:
    """set_mark on a paused scenario changes the next pulse exactly as §6 says."""
    ws, client = await login(sim, ("positions", "balances"))
    async with ws:
        sim.pause()
        await sim.set_mark("AAPL-USD", 180.0)
        await sim.pulse_now()
        pos = (await client.recv_key("position_response"))["position_response"]
        assert pos["symbol"] == "AAPL-USD"
        assert pos["unrealised_pnl"] == pytest.approx(-2000.0)
        bal = (await client.recv_key("balance_response"))["balance_response"]
        # equity 8000; position margin 100×180×0.1; order margin (2×380 + 1×420)×0.05.
        assert bal["unrealised_pnl"] == pytest.approx(-2000.0)
        assert bal["position_margin"] == pytest.approx(1800.0)
        assert bal["order_margin"] == pytest.approx(59.0)
        assert bal["available_balance"] == pytest.approx(8000.0 - 1800.0 - 59.0)
        figures = sim.ledger("desk-a").figures()
        assert figures.equity == pytest.approx(8000.0)
        assert figures.maintenance_requirement == pytest.approx(1200.0)


# -- commands --------------------------------------------------------------------------------


async def test_close_position_full(sim: Simulator) -> None:
    """close_position sends ACK, a fill and a terminal FILLED, and flattens the position."""
    ws, client = await login(sim, ("order_responses", "fills"))
    async with ws:
        await client.send("close_position", symbol="AAPL-USD", client_order_id="rw-1")
        ack = (await client.recv())["order_response"]
        assert (ack["status"], ack["side"], ack["type"], ack["time_in_force"]) == (
            "ACK",
            "SELL",
            "LIMIT",
            "IOC",
        )
        assert (ack["quantity"], ack["client_order_id"]) == (100.0, "rw-1")
        assert ack["price"] == pytest.approx(199.8)
        fill = (await client.recv())["fill_response"]
        assert fill["quantity"] == 100.0
        assert fill["realised_pnl"] == pytest.approx(-20.0)
        final = (await client.recv())["order_response"]
        assert (final["status"], final["quantity_remaining"]) == ("FILLED", 0.0)
        assert final["trade_id"] == fill["trade_id"]
        assert sim.ledger("desk-a").position("AAPL-USD").qty == 0.0


async def test_close_position_partial_fill(sim: Simulator) -> None:
    """With fill_fraction 0.5 half fills and the IOC remainder is cancelled."""
    sim.fill_fraction = 0.5
    ws, client = await login(sim, ("order_responses", "fills"))
    async with ws:
        await client.send("close_position", symbol="AAPL-USD")
        statuses = []
        for _ in range(4):
            frame = await client.recv()
            body = frame.get("order_response") or frame["fill_response"]
            statuses.append((next(iter(frame)), body.get("status"), body.get("quantity_remaining")))
        assert statuses == [
            ("order_response", "ACK", 100.0),
            ("fill_response", None, None),
            ("order_response", "FILLED", 50.0),
            ("order_response", "CANCELLED", 50.0),
        ]
        assert sim.ledger("desk-a").position("AAPL-USD").qty == 50.0


async def test_close_position_without_position_is_rejected(sim: Simulator) -> None:
    """close_position on a flat symbol gets an order_response REJECTED."""
    ws, client = await login(sim, ("order_responses",))
    async with ws:
        await client.send("close_position", symbol="GOLD-USD", client_order_id="x")
        reply = (await client.recv())["order_response"]
        assert (reply["status"], reply["client_order_id"]) == ("REJECTED", "x")


async def test_order_responses_only_to_subscribers(sim: Simulator) -> None:
    """A connection not subscribed to order_responses or fills receives neither."""
    ws1, watcher = await login(sim)
    ws2, actor = await login(sim, ("order_responses",))
    async with ws1, ws2:
        await actor.send("close_position", symbol="AAPL-USD")
        assert (await actor.recv())["order_response"]["status"] == "ACK"
        assert (await actor.recv())["order_response"]["status"] == "FILLED"
        with pytest.raises(TimeoutError):
            await watcher.recv(200 * MS)


async def test_cancel_all_orders(sim: Simulator) -> None:
    """cancel_all_orders cancels each open order, then acks with the request."""
    ws, client = await login(sim, ("order_responses",))
    async with ws:
        request = await client.send("cancel_all_orders")
        first = (await client.recv())["order_response"]
        second = (await client.recv())["order_response"]
        assert {first["status"], second["status"]} == {"CANCELLED"}
        assert first["client_order_id"] == "b1"
        assert await client.recv() == {"ack": {"incoming_message": request}}
        assert sim.ledger("desk-a").open_orders() == []
        await client.send("get_user_orders")
        assert await client.recv() == {"all_orders_response": {"orders": [], "twaps": []}}


async def test_set_user_leverage_rules(sim: Simulator) -> None:
    """Leverage changes are refused with a position or orders and accepted when flat."""
    ws, client = await login(sim)
    async with ws:
        for symbol in ("AAPL-USD", "MSFT-USD"):
            await client.send("set_user_leverage", symbol=symbol, leverage=5)
            err = (await client.recv())["err"]
            assert err["error_code"] == "InvalidParameter"
            assert symbol in err["message"]
        request = await client.send("set_user_leverage", symbol="GOLD-USD", leverage=5)
        assert await client.recv() == {"ack": {"incoming_message": request}}
        assert sim.ledger("desk-a").position("GOLD-USD").leverage == 5.0
        await client.send("get_user_leverage")
        levels = (await client.recv())["user_leverage_response"]
        assert {x["symbol"]: x["leverage"] for x in levels}["GOLD-USD"] == "5"


async def test_add_order_paths(sim: Simulator) -> None:
    """LIMIT GTC rests with order margin, MARKET fills at the mark, bad symbols are refused."""
    ws, client = await login(sim, ("order_responses", "fills"))
    async with ws:
        await client.send(
            "add_order",
            symbol="GOLD-USD",
            side="BUY",
            order_type="LIMIT",
            order_time_in_force="GTC",
            quantity=1,
            price=1900,
            client_order_id="r1",
        )
        assert (await client.recv())["order_response"]["status"] == "ACK"
        assert sim.ledger("desk-a").figures().order_margin == pytest.approx(59.0 + 190.0)
        await client.send(
            "add_order",
            symbol="GOLD-USD",
            side="SELL",
            order_type="MARKET",
            order_time_in_force="IOC",
            quantity=0.5,
            price=0,
        )
        assert (await client.recv())["order_response"]["status"] == "ACK"
        assert (await client.recv())["fill_response"]["price"] == 2000.0
        assert (await client.recv())["order_response"]["status"] == "FILLED"
        await sim.set_mark("GOLD-USD", 1899.0)
        assert (await client.recv_key("fill_response"))["fill_response"]["price"] == 1900.0
        assert sim.ledger("desk-a").position("GOLD-USD").qty == pytest.approx(0.5)
        await client.send(
            "add_order",
            symbol="NOPE",
            side="BUY",
            order_type="LIMIT",
            order_time_in_force="GTC",
            quantity=1,
            price=1,
        )
        assert (await client.recv_key("order_response"))["order_response"]["status"] == "BAD_SYMBOL"


async def test_twap_validation_and_slices() -> None:
    """add_twap validates per §7 and runs reduce-only slices on scenario time."""
    async with Simulator(scenario(), speed=400.0, pulse_interval=1.0) as sim:
        ws, client = await login(sim, ("order_responses", "fills"))
        async with ws:
            await client.send(
                "add_twap",
                symbol="AAPL-USD",
                side="SELL",
                total_quantity=10,
                num_orders=1,
                order_interval_secs=30,
                reduce_only=True,
            )
            assert (await client.recv())["err"]["error_code"] == "InvalidParameter"
            await client.send(
                "add_twap",
                symbol="AAPL-USD",
                side="SELL",
                total_quantity=10,
                num_orders=2,
                order_interval_secs=30,
                reduce_only=True,
                client_twap_id="t1",
            )
            twap = (await client.recv_key("twap_response"))["twap_response"]
            assert twap["status"] == "ACTIVE"
            done = await client.recv_key("twap_response", 2000 * MS)
            assert done["twap_response"]["status"] == "COMPLETED"
            assert done["twap_response"]["filled_quantity"] == pytest.approx(10.0)
            assert sim.ledger("desk-a").position("AAPL-USD").qty == pytest.approx(90.0)


async def test_malformed_json_and_unknown_command(sim: Simulator) -> None:
    """Malformed JSON gets InvalidJSONFormat; unknown commands get InvalidParameter."""
    ws, client = await login(sim)
    async with ws:
        await ws.send("{not json")
        err = (await client.recv())["err"]
        assert (err["error_code"], err["incoming_message"]) == ("InvalidJSONFormat", "{not json")
        await client.send("explode")
        assert (await client.recv())["err"]["error_code"] == "InvalidParameter"


async def test_received_commands_records_each_frame(sim: Simulator) -> None:
    """received_commands lists every client frame of the account once, in order."""
    ws, client = await login(sim)
    async with ws:
        await client.send("cancel_all_orders")
        await client.recv_key("ack")
    frames = sim.received_commands("desk-a")
    assert [f.frame["type"] for f in frames] == ["auth", "cancel_all_orders"]
    assert frames[0].time <= frames[1].time


async def test_rate_limit_across_connections() -> None:
    """Over the per-user limit commands get RateLimited, on every connection of the user."""
    async with Simulator(scenario(), rate_limit=10.0) as sim:
        ws1, a = await login(sim)
        ws2, b = await login(sim)
        async with ws1, ws2:
            await a.send("get_user_orders")
            assert "all_orders_response" in await a.recv()
            await b.send("get_user_orders")
            assert "all_orders_response" in await b.recv()
            await b.send("get_user_orders")
            assert (await b.recv())["err"]["error_code"] == "RateLimited"
            await a.send(
                "cancel_order",
                symbol="MSFT-USD",
                order_id="b1",
                cancel_order_id_type="client_order_id",
            )
            await a.send("get_user_orders")
            assert (await a.recv())["err"]["error_code"] == "RateLimited"


async def test_cancel_on_disconnect(sim: Simulator) -> None:
    """An abrupt close cancels the account's orders only when the flag is set."""
    ws, client = await login(sim)
    await client.send("cancel_on_disconnect", cancel_on_disconnect=True)
    assert "ack" in await client.recv()
    await ws.close()  # a clean close keeps the orders
    await asyncio.sleep(50 * MS)
    assert len(sim.ledger("desk-a").open_orders()) == 2
    ws, client = await login(sim)
    await client.send("cancel_on_disconnect", cancel_on_disconnect=True)
    assert "ack" in await client.recv()
    ws.transport.abort()
    for _ in range(100):
        if not sim.ledger("desk-a").open_orders():
            break
        await asyncio.sleep(10 * MS)
    assert sim.ledger("desk-a").open_orders() == []


# -- faults -----------------------------------------------------------------------------------


async def test_fault_drop_stall_and_malformed(sim: Simulator) -> None:
    """Dropped connections close, stalled pulses pause, malformed frames arrive verbatim."""
    ws, client = await login(sim, ("balances",))
    async with ws:
        await client.recv_key("balance_response")
        sim.stall_pulses(350 * MS)
        await asyncio.sleep(110 * MS)
        assert await client.quiet("balance_response", 150 * MS) == []
        await client.recv_key("balance_response", 500 * MS)
        await sim.send_raw("desk-a", '{"position_response": {')
        while True:
            raw = await asyncio.wait_for(ws.recv(), 1000 * MS)
            if raw == '{"position_response": {':
                break
        await sim.drop_connections("desk-a")
        with pytest.raises(ConnectionClosed):
            await drain(ws)
        assert ws.close_code == 1006


async def test_an_account_reaches_only_its_own_connections(sim: Simulator) -> None:
    """Frames, raw sends and drops for one account reach its connections alone, and a
    connection leaves its account's list when it closes."""
    ws_a, client_a = await login(sim, ("balances",))
    ws_sub, client_sub = await login(sim, ("balances",), account_id="sub-1")
    async with ws_a, ws_sub:
        assert [c.account for c in sim.connections("desk-a")] == ["desk-a"]
        assert [c.account for c in sim.connections("desk-a-sub")] == ["desk-a-sub"]
        await sim.pulse_now()
        assert (await client_a.recv_key("balance_response"))["balance_response"]["id"] != "sub-1"
        assert (await client_sub.recv_key("balance_response"))["balance_response"]["id"] == "sub-1"
        await sim.send_raw("desk-a", "only-a")
        await sim.drop_connections("desk-a")
        got: list[str | bytes] = []
        with pytest.raises(ConnectionClosed):
            await drain(ws_a, got)
        assert "only-a" in got
        while sim.connections("desk-a"):
            await asyncio.sleep(MS)
        assert len(sim.connections("desk-a-sub")) == 1
        other: list[str | bytes] = []
        deadline = time.monotonic() + 300 * MS
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                other.append(await asyncio.wait_for(ws_sub.recv(), left))
        assert other, "the other account's connection still receives its pulses"
        assert "only-a" not in other


async def test_reject_and_delay_next(sim: Simulator) -> None:
    """reject_next answers once with the error (or order status); delay_next postpones."""
    ws, client = await login(sim, ("order_responses",))
    async with ws:
        sim.reject_next("close_position", "ServerError")
        await client.send("close_position", symbol="AAPL-USD")
        assert (await client.recv())["err"]["error_code"] == "ServerError"
        sim.reject_next("close_position", "RateLimited", as_order_status="RATE_LIMITED")
        await client.send("close_position", symbol="AAPL-USD", client_order_id="c2")
        reply = (await client.recv())["order_response"]
        assert (reply["status"], reply["client_order_id"]) == ("RATE_LIMITED", "c2")
        sim.delay_next("get_user_orders", 200 * MS)
        started = time.monotonic()
        await client.send("get_user_orders")
        await client.recv_key("all_orders_response")
        assert time.monotonic() - started >= 190 * MS
        await client.send("close_position", symbol="AAPL-USD")
        assert (await client.recv())["order_response"]["status"] == "ACK"


async def test_scenario_faults_fire_on_time() -> None:
    """Faults listed in a scenario fire at their scenario time."""
    faults = [
        {"at": "1s", "kind": "malformed_frame", "text": "garbage"},
        {"at": "2s", "kind": "drop_connections"},
    ]
    async with Simulator(scenario(faults=faults), speed=10.0) as sim:
        ws, _client = await login(sim)
        got: list[str | bytes] = []
        with pytest.raises(ConnectionClosed):
            await drain(ws, got)
        # 2 s of scenario time at speed 10 is 200 ms of wall time.
        assert 1.8 <= sim.scenario_time() < 6.0
        assert "garbage" in got


async def test_unknown_path_is_404(sim: Simulator) -> None:
    """Only the bare path is served on the trade gateway."""
    with pytest.raises(InvalidStatus):
        await connect(sim.trade_url + "v9/ws")


# -- legacy ----------------------------------------------------------------------------------


async def test_legacy_mode_frames() -> None:
    """Legacy mode speaks auth result, v4 envelopes, ack_response, flat errors, user_orders."""
    async with Simulator(scenario(), legacy=True, pulse_interval=100 * MS) as sim:
        ws, client = await login(sim, ("positions", "balances"))
        async with ws:
            env = await client.recv_key("contents")
            assert env["channel"] == "v4_positions"
            assert [c["symbol"] for c in env["contents"]] == ["AAPL-USD", "MSFT-USD", "GOLD-USD"]
            bal = await client.recv_key("contents")
            assert bal["channel"] == "v4_balances"
            assert bal["message_id"] == env["message_id"] + 1
            await client.send("set_user_leverage", symbol="GOLD-USD", leverage=5)
            assert await client.recv_key("ack_response") == {"ack_response": True}
            await client.send("set_user_leverage", symbol="AAPL-USD", leverage=5)
            err = await client.recv_key("error_code")
            assert (err["type"], err["error_code"]) == ("error", "InvalidParameter")
            await client.send("get_user_orders")
            orders = await client.recv_key("user_orders")
            assert orders["count"] == 2


# -- market data -----------------------------------------------------------------------------


async def test_mds_mark_price_and_market_stats() -> None:
    """mark_price arrives on subscribe and on every change; market_stats on its cadence."""
    async with Simulator(scenario(), market_stats_interval=100 * MS) as sim:
        async with connect(sim.mds_url) as ws:
            sub = {"type": "subscribe", "channels": ["mark_price"], "symbols": ["AAPL-USD"]}
            validate_mds_message(sub)
            await ws.send(json.dumps(sub))
            first = json.loads(await asyncio.wait_for(ws.recv(), 1000 * MS))
            validate_mds_message(first)
            assert (first["type"], first["symbol"], first["price"]) == (
                "mark_price",
                "AAPL-USD",
                "200.00",
            )
            await sim.set_mark("AAPL-USD", 187.5)
            await sim.set_mark("MSFT-USD", 401.0)
            moved = json.loads(await asyncio.wait_for(ws.recv(), 1000 * MS))
            assert (moved["symbol"], moved["price"]) == ("AAPL-USD", "187.50")
            stats = {"type": "subscribe", "channels": ["market_stats"], "symbols": ["*"]}
            await ws.send(json.dumps(stats))
            seen: list[dict[str, Any]] = []
            while len(seen) < 3:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 1000 * MS))
                validate_mds_message(frame)
                if frame["type"] == "market_stats":
                    seen.append(frame)
            assert [f["sequence"] for f in seen] == sorted(f["sequence"] for f in seen)
            marks = {m["symbol"]: m["price"] for m in seen[-1]["mark_prices"]}
            assert marks["AAPL-USD"] == "187.50"


# -- shipped scenarios -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list_scenarios())
async def test_shipped_scenario_runs(name: str) -> None:
    """Each shipped scenario serves valid frames for a while at high speed."""
    async with Simulator(load_scenario(name), speed=40.0, pulse_interval=50 * MS) as sim:
        channels = ("positions", "balances", "order_responses", "fills")
        ws, client = await login(sim, channels, key="qfex_pub_sim_desk_a")
        async with ws:
            try:
                frames = await client.quiet("balance_response", 300 * MS)
            except ConnectionClosed:
                frames = []  # scenarios with a drop fault may close us
        assert sim.scenario_time() > 5.0
        if name != "flaky":
            assert len(frames) >= 3
        if name == "crash":
            sim.pause()
            await sim.set_mark("AAPL-USD", sim.exchange.path_price("AAPL-USD", 40.0))
            assert sim.ledger("desk-a").figures().maintenance_usage > 0.9
