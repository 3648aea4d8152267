"""The daemon against the simulator in each documented protocol alternative
(docs/protocol.md §16, docs/simulator.md "Modes"): upgrade credentials, proxies,
sparse order replies, missing subscription confirmations, a slow pulse cadence, fees
reported apart, expiring JWTs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from riskwatch import __version__
from riskwatch.actions.model import ActionEvent
from riskwatch.config import TRANSPORTS, load_config
from riskwatch.daemon.app import Daemon
from riskwatch.notify.notice import AlertNotice
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.support.asyncapi_schemas import validate_client_message
from tests.support.daemon_harness import MS, wait_for

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"
PUBLIC_KEY = "qfex_pub_sim_desk_a"

RULES_CLOSE = """
rules:
  - name: LossCritical
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [{close_position: largest_loss}]
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(secret: str, exp: float, sub: str = PUBLIC_KEY) -> str:
    """An HS256 JWT as the simulator's signed-JWT mode expects (made here, independently)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": sub, "exp": int(exp)}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


TRANSPORT: list[str] = ["websockets"]
"""The transport the daemons of the running test use (the ``transport`` fixture)."""


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Every protocol mode runs on each WebSocket library (riskwatch/qfex/transport.py)."""
    TRANSPORT[0] = request.param
    return str(request.param)


@asynccontextmanager
async def running(
    tmp: Path,
    *,
    sim_options: dict[str, Any] | None = None,
    exchange: str = "  stale_after: 3s\n",
    account: str | None = None,
    rules: str = "rules: []\n",
    taker_fee: float = 0.0,
    before_start: Any = None,
    wait_pulse: bool = True,
    secret: str | None = None,
) -> AsyncIterator[tuple[Simulator, Daemon, str]]:
    """The crash scenario (paused) on a simulator with ``sim_options``, and a daemon."""
    base = load_scenario("crash")
    options = {"pulse_interval": 0.1, **(sim_options or {})}
    overrides = dict(options.pop("symbol_refdata", {}))
    if options.pop("no_resting_orders", False):
        accounts = tuple(dataclasses.replace(a, orders=()) for a in base.accounts)
        base = dataclasses.replace(base, accounts=accounts)
    symbols = tuple(
        dataclasses.replace(spec, market_hours=ALL_WEEK, **overrides) for spec in base.symbols
    )
    scenario = dataclasses.replace(base, taker_fee=taker_fee, symbols=symbols)
    secret = secret or secrets.token_hex(16)
    secret_file = tmp / "qfex_secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    fail_refdata = int(options.pop("fail_refdata_first", 0))
    async with Simulator(scenario, {PUBLIC_KEY: secret}, **options) as sim:
        sim.pause()
        sim.fail_refdata(fail_refdata)
        exchange = exchange.replace("{rest}", sim.rest_url)
        if "rest_url" not in exchange:  # reference data from the simulator, never the exchange
            exchange += f"  rest_url: {sim.rest_url}\n"
        credentials = account or (
            f"    public_key: {PUBLIC_KEY}\n    secret_key_file: {secret_file}\n"
        )
        (tmp / "rules.yaml").write_text(rules, encoding="utf-8")
        text = (
            f"exchange:\n  url: {sim.trade_url}\n  transport: {TRANSPORT[0]}\n{exchange}"
            f"accounts:\n  - name: {ACCOUNT}\n{credentials}"
            f"rules: [{tmp / 'rules.yaml'}]\n"
            "actions:\n  mode: armed\n"
            "http:\n  listen: 127.0.0.1:0\n"
            f"state:\n  path: {tmp / 'state.db'}\n"
        )
        path = tmp / "riskwatch.yaml"
        path.write_text(text, encoding="utf-8")
        config = load_config(path)
        store = Store.open(config.state.path)
        d = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
        if before_start is not None:
            before_start(d)
        await d.start()
        try:
            if wait_pulse:
                await wait_for(lambda: d.accounts[ACCOUNT].core.snapshot.last_pulse_at is not None)
            yield sim, d, secret
        finally:
            await d.stop()
            store.close()
        for f in sim.received_commands(ACCOUNT):
            validate_client_message(f.frame)


def _metric(d: Daemon, name: str, **labels: str) -> float | None:
    return d.registry.get_sample_value(name, {"account": ACCOUNT, **labels})


def _confirmed_closes(d: Daemon) -> float:
    value = d.registry.get_sample_value(
        "riskwatch_actions_total",
        {"account": ACCOUNT, "action": "close_position", "result": "confirmed"},
    ) or d.registry.get_sample_value(
        "riskwatch_actions_total", {"action": "close_position", "result": "confirmed"}
    )
    return value or 0.0


# --- §1 upgrade credentials -------------------------------------------------------------


async def test_api_key_on_the_upgrade_is_sent(tmp_path: Path) -> None:
    """A gateway requiring ``?api_key=`` accepts riskwatch; User-Agent names riskwatch."""
    async with running(tmp_path, sim_options={"upgrade_auth": "api_key"}) as (sim, d, _):
        assert not sim.upgrades_refused
        status = d.accounts[ACCOUNT].status
        assert status is not None
        assert status.authenticated
        assert sim.upgrade_headers[-1]["user-agent"] == f"riskwatch/{__version__}"


async def test_hmac_headers_on_the_upgrade_each_nonce_once(tmp_path: Path) -> None:
    """A gateway requiring the CLI's x-qfex headers accepts riskwatch; the upgrade and the
    auth frame sign different nonces (the simulator refuses a reused one)."""
    async with running(tmp_path, sim_options={"upgrade_auth": "hmac_headers"}) as (sim, d, _):
        assert not sim.upgrades_refused
        headers = sim.upgrade_headers[-1]
        auth = sim.received_commands(ACCOUNT)[0].frame
        assert auth["type"] == "auth"
        assert headers["x-qfex-nonce"] != auth["params"]["hmac"]["nonce"]
        assert headers["x-qfex-public-key"] == PUBLIC_KEY
        status = d.accounts[ACCOUNT].status
        assert status is not None
        assert status.authenticated


async def test_upgrade_without_credentials_is_refused_loudly(tmp_path: Path) -> None:
    """``upgrade_auth: none`` against a gateway that wants headers: HTTP 401, reported as an
    authentication rejection in /readyz."""
    async with running(
        tmp_path,
        sim_options={"upgrade_auth": "hmac_headers"},
        exchange="  stale_after: 3s\n  upgrade_auth: none\n",
        wait_pulse=False,
    ) as (sim, d, _):
        await wait_for(lambda: bool(sim.upgrades_refused))
        await wait_for(
            lambda: (conn := d.accounts[ACCOUNT].status) is not None and conn.auth_rejected
        )
        ok, reasons = d.readiness()
        assert not ok
        assert any("authentication rejected" in r for r in reasons)
        status = d.accounts[ACCOUNT].status
        assert status is not None
        assert "401" in status.last_error


async def _connect_proxy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[str]
) -> None:
    """A minimal HTTP CONNECT proxy: one tunnel per client connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode()
    seen.append(line)
    host, port = line.split()[1].rsplit(":", 1)
    up_reader, up_writer = await asyncio.open_connection(host, int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_proxy_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """HTTPS_PROXY is honoured: the trade connection goes through the proxy (websockets,
    which tunnels ws:// too); aiohttp tunnels wss:// only, so this loopback ws://
    connection goes direct (riskwatch/qfex/transport.py)."""
    seen: list[str] = []
    server = await asyncio.start_server(lambda r, w: _connect_proxy(r, w, seen), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        async with running(tmp_path) as (sim, _d, _):
            trade_port = sim.trade_url.rsplit(":", 1)[1].strip("/")
            through = [line for line in seen if f"127.0.0.1:{trade_port}" in line]
            if transport == "websockets":
                assert through, seen
            else:
                assert through == [], seen
            assert all(line.startswith("CONNECT ") for line in seen)
    finally:
        server.close()


# --- §5.3 sparse order replies ----------------------------------------------------------


async def test_order_responses_without_remainder_or_price(tmp_path: Path) -> None:
    """order_responses without quantity_remaining and with price null decode, and the close
    they answer is confirmed; no frame counts as bad."""
    async with running(tmp_path, sim_options={"sparse_orders": True}, rules=RULES_CLOSE) as (
        sim,
        d,
        _,
    ):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: _confirmed_closes(d) == 1)
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0
        assert (_metric(d, "riskwatch_messages_total", kind="order") or 0.0) >= 2
        assert _metric(d, "riskwatch_messages_total", kind="bad") in (None, 0.0)


# --- §4 subscriptions -------------------------------------------------------------------


def _fast_subscribe_timeout(d: Daemon) -> None:
    d.accounts[ACCOUNT].link.subscribe_timeout = 0.3


async def test_missing_confirmation_is_retried_reported_and_does_not_lock(tmp_path: Path) -> None:
    """fills and order_responses are never confirmed: they are subscribed again, /readyz and a
    metric say so, and a protective close still goes out and completes."""
    async with running(
        tmp_path,
        sim_options={"unconfirmed_channels": frozenset({"fills", "order_responses"})},
        rules=RULES_CLOSE,
        before_start=_fast_subscribe_timeout,
    ) as (sim, d, _):
        await wait_for(
            lambda: _metric(d, "riskwatch_subscription_unconfirmed", channel="fills") == 1.0
        )
        assert _metric(d, "riskwatch_subscription_unconfirmed", channel="positions") == 0.0
        ok, reasons = d.readiness()
        assert not ok
        assert any("subscription not confirmed: order_responses, fills" in r for r in reasons)
        await wait_for(lambda: (_metric(d, "riskwatch_resubscribes") or 0.0) >= 2)
        subs = [
            f.frame["params"]["channels"]
            for f in sim.received_commands(ACCOUNT)
            if f.frame.get("type") == "subscribe"
        ]
        assert subs.count(["fills"]) >= 2
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: _confirmed_closes(d) == 1)
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0


# --- §4.2 cadence ------------------------------------------------------------------------


async def test_slow_cadence_does_not_flap_stale(tmp_path: Path) -> None:
    """Pulses 6 s apart (the docs also say 10 s) with no stale_after configured: the data
    never counts as stale, and stale_after follows the measured cadence (3 × 6 s)."""
    async with running(
        tmp_path, sim_options={"pulse_interval": 6.0}, exchange="", wait_pulse=False
    ) as (_sim, d, _):
        core = d.accounts[ACCOUNT].core
        await wait_for(lambda: core.snapshot.last_pulse_at is not None, 8000 * MS)
        stale_seen = False
        deadline = time.monotonic() + 13.5
        while time.monotonic() < deadline:
            stale_seen = stale_seen or core.is_stale(d.clock.now())
            await asyncio.sleep(100 * MS)
        assert not stale_seen
        interval = _metric(d, "riskwatch_pulse_interval_seconds")
        assert interval == pytest.approx(6.0, abs=0.5)
        assert interval is not None
        assert _metric(d, "riskwatch_stale_after_seconds") == pytest.approx(3 * interval)


# --- §6 fees -------------------------------------------------------------------------------


async def test_fees_reported_apart_enter_equity(tmp_path: Path) -> None:
    """The simulator keeps fees out of realised PnL and reports them in the balance: the
    daemon's equity still equals the exchange's, and the available-balance drift is 0."""
    async with running(
        tmp_path, sim_options={"fees_apart": True}, rules=RULES_CLOSE, taker_fee=0.001
    ) as (sim, d, _):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: _confirmed_closes(d) == 1)
        ledger = sim.ledger(ACCOUNT)
        assert ledger.fees > 30.0  # 0.1 % of 250 × 150
        expected = ledger.figures().equity

        def agrees() -> bool:
            figures = d.accounts[ACCOUNT].core.figures_at(d.clock.now())
            bal = d.accounts[ACCOUNT].core.snapshot.balance
            return (
                figures is not None
                and bal is not None
                and bal.fees is not None
                and abs(bal.fees - ledger.fees) < 1e-6
                and abs(cast(float, figures.account["equity"]) - expected) < 1e-6
            )

        await wait_for(agrees)
        drift = _metric(d, "riskwatch_available_balance_drift_usd")
        assert drift == pytest.approx(0.0, abs=1e-6)


# --- §2.1 JWT lifecycle ------------------------------------------------------------------


async def test_jwt_file_is_read_again_before_reconnecting(tmp_path: Path) -> None:
    """The token in jwt_file expires; the gateway closes the connection; riskwatch reads the
    file again and reconnects with the new token (Bearer on the upgrade too). The expiry is
    a gauge, and a warning precedes it."""
    secret = secrets.token_hex(16)
    jwt_file = tmp_path / "token.jwt"
    first_exp = int(time.time()) + 3
    jwt_file.write_text(make_jwt(secret, first_exp) + "\n", encoding="utf-8")
    notices: list[AlertNotice] = []

    def capture(d: Daemon) -> None:
        enqueue = d.notifier.enqueue_alert

        def spy(notice: AlertNotice) -> bool:
            notices.append(notice)
            return enqueue(notice)

        d.jwt_watch.notifier.enqueue_alert = spy  # type: ignore[method-assign]

    async with running(
        tmp_path,
        sim_options={"signed_jwt": True, "upgrade_auth": "bearer"},
        account=f"    jwt_file: {jwt_file}\n",
        secret=secret,
        before_start=capture,
    ) as (sim, d, _):
        assert _metric(d, "riskwatch_jwt_expiry_timestamp_seconds") == first_exp
        await wait_for(lambda: d.accounts[ACCOUNT].link.expiry_state == "expiring", 3000 * MS)
        second_exp = int(time.time()) + 3600
        jwt_file.write_text(make_jwt(secret, second_exp) + "\n", encoding="utf-8")

        def reconnected() -> bool:
            st = d.accounts[ACCOUNT].status
            return st is not None and st.reconnects >= 1 and st.authenticated

        await wait_for(reconnected, 10_000 * MS)
        assert _metric(d, "riskwatch_jwt_expiry_timestamp_seconds") == second_exp
        await wait_for(lambda: d.accounts[ACCOUNT].link.expiry_state == "ok", 3000 * MS)
        assert sim.upgrade_headers[-1]["authorization"].startswith("Bearer ")
        # The warning reached the notification path, then its resolution.
        kinds = [(n.rule, n.status, n.severity) for n in notices]
        assert ("JwtExpiring", "firing", "warning") in kinds
        assert kinds[-1] == ("JwtExpiring", "resolved", "warning")
        assert "jwt_file" not in repr(sim.upgrade_headers)


# --- §11 reference data -------------------------------------------------------------------

ALL_WEEK = {
    "tz": "UTC",
    **{
        day: {"open": "00:00:00", "close": "24:00:00"}
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    },
}


async def test_refdata_fetched_over_http_retried_and_reported(tmp_path: Path) -> None:
    """GET /refdata fails twice (HTTP 503): the failures are counted, the daemon keeps
    running, and the data arrives on a later attempt; leverage levels come over the trade
    connection; the market and position-limit gauges follow."""

    async with running(
        tmp_path,
        sim_options={"fail_refdata_first": 2},
        exchange="  stale_after: 3s\n  rest_url: {rest}\n  refdata_interval: 1s\n",
    ) as (sim, d, _):
        await wait_for(lambda: (_scalar(d, "riskwatch_refdata_symbols") or 0.0) == 2.0, 12_000 * MS)
        assert (_scalar(d, "riskwatch_refdata_fetch_failures") or 0.0) >= 2.0
        assert sim.refdata_requests >= 3
        assert d.refdata.refdata.symbols[SYMBOL].lot_size == 0.001
        await wait_for(lambda: SYMBOL in d.refdata.refdata.levels)
        assert _scalar(d, "riskwatch_market_open", symbol=SYMBOL) == 1.0
        to_close = _scalar(d, "riskwatch_seconds_to_market_close", symbol=SYMBOL)
        assert to_close is not None
        assert 0 < to_close <= 86400
        limit = _metric(d, "riskwatch_position_limit_at_close_usd", symbol=SYMBOL)
        headroom = _metric(d, "riskwatch_position_limit_headroom_at_close_usd", symbol=SYMBOL)
        # The simulator's 10x level caps 1 000 000 USD; the close is overnight (50 %).
        assert limit == pytest.approx(500_000.0)
        assert headroom == pytest.approx(500_000.0 - 250 * 200.0)

        def row() -> dict[str, Any]:
            figures = d.accounts[ACCOUNT].core.figures_at(d.clock.now())
            return dict(figures.positions[SYMBOL]) if figures is not None else {}

        # The same figures reach the rules (rules/market_close.yaml reads them).
        await wait_for(lambda: row().get("position_limit_at_close") is not None)
        assert row()["market_open"] == 1.0
        assert row()["position_limit_headroom_at_close"] == pytest.approx(
            500_000.0 - row()["notional"]
        )
        levels = [
            f.frame
            for f in sim.received_commands(ACCOUNT)
            if f.frame.get("type") == "get_available_leverage_levels"
        ]
        assert len(levels) == 1
        # /metrics renders these gauges straight to text (kept per account between
        # scrapes); the library's rendering of the same collectors must agree.
        sim.pause()
        for _ in range(2):  # the second scrape reuses the kept lines
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{d.http_port}/metrics") as resp,
            ):
                body = _series(await resp.text())
            library = _series(generate_latest(d.registry).decode())
            assert body.keys() == library.keys()
            for family in STABLE_FAMILIES:
                mine = {k: v for k, v in body.items() if k[0] == family}
                assert mine, family
                assert mine == {k: v for k, v in library.items() if k[0] == family}


STABLE_FAMILIES = (
    "riskwatch_market_open",
    "riskwatch_position_limit_at_close_usd",
    "riskwatch_position_limit_headroom_at_close_usd",
    "riskwatch_refdata_symbols",
    "riskwatch_refdata_fetch_failures",
    "riskwatch_stale_after_seconds",
    "riskwatch_subscription_unconfirmed",
    "riskwatch_resubscribes",
    "riskwatch_position_size",
)
"""Families whose values cannot move between two renderings of a paused account."""


def _series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scalar(d: Daemon, name: str, **labels: str) -> float | None:
    return d.registry.get_sample_value(name, labels)


# --- §7, §11 protective commands fitted to reference data ---------------------------------

RULE_REDUCE = """
rules:
  - name: LossReduce
    scope: position
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [{{reduce_position: {{fraction: {fraction}, over: 5m}}}}]
"""


@asynccontextmanager
async def refdata_trip(
    tmp: Path, fraction: float, *, lot: float = 0.001, minimum: float = 0.001, **sim: Any
) -> AsyncIterator[tuple[Simulator, Daemon, list[ActionEvent]]]:
    """AAPL with the given lot size and minimum; a reduce rule; refdata fetched first."""
    events: list[ActionEvent] = []

    def listen(d: Daemon) -> None:
        d.executor.listeners.append(events.append)

    async with running(
        tmp,
        sim_options={"symbol_refdata": {"lot_size": lot, "min_quantity": minimum}, **sim},
        exchange="  stale_after: 3s\n  rest_url: {rest}\n",
        rules=RULE_REDUCE.format(fraction=fraction),
        before_start=listen,
    ) as (simulator, d, _):
        await wait_for(lambda: d.refdata.fetched_at is not None)
        await sim_mark(simulator)
        yield simulator, d, events


async def sim_mark(sim: Simulator) -> None:
    await sim.set_mark(SYMBOL, 150.0)


def _twaps(sim: Simulator) -> list[dict[str, Any]]:
    return [
        f.frame["params"]
        for f in sim.received_commands(ACCOUNT)
        if f.frame.get("type") == "add_twap"
    ]


async def test_twap_quantity_is_rounded_to_lots(tmp_path: Path) -> None:
    """A third of 250 with a lot of 1 is 83.33…: the TWAP asks for 83, a whole number of
    lots the exchange accepts, and is confirmed."""
    async with refdata_trip(tmp_path, 0.3333, lot=1.0) as (sim, _d, events):
        await wait_for(lambda: any(e.kind == "confirmed" for e in events))
        (twap,) = _twaps(sim)
        assert twap["total_quantity"] == 83.0
        assert twap["reduce_only"] is True


async def test_twap_below_the_symbol_minimum_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Minimum 100 per slice: a tenth of 250 cannot be a TWAP; nothing is sent and the
    refusal says why."""
    async with refdata_trip(tmp_path, 0.1, minimum=100.0) as (sim, _d, events):
        await wait_for(lambda: any(e.kind == "refused" for e in events))
        refusal = next(e for e in events if e.kind == "refused")
        assert refusal.code == "BELOW_MIN_QUANTITY"
        assert "minimum quantity 100" in refusal.detail
        await asyncio.sleep(200 * MS)
        assert not _twaps(sim)


async def test_twap_confirmed_only_by_a_working_status(tmp_path: Path) -> None:
    """A twap_response whose status is the docs' placeholder does not confirm the
    reduction: it fails with that status as the reason."""
    async with refdata_trip(tmp_path, 0.5, twap_status="ENGINE_STATUS") as (_sim, _d, events):
        await wait_for(lambda: any(e.kind == "failed" for e in events))
        assert not any(e.kind == "confirmed" for e in events)
        failed = next(e for e in events if e.kind == "failed")
        assert "ENGINE_STATUS" in failed.detail


async def test_set_leverage_snaps_to_an_available_level(tmp_path: Path) -> None:
    """A rule asks for 4x; the exchange offers 1, 2, 3, 5, … (learned from
    get_available_leverage_levels): riskwatch sends 3x, which the exchange accepts, and
    the pulse confirms it."""
    rules = """
rules:
  - name: LeverageTooHigh
    scope: position
    when: leverage > 4 and position == 0 and open_orders == 0
    severity: warning
    actions: [{set_leverage: 4}]
"""
    events: list[ActionEvent] = []
    async with running(
        tmp_path,
        rules=rules,
        sim_options={"no_resting_orders": True},
        before_start=lambda d: d.executor.listeners.append(events.append),
    ) as (sim, d, _):
        await wait_for(lambda: any(e.kind == "confirmed" for e in events), 8000 * MS)
        (sent,) = [
            f.frame["params"]
            for f in sim.received_commands(ACCOUNT)
            if f.frame.get("type") == "set_user_leverage"
        ]
        assert sent == {"symbol": "MSFT-USD", "leverage": 3.0}
        assert sim.ledger(ACCOUNT).position("MSFT-USD").leverage == 3.0
        assert d.refdata.refdata.levels["MSFT-USD"]
