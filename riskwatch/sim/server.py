"""The simulated QFEX gateways: a trade WebSocket and a market-data WebSocket.

Use in-process (same event loop)::

    async with Simulator(load_scenario("crash"), trade_port=0, mds_port=0) as sim:
        connect(sim.trade_url) ...

Trade gateway behaviour (docs/protocol.md §15), with the choices QFEX leaves open:

- Any query string is accepted on ``/`` (``?api_key=`` is ignored unless an upgrade
  mode asks for it: the ``auth`` frame decides, §1). Other paths get HTTP 404.
- An ``auth`` frame must arrive within ``auth_deadline`` seconds (default 60) or the
  server closes with 1008. Commands before auth get ``err`` ``PermissionDenied``
  (undocumented upstream) and the deadline keeps running.
- A rejected auth (bad signature, nonce reused within 15 min, timestamp outside
  ±``ts_tolerance`` s, unknown key or account_id, bad JWT) is answered
  ``{"authenticated": false}`` — the form the official CLI handles (§2.1; the failure
  reply is undocumented) — and the connection is closed with 1008. A second auth on an
  authenticated socket gets ``err`` ``AlreadyAuthenticated``.
- After auth the server pings every ``ping_interval`` s (§2.1).
- Rate limit per user across connections (``sim/ratelimit.py``): over the limit the
  command is answered ``err`` ``RateLimited`` and not executed.
- Malformed JSON (or a non-object) gets ``err`` ``InvalidJSONFormat`` with the raw text.
- ``cancel_on_disconnect`` is a per-connection flag (acked); when such a connection ends
  without a clean close frame from the client (or is dropped by a fault), every open
  order of the account is cancelled (the current DOCS' account scope, §16.10).
- Pulses every ``pulse_interval`` s of wall time: per connection, one
  ``position_response`` per listed symbol (flat included) if subscribed to
  ``positions``, then one ``balance_response`` if subscribed to ``balances``.

Market-data gateway: ``{"type":"subscribe","channels":["mark_price"|"market_stats"],
"symbols":[…|"*"]}``; no confirmation is sent (undocumented upstream). ``mark_price``
frames go out on every mark change and at every pulse; ``market_stats`` once per second.
Other channels are accepted and ignored.

Documented alternatives, each a mode (docs/simulator.md):

- ``upgrade_auth`` ``"api_key"`` | ``"hmac_headers"`` | ``"bearer"``: the HTTP upgrade
  must carry that credential (``?api_key=``; the CLI's ``x-qfex-*`` headers or a
  Bearer token; a Bearer token) or it is refused with HTTP 401 (§1).
- ``sparse_orders``: every ``order_response`` omits ``quantity_remaining`` and carries
  ``price: null`` (§5.3 allows both).
- ``unconfirmed_channels``: subscribing to these channels works, but no
  ``{"subscribed": …}`` is ever sent for them (§4).
- ``fees_apart``: trading fees are not netted into ``realised_pnl``; the balance
  reports them in ``fees`` and its ``available_balance`` is net of them (§5.2, §6).
- ``signed_jwt``: JWTs are HS256 tokens (``sub`` = public key, signed with the
  account's secret, ``exp`` enforced): an expired token is refused and a connection
  is closed (1008) when its token expires (§2.1).
- ``blank_order_ids``: every ``order_response`` carries ``"client_order_id": ""``, as
  the docs' ACK example does (§3): replies are matched by symbol and order.
- ``reserialised_echoes``: the request echoed in ``err`` and ``ack`` is the server's
  re-serialisation, as in the docs' error example (§9.1): keys in another order,
  the command's unset optional fields as ``null``, every number as a float (``10.0``).
- ``twap_status``: every ``twap_response`` carries this status (TWAP statuses are
  undocumented; the docs' example shows the placeholder ``"ENGINE_STATUS"``, §5.5).
- the cadence: ``pulse_interval`` (1 s or 10 s in the docs, §4.2).

REST (docs/protocol.md §11, §13): ``GET /refdata`` on ``rest_url`` answers the
scenario's symbols as the OpenAPI ``RefdataResponse`` (numbers as strings,
``default_max_leverage`` an integer, ``market_hours`` as written in the scenario), no
credentials needed; :meth:`Simulator.fail_refdata` makes the next requests fail with
HTTP 503.

Legacy mode (``legacy=True``): ``{"type":"auth","result":"success"|"failure"}``, v4
envelopes for positions and balances, ``{"ack_response": true}``, flat errors,
``user_orders``; the legacy ``{"api_key": …}`` auth is accepted too.

Scenario time runs at wall time × ``speed`` and can be paused; marks follow the
scenario's price paths except for symbols pinned by :meth:`Simulator.set_mark`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from riskwatch.clock import Clock, SystemClock
from riskwatch.sim import frames
from riskwatch.sim.authcheck import (
    DEFAULT_SECRET,
    NonceCache,
    UpgradeMode,
    check_auth,
    check_upgrade,
    jwt_claims,
)
from riskwatch.sim.exchange import Exchange, Out
from riskwatch.sim.ledger import Ledger
from riskwatch.sim.ratelimit import RateLimiter
from riskwatch.sim.scenario import FaultSpec, Scenario
from riskwatch.tasks import cancel_and_wait

log = logging.getLogger("riskwatch.sim")

CHANNELS = ("positions", "balances", "order_responses", "stop_orders", "fills")
SECRET_ENV = "RISKWATCH_SIM_SECRET"  # noqa: S105 - a variable name, not a value
_TICK = 0.05  # wall seconds between scenario steps


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """A client frame as received: wall time (Unix s), parsed JSON (or raw text)."""

    time: float
    frame: Any


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    conn_id: str
    account: str | None = None
    channels: set[str] = field(default_factory=set)
    cancel_on_disconnect: bool = False
    message_id: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dropped: bool = False


@dataclass(eq=False)
class _MdsConn:
    ws: ServerConnection
    subs: dict[str, set[str]] = field(default_factory=dict)  # channel -> symbols


@dataclass(frozen=True, slots=True)
class _Reject:
    error_code: str
    as_order_status: str | None


def default_secrets() -> dict[str, str]:
    """Return the default secret map: empty (every key uses :func:`default_secret`)."""
    return {}


def default_secret() -> str:
    """Return ``$RISKWATCH_SIM_SECRET`` or the documented non-secret ``sim-secret``."""
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


class Simulator:
    """Both gateways plus the scenario clock; an async context manager.

    Times: ``pulse_interval``, ``auth_deadline``, ``ping_interval`` and fault
    ``seconds`` are wall seconds; ``speed`` scales scenario time against wall time.
    """

    def __init__(
        self,
        scenario: Scenario,
        secrets: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        trade_port: int = 0,
        mds_port: int = 0,
        speed: float = 1.0,
        pulse_interval: float = 1.0,
        auth_deadline: float = 60.0,
        ts_tolerance: float = 300.0,
        ping_interval: float = 15.0,
        legacy: bool = False,
        fill_fraction: float = 1.0,
        seed: int = 0,
        rate_limit: float = 12_000.0,
        rate_window: float = 60.0,
        market_stats_interval: float = 1.0,
        clock: Clock | None = None,
        rest_port: int = 0,
        upgrade_auth: UpgradeMode | None = None,
        sparse_orders: bool = False,
        unconfirmed_channels: frozenset[str] = frozenset(),
        fees_apart: bool = False,
        signed_jwt: bool = False,
        blank_order_ids: bool = False,
        reserialised_echoes: bool = False,
        twap_status: str | None = None,
    ) -> None:
        self.scenario = scenario
        self._secrets = dict(secrets or {})
        self._default_secret = default_secret()
        self.host = host
        self._ports = (trade_port, mds_port)
        self.speed = speed
        self.pulse_interval = pulse_interval
        self.auth_deadline = auth_deadline
        self.ts_tolerance = ts_tolerance
        self.ping_interval = ping_interval
        self.legacy = legacy
        self.market_stats_interval = market_stats_interval
        self.clock: Clock = clock or SystemClock()
        self.upgrade_auth = upgrade_auth
        self._rest_port = rest_port
        self._rest: web.AppRunner | None = None
        self.rest_url = ""
        self.refdata_requests = 0
        self._refdata_failures = 0
        self.sparse_orders = sparse_orders
        self.blank_order_ids = blank_order_ids
        self.reserialised_echoes = reserialised_echoes
        self.unconfirmed_channels = frozenset(unconfirmed_channels)
        self.signed_jwt = signed_jwt
        self.twap_status = twap_status
        self.upgrades_refused: list[str] = []
        self.upgrade_headers: list[dict[str, str]] = []
        self.exchange = Exchange(scenario, seed=seed, fill_fraction=fill_fraction)
        for ledger in self.exchange.ledgers.values():
            ledger.fees_apart = fees_apart
        self.limiter = RateLimiter(limit=rate_limit, window=rate_window)
        self._nonces = NonceCache()
        self._conns: set[_Conn] = set()
        # Authenticated connections by account: a pulse or a dispatch reaches one account's
        # connections without scanning every connection (thousands in bench/bench_scale.py).
        self._by_account: dict[str, list[_Conn]] = {}
        self._mds: set[_MdsConn] = set()
        self._received: dict[str | None, list[ReceivedFrame]] = {}
        self._rejects: dict[str, _Reject] = {}
        self._pongs: dict[str | None, int] = {}
        self._delays: dict[str, float] = {}
        self._pinned: set[str] = set()
        self._stall_until = 0.0
        self._paused_at: float | None = None
        self._t_offset = 0.0  # wall seconds spent paused
        self._t0 = 0.0
        self._faults = list(scenario.faults)
        self._servers: list[Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stats_seq = 0
        self._conn_seq = 0
        self.trade_url = ""
        self.mds_url = ""

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both gateways and start the scenario clock, pulses and market data."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        opts: dict[str, Any] = {"ping_interval": None, "compression": None}
        trade = await serve(
            self._trade_handler,
            self.host,
            self._ports[0],
            process_request=self._check_upgrade,
            **opts,
        )
        mds = await serve(self._mds_handler, self.host, self._ports[1], **opts)
        self._servers = [trade, mds]
        app = web.Application()
        app.router.add_get("/refdata", self._refdata)
        self._rest = web.AppRunner(app, access_log=None)
        await self._rest.setup()
        site = web.TCPSite(self._rest, self.host, self._rest_port)
        await site.start()
        rest_sockets = getattr(site._server, "sockets", None) or []
        self.rest_url = f"http://{self.host}:{rest_sockets[0].getsockname()[1]}"
        self.trade_url = f"ws://{self.host}:{_port(trade)}/"
        self.mds_url = f"ws://{self.host}:{_port(mds)}/"
        self._tasks = [
            asyncio.create_task(self._tick_loop(), name="sim-tick"),
            asyncio.create_task(self._pulse_loop(), name="sim-pulse"),
            asyncio.create_task(self._stats_loop(), name="sim-stats"),
        ]
        log.info(
            "simulator scenario=%s trade=%s mds=%s rest=%s",
            self.scenario.name,
            self.trade_url,
            self.mds_url,
            self.rest_url,
        )

    async def stop(self) -> None:
        """Stop the loops and close every connection and both servers."""
        await cancel_and_wait(*self._tasks)
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        if self._rest is not None:
            await self._rest.cleanup()
            self._rest = None
        self._tasks, self._servers = [], []

    # -- REST --------------------------------------------------------------------------

    def fail_refdata(self, times: int) -> None:
        """Answer the next ``times`` ``GET /refdata`` requests with HTTP 503."""
        self._refdata_failures = times

    async def _refdata(self, request: web.Request) -> web.Response:
        self.refdata_requests += 1
        if self._refdata_failures > 0:
            self._refdata_failures -= 1
            return web.json_response(
                {"title": "Service Unavailable", "status": 503}, status=503,
                content_type="application/problem+json",
            )  # fmt: skip
        ticker = request.query.get("ticker")
        data = [
            frames.refdata_symbol(spec, self.exchange.marks.get(spec.symbol, spec.mark))
            for spec in self.scenario.symbols
            if ticker is None or spec.symbol == ticker
        ]
        resp = web.json_response({"type": "refdata", "data": data})
        resp.headers["Cache-Control"] = "max-age=60"
        return resp

    # -- scenario time ------------------------------------------------------------------

    def scenario_time(self) -> float:
        """Return scenario seconds since start: wall time × speed, minus paused spans."""
        loop = asyncio.get_running_loop()
        now = self._paused_at if self._paused_at is not None else loop.time()
        return (now - self._t0 - self._t_offset) * self.speed

    @property
    def finished(self) -> bool:
        """Tell whether scenario time has reached the scenario's duration."""
        return self.scenario_time() >= self.scenario.duration

    def pause(self) -> None:
        """Freeze scenario time: marks, funding, TWAPs and timed faults stop moving."""
        if self._paused_at is None:
            self._paused_at = asyncio.get_running_loop().time()

    def resume(self) -> None:
        """Let scenario time run again from where it was paused."""
        if self._paused_at is not None:
            self._t_offset += asyncio.get_running_loop().time() - self._paused_at
            self._paused_at = None

    # -- controls ------------------------------------------------------------------------

    def ledger(self, account: str) -> Ledger:
        """Return the live account books of ``account`` (KeyError naming it if unknown)."""
        try:
            return self.exchange.ledgers[account]
        except KeyError:
            msg = f"unknown account {account!r}"
            raise KeyError(msg) from None

    @property
    def fill_fraction(self) -> float:
        """Share (0..1) of a ``close_position`` order that fills; the rest cancels."""
        return self.exchange.fill_fraction

    @fill_fraction.setter
    def fill_fraction(self, value: float) -> None:
        self.exchange.fill_fraction = value

    async def set_mark(self, symbol: str, price: float) -> None:
        """Pin ``symbol``'s mark at ``price`` (the price path no longer moves it)."""
        self._pinned.add(symbol)
        await self._move_mark(symbol, price)

    def unpin_mark(self, symbol: str) -> None:
        """Let the scenario's price path drive ``symbol`` again."""
        self._pinned.discard(symbol)

    async def pulse_now(self) -> None:
        """Send one pulse at once (ignores a stall)."""
        await self._pulse()

    def connections(self, account: str) -> list[_Conn]:
        """The authenticated trade connections of ``account``, oldest first (a copy)."""
        return list(self._by_account.get(account, ()))

    async def drop_connections(self, account: str | None = None) -> None:
        """Abort trade connections (all, or ``account``'s) without a close handshake."""
        for conn in list(self._conns) if account is None else self.connections(account):
            conn.dropped = True
            conn.ws.transport.abort()

    def stall_pulses(self, seconds: float) -> None:
        """Send no pulses (and no MDS frames) for ``seconds`` of wall time."""
        self._stall_until = time.monotonic() + seconds

    async def send_raw(self, account: str | None, text: str) -> None:
        """Send ``text`` verbatim to the trade connections of ``account`` (None: all)."""
        for conn in list(self._conns) if account is None else self.connections(account):
            if conn.account is not None:
                await _send_text(conn.ws, text)

    def reject_next(
        self, command_type: str, error_code: str = "ServerError", as_order_status: str | None = None
    ) -> None:
        """Refuse the next ``command_type`` with ``err`` ``error_code``.

        With ``as_order_status`` (e.g. ``RATE_LIMITED``), answer instead with an
        ``order_response`` of that status on ``order_responses``.
        """
        self._rejects[command_type] = _Reject(error_code, as_order_status)

    def delay_next(self, command_type: str, seconds: float) -> None:
        """Process the next ``command_type`` only after ``seconds`` of wall time."""
        self._delays[command_type] = seconds

    def pongs_received(self, account: str) -> int:
        """Return how many of the server's pings ``account``'s connections answered."""
        return self._pongs.get(account, 0)

    def received_commands(self, account: str | None) -> list[ReceivedFrame]:
        """Every frame received for ``account`` (None: before auth), in order."""
        return list(self._received.get(account, []))

    # -- trade gateway ---------------------------------------------------------------------

    async def _trade_handler(self, ws: ServerConnection) -> None:
        self._conn_seq += 1
        conn = _Conn(ws=ws, conn_id=self.exchange.new_id())
        self._conns.add(conn)
        deadline = asyncio.create_task(self._auth_deadline(conn))
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                await self._on_text(conn, text)
        except ConnectionClosed:
            pass
        finally:
            deadline.cancel()
            for task in conn.tasks:
                task.cancel()
            self._conns.discard(conn)
            if conn.account is not None:
                self._by_account[conn.account].remove(conn)
            await self._on_closed(conn)

    async def _auth_deadline(self, conn: _Conn) -> None:
        await asyncio.sleep(self.auth_deadline)
        if conn.account is None:
            await conn.ws.close(1008, "authentication deadline")

    async def _on_closed(self, conn: _Conn) -> None:
        clean = conn.ws.protocol.close_rcvd is not None and not conn.dropped
        if conn.account is not None and conn.cancel_on_disconnect and not clean:
            await self._dispatch(self.exchange.cancel_orders(conn.account, self.clock.now()), None)

    async def _on_text(self, conn: _Conn, text: str) -> None:
        now = self.clock.now()
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        valid = isinstance(request, dict) and isinstance(request.get("type"), str)
        self._received.setdefault(conn.account, []).append(
            ReceivedFrame(now, request if valid else text)
        )
        if not valid or not isinstance(request, dict):
            await self._reply(conn, frames.err("InvalidJSONFormat", "invalid JSON message", text))
            return
        kind = request["type"]
        if kind == "auth":
            await self._on_auth(conn, request, now)
            return
        if conn.account is None:
            text_ = "authenticate before sending commands"
            await self._reply(conn, frames.err("PermissionDenied", text_, request))
            return
        if not self.limiter.allow(conn.account, kind, now):
            text_ = "You have exceeded the allowed message rate."
            await self._reply(conn, frames.err("RateLimited", text_, request))
            return
        delay = self._delays.pop(kind, None)
        if delay is not None:
            task = asyncio.create_task(self._delayed(conn, request, delay))
            conn.tasks.append(task)
            return
        await self._command(conn, request)

    async def _delayed(self, conn: _Conn, request: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        await self._command(conn, request)

    async def _on_auth(self, conn: _Conn, request: dict[str, Any], now: float) -> None:
        if conn.account is not None:
            text = "connection is already authenticated"
            await self._reply(conn, frames.err("AlreadyAuthenticated", text, request))
            return
        result = check_auth(
            request.get("params"),
            self.scenario.accounts,
            self._secrets,
            self._nonces,
            now,
            tolerance=self.ts_tolerance,
            default_secret=self._default_secret,
            allow_api_key=self.legacy,
            signed_jwt=self.signed_jwt,
        )
        if result.account is None:
            log.info("auth rejected: %s", result.reason)
            await self._reply(conn, {"authenticated": False})
            await conn.ws.close(1008, "authentication failed")
            return
        conn.account = result.account
        self._by_account.setdefault(result.account, []).append(conn)
        token = params.get("jwt") if isinstance(params := request.get("params"), dict) else None
        if self.signed_jwt and isinstance(token, str):
            conn.tasks.append(asyncio.create_task(self._expire_token(conn, token)))
        # Move this connection's frames (auth included) under the account.
        pending = self._received.get(None, [])
        if pending and pending[-1].frame is request:
            self._received.setdefault(result.account, []).append(pending.pop())
        await self._reply(conn, {"authenticated": True})
        conn.tasks.append(asyncio.create_task(self._ping_loop(conn)))

    async def _expire_token(self, conn: _Conn, token: str) -> None:
        """Close the connection when its JWT expires (the signed-JWT mode's choice)."""
        claims = jwt_claims(token) or {}
        exp = claims.get("exp")
        if isinstance(exp, int):
            await asyncio.sleep(max(0.0, exp - self.clock.now()))
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.close(1008, "token expired")

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        """404 off the bare path; in an upgrade mode, 401 without its credentials."""
        parts = urlsplit(request.path)
        if parts.path not in ("", "/"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        self.upgrade_headers.append(headers)
        if self.upgrade_auth is None:
            return None
        reason = check_upgrade(
            self.upgrade_auth,
            dict(parse_qsl(parts.query)),
            headers,
            self.scenario.accounts,
            self._secrets,
            self._nonces,
            self.clock.now(),
            tolerance=self.ts_tolerance,
            default_secret=self._default_secret,
            signed_jwt=self.signed_jwt,
        )
        if not reason:
            return None
        log.info("upgrade refused: %s", reason)
        self.upgrades_refused.append(reason)
        return connection.respond(HTTPStatus.UNAUTHORIZED, f"unauthorized: {reason}\n")

    async def _ping_loop(self, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                pong = await conn.ws.ping()
                async with asyncio.timeout(self.ping_interval * 4):
                    await pong
            except (ConnectionClosed, TimeoutError):
                return
            self._pongs[conn.account] = self._pongs.get(conn.account, 0) + 1

    async def _command(self, conn: _Conn, request: dict[str, Any]) -> None:
        account = conn.account
        assert account is not None  # noqa: S101 - callers check authentication first
        kind = request["type"]
        params = request.get("params", {})
        now = self.clock.now()
        reject = self._rejects.pop(kind, None)
        if reject is not None:
            if reject.as_order_status is not None:
                body = {
                    "order_id": self.exchange.new_id(),
                    "symbol": str(params.get("symbol", "")) if isinstance(params, dict) else "",
                    "status": reject.as_order_status,
                    "quantity": 0.0,
                    "price": 0.0,
                    "take_profit": 0.0,
                    "stop_loss": 0.0,
                    "side": "BUY",
                    "type": "LIMIT",
                    "time_in_force": "IOC",
                    "user_id": self.exchange.ledgers[account].user_id,
                    "client_order_id": str(params.get("client_order_id") or "")
                    if isinstance(params, dict)
                    else "",
                    "quantity_remaining": 0.0,
                    "update_time": now,
                    "trade_id": None,
                }
                await self._dispatch(
                    [Out(account, "order_responses", {"order_response": body})], conn
                )
            else:
                text = f"simulated rejection of {kind}"
                await self._reply(conn, frames.err(reject.error_code, text, request))
            return
        if kind in ("subscribe", "unsubscribe"):
            await self._subscribe(conn, request, kind == "subscribe")
            return
        if kind == "cancel_on_disconnect":
            flag = params.get("cancel_on_disconnect") if isinstance(params, dict) else None
            if not isinstance(flag, bool):
                text = f"cancel_on_disconnect must be a boolean, got {flag!r}"
                await self._reply(conn, frames.err("InvalidParameter", text, request))
                return
            conn.cancel_on_disconnect = flag
            await self._reply(conn, frames.ack(request))
            return
        await self._dispatch(self.exchange.handle(account, request, now), conn)

    async def _subscribe(self, conn: _Conn, request: dict[str, Any], on: bool) -> None:
        params = request.get("params")
        channels = params.get("channels") if isinstance(params, dict) else None
        if not isinstance(channels, list) or not all(c in CHANNELS for c in channels):
            text = f"channels must be a list drawn from {list(CHANNELS)}, got {channels!r}"
            await self._reply(conn, frames.err("InvalidParameter", text, request))
            return
        key = "subscribed" if on else "unsubscribed"
        for channel in channels:
            if on:
                conn.channels.add(channel)
            else:
                conn.channels.discard(channel)
            if not (on and channel in self.unconfirmed_channels):
                await self._reply(conn, {key: channel})

    async def _reply(self, conn: _Conn, frame: dict[str, Any]) -> None:
        twap = frame.get("twap_response")
        if self.twap_status is not None and isinstance(twap, dict):
            frame = {**frame, "twap_response": {**twap, "status": self.twap_status}}
        order = frame.get("order_response")
        if self.sparse_orders and isinstance(order, dict):
            body = {k: v for k, v in order.items() if k != "quantity_remaining"}
            frame = {**frame, "order_response": {**body, "price": None}}
        if self.blank_order_ids and isinstance(order, dict):
            frame = {**frame, "order_response": {**frame["order_response"], "client_order_id": ""}}
        if self.reserialised_echoes:
            frame = _reserialise_echo(frame)
        await _send_text(conn.ws, json.dumps(frames.to_legacy(frame) if self.legacy else frame))

    async def _dispatch(self, outs: list[Out], requester: _Conn | None) -> None:
        for out in outs:
            if out.channel is None:
                if requester is not None:
                    await self._reply(requester, out.frame)
                continue
            for conn in self.connections(out.account):
                if out.channel in conn.channels:
                    await self._reply(conn, out.frame)

    # -- loops ---------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await self._step()
            await asyncio.sleep(_TICK)

    async def _step(self) -> None:
        t = self.scenario_time()
        now = self.clock.now()
        if self._paused_at is None:
            for symbol, path in self.exchange.paths.items():
                if symbol not in self._pinned:
                    price = path.price(t)
                    if price != self.exchange.marks[symbol]:
                        await self._move_mark(symbol, price)
            await self._dispatch(self.exchange.advance(t, now), None)
            while self._faults and self._faults[0].at <= t:
                await self._fault(self._faults.pop(0))

    async def _move_mark(self, symbol: str, price: float) -> None:
        now = self.clock.now()
        await self._dispatch(self.exchange.set_mark(symbol, price, now), None)
        await self._send_marks([symbol], now)

    async def _fault(self, fault: FaultSpec) -> None:
        log.info("fault %s at t=%.1fs", fault.kind, fault.at)
        if fault.kind == "drop_connections":
            await self.drop_connections(fault.account)
        elif fault.kind == "stall_pulses":
            self.stall_pulses(fault.seconds)
        elif fault.kind == "malformed_frame":
            await self.send_raw(fault.account, fault.text or '{"position_response": {"symbol": ')
        elif fault.kind == "reject_next" and fault.command:
            self.reject_next(fault.command, fault.error_code or "ServerError", fault.order_status)
        elif fault.kind == "delay_next" and fault.command:
            self.delay_next(fault.command, fault.seconds)

    def _stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    async def _pulse_loop(self) -> None:
        while True:
            await asyncio.sleep(self.pulse_interval)
            if not self._stalled():
                await self._pulse()

    async def _pulse(self) -> None:
        now = self.clock.now()
        for conn in list(self._conns):
            if conn.account is None:
                continue
            ledger = self.exchange.ledgers[conn.account]
            if "positions" in conn.channels:
                bodies = [ledger.position_payload(s) for s in ledger.positions]
                if self.legacy:
                    stamp = frames.iso(now).replace("Z", "+00:00")
                    items = [
                        {**b, "id": b["symbol"], "user_id": ledger.user_id, "timestamp": stamp}
                        for b in bodies
                    ]
                    await self._envelope(conn, "v4_positions", ledger.account_id, items)
                else:
                    for body in bodies:
                        await self._reply(conn, {"position_response": body})
            if "balances" in conn.channels:
                body = ledger.balance_payload()
                if self.legacy:
                    await self._envelope(conn, "v4_balances", ledger.account_id, [body])
                else:
                    await self._reply(conn, {"balance_response": body})
        await self._send_marks(list(self.exchange.marks), now)

    async def _envelope(self, conn: _Conn, channel: str, account_id: str, items: list[Any]) -> None:
        conn.message_id += 1
        frame = frames.v4_envelope(channel, conn.conn_id, conn.message_id, account_id, items)
        await _send_text(conn.ws, json.dumps(frame))

    # -- market data -----------------------------------------------------------------------

    def _mark_text(self, symbol: str) -> str:
        spec = self.exchange.spec(symbol)
        return frames.price_text(self.exchange.marks[symbol], spec.tick_size)

    async def _mds_handler(self, ws: ServerConnection) -> None:
        conn = _MdsConn(ws=ws)
        self._mds.add(conn)
        try:
            async for message in ws:
                await self._on_mds(conn, message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        finally:
            self._mds.discard(conn)

    async def _on_mds(self, conn: _MdsConn, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            return
        channels = request.get("channels")
        symbols = request.get("symbols")
        if not isinstance(channels, list) or not isinstance(symbols, list):
            return
        for channel in channels:
            if not isinstance(channel, str):
                continue
            current = conn.subs.setdefault(channel, set())
            if request["type"] == "subscribe":
                current.update(str(s) for s in symbols)
            else:
                current.difference_update(str(s) for s in symbols)
        now = self.clock.now()
        if request["type"] == "subscribe":
            # Snapshot on subscribe, like market_stats (docs/protocol.md §12).
            if "mark_price" in channels:
                for symbol in self._wanted(conn, "mark_price", list(self.exchange.marks)):
                    await _send_text(
                        conn.ws, json.dumps(frames.mark_price(symbol, self._mark_text(symbol), now))
                    )
            if "market_stats" in channels:
                await self._send_stats(conn, now)

    @staticmethod
    def _wanted(conn: _MdsConn, channel: str, symbols: list[str]) -> list[str]:
        subs = conn.subs.get(channel, set())
        return [s for s in symbols if "*" in subs or s in subs]

    async def _send_marks(self, symbols: list[str], now: float) -> None:
        if self._stalled():
            return
        for conn in list(self._mds):
            for symbol in self._wanted(conn, "mark_price", symbols):
                frame = frames.mark_price(symbol, self._mark_text(symbol), now)
                await _send_text(conn.ws, json.dumps(frame))

    async def _send_stats(self, conn: _MdsConn, now: float) -> None:
        wanted = self._wanted(conn, "market_stats", list(self.exchange.marks))
        if not wanted:
            return
        self._stats_seq += 1
        marks = {s: self._mark_text(s) for s in wanted}
        spreads = {}
        for s in wanted:
            mark, tick = self.exchange.marks[s], self.exchange.spec(s).tick_size
            spreads[s] = (
                frames.price_text(mark - tick, tick),
                frames.price_text(mark + tick, tick),
            )
        subs = conn.subs.get("market_stats", set())
        label = "*" if "*" in subs or len(wanted) != 1 else wanted[0]
        frame = frames.market_stats(self._stats_seq, label, marks, spreads, now)
        await _send_text(conn.ws, json.dumps(frame))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.market_stats_interval)
            if self._stalled():
                continue
            now = self.clock.now()
            for conn in list(self._mds):
                await self._send_stats(conn, now)


_ECHO_NULLS: dict[str, tuple[str, ...]] = {
    "add_order": ("take_profit", "stop_loss"),
    "close_position": ("client_order_id",),
    "add_twap": ("client_twap_id",),
    "cancel_all_orders": ("symbol",),
    "set_user_leverage": ("account_id",),
}
"""Unset optional fields a re-serialised echo shows as ``null`` (the docs' error example
echoes ``add_order`` with ``take_profit`` and ``stop_loss`` null)."""


def _as_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _reserialise_echo(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` with the request its ``err``/``ack`` echoes re-serialised (module docstring)."""
    for key in ("err", "ack"):
        body = frame.get(key)
        echoed = body.get("incoming_message") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(echoed, dict):
            continue
        params = echoed.get("params")
        if isinstance(params, dict):
            nulls = _ECHO_NULLS.get(str(echoed.get("type")), ())
            params = {**params, **{n: None for n in nulls if n not in params}}
            echoed = {**echoed, "params": params}
        return {**frame, key: {**body, "incoming_message": _as_floats(echoed)}}
    return frame


def _port(server: Server) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    msg = "server has no listening socket"
    raise RuntimeError(msg)


async def _send_text(ws: ServerConnection, text: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(text)
