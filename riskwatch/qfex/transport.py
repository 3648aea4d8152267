"""The WebSocket under a connection: ``websockets`` (the default) or aiohttp's client.

:mod:`riskwatch.qfex.client` only needs a socket it can iterate for text frames, send
text on and close; :func:`open_socket` opens one with the library that
``SocketOptions.transport`` names (config ``exchange.transport``). Both are set up the
same way: no compression, pings every ``ping_interval`` (a connection whose pongs stop
is closed), ``User-Agent: riskwatch/<version>`` and the credential headers of the
upgrade, the proxy the environment names (``HTTPS_PROXY``/``HTTP_PROXY``, ``NO_PROXY``;
with aiohttp for ``wss://`` only: a loopback ``ws://`` goes direct), frames up to
``max_size``. An upgrade refused with an HTTP status raises
:class:`UpgradeRefused` with either.

Why two: ``websockets`` parses frames in Python, about three quarters of the CPU a
received frame costs at a thousand accounts; aiohttp parses them in C
(docs/performance.md has the measured split). ``websockets`` stays the default the
design names; the test suite runs the protocol modes on both
(tests/integration/test_protocol_modes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
import websockets.exceptions as wsexc
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from riskwatch.config import TRANSPORTS, Transport
from riskwatch.errors import ExchangeLinkError
from riskwatch.qfex.upgrade import USER_AGENT

__all__ = [
    "TRANSPORTS",
    "Socket",
    "SocketClosed",
    "SocketOptions",
    "Transport",
    "UpgradeRefused",
    "classify_failure",
    "open_socket",
]


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """WebSocket settings of the exchange connections (riskwatch/qfex/client.py); pings
    shorter than the library's 20 s/20 s (docs/design.md#libraries)."""

    ping_interval: float = 5.0
    ping_timeout: float = 10.0
    open_timeout: float = 10.0
    max_size: int = 4 * 1024 * 1024
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    auth_retry_interval: float = 30.0
    transport: Transport = "websockets"
    """The WebSocket library (riskwatch/qfex/transport.py)."""


class Socket(Protocol):
    """What a connection does with its WebSocket."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Received data frames until the connection closes (an abnormal close raises)."""
        ...

    async def send(self, message: str) -> None:
        """Write one text frame."""
        ...

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        ...


class UpgradeRefused(ExchangeLinkError):
    """The server answered the WebSocket upgrade with HTTP ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upgrade refused: HTTP {status}")
        self.status = status


class SocketClosed(ExchangeLinkError):
    """The connection closed abnormally (no close frame, an error, or a close code
    other than 1000/1001)."""


def classify_failure(exc: BaseException) -> Literal["retry", "fatal"]:
    """Tell whether a connection loop should retry after ``exc`` or treat it as a bug.

    retry — network and handshake trouble, which a later attempt may not meet:
    ``OSError`` (refused, reset, unreachable, DNS: every ``ConnectionError``),
    ``TimeoutError`` (``asyncio.TimeoutError`` is the same class), ``EOFError``,
    every ``websockets`` ``ConnectionClosed`` (peer, proxy or dead link), and every
    ``InvalidHandshake`` (``InvalidStatus`` of any code — 5xx and 429 are transient,
    401/403 are credential trouble that docs/design.md#precise-points retries slowly, and a wrong
    path's 404 is still better logged and retried than fatal to the daemon —,
    ``InvalidMessage`` from a half-open server, proxy failures), and every aiohttp
    ``ClientError`` (the same trouble through the other transport).

    fatal — everything else: programming errors (``TypeError``, ``AttributeError``,
    ``KeyError``, ``ValueError``, ...), configuration errors (``InvalidURI``,
    ``InvalidProxy``), and ``CancelledError`` / ``KeyboardInterrupt`` / ``SystemExit``,
    which must propagate. The caller logs a fatal verdict with its traceback.
    """
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return "fatal"
    if isinstance(exc, wsexc.ConnectionClosed | wsexc.InvalidHandshake | aiohttp.ClientError):
        return "retry"
    if isinstance(exc, OSError | TimeoutError | EOFError):
        return "retry"
    return "fatal"


@contextlib.asynccontextmanager
async def open_socket(
    url: str, opts: SocketOptions, headers: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[Socket]:
    """Open a WebSocket to ``url`` with ``opts.transport``; close it on exit."""
    if opts.transport == "aiohttp":
        async with _open_aiohttp(url, opts, headers) as ws:
            yield ws
        return
    try:
        conn = connect(
            url,
            additional_headers=list(headers),
            user_agent_header=USER_AGENT,
            compression=None,
            proxy=True,
            open_timeout=opts.open_timeout,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            max_size=opts.max_size,
            close_timeout=2,
        )
        ws = await conn.__aenter__()
    except InvalidStatus as exc:
        raise UpgradeRefused(exc.response.status_code) from exc
    try:
        yield ws
    finally:
        await conn.__aexit__(None, None, None)


class _AiohttpSocket:
    """aiohttp's client WebSocket seen as a :class:`Socket`."""

    __slots__ = ("_ws",)

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    def __aiter__(self) -> _AiohttpSocket:
        return self

    async def __anext__(self) -> str | bytes:
        received = await self._ws.receive()
        kind = received.type
        if kind is aiohttp.WSMsgType.TEXT:
            data: str = received.data
            return data
        if kind is aiohttp.WSMsgType.BINARY:
            raw: bytes = received.data
            return raw
        if kind is aiohttp.WSMsgType.ERROR:
            exc = self._ws.exception()
            msg = f"connection failed: {exc}"
            raise SocketClosed(msg) from exc
        # CLOSE, CLOSING, CLOSED: the end of the stream.
        code = self._ws.close_code
        if code in (1000, 1001):
            raise StopAsyncIteration
        msg = f"connection closed (code {code})"
        raise SocketClosed(msg)

    async def send(self, message: str) -> None:
        await self._ws.send_str(message)

    async def close(self) -> None:
        await self._ws.close()


class _SharedSessions:
    """One aiohttp ``ClientSession`` for every open socket of an event loop (per
    connect timeout, which a session fixes), closed when its last socket closes.

    A session per socket cost about 6 kB each (its connector, timeouts, middleware
    tuple…), 6 MB at a thousand accounts (docs/performance.md). Shared, the session
    must not mix accounts: it keeps no cookies (``DummyCookieJar``; the exchange
    authenticates by message and header, never by cookie), and its connector has no
    connection limit (aiohttp's default of 100 counts every open WebSocket).
    """

    def __init__(self) -> None:
        self._open: dict[
            tuple[asyncio.AbstractEventLoop, float], tuple[aiohttp.ClientSession, int]
        ] = {}

    @contextlib.asynccontextmanager
    async def session(self, open_timeout: float) -> AsyncIterator[aiohttp.ClientSession]:
        """The shared session for ``open_timeout`` on the running loop, held until exit."""
        key = (asyncio.get_running_loop(), open_timeout)
        held = self._open.get(key)
        if held is None or held[0].closed:
            http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=open_timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            )
            held = (http, 0)
        http, users = held
        self._open[key] = (http, users + 1)
        try:
            yield http
        finally:
            http, users = self._open[key]
            if users > 1:
                self._open[key] = (http, users - 1)
            else:
                del self._open[key]
                await http.close()


_SESSIONS = _SharedSessions()


@contextlib.asynccontextmanager
async def _open_aiohttp(
    url: str, opts: SocketOptions, headers: Sequence[tuple[str, str]]
) -> AsyncIterator[Socket]:
    uri = parse_uri(url)
    # The proxy websockets would take (HTTPS_PROXY first, NO_PROXY honoured), through
    # a CONNECT tunnel: for wss:// only. A ws:// URL (loopback only, config.py) goes
    # direct: aiohttp would forward it as plain HTTP instead of tunnelling.
    proxy = get_proxy(uri) if uri.secure else None
    async with _SESSIONS.session(opts.open_timeout) as http:
        try:
            ws = await http.ws_connect(
                url,
                proxy=proxy,
                headers=[("User-Agent", USER_AGENT), *headers],
                compress=0,
                autoping=True,
                # aiohttp pings every `heartbeat` and closes when the pong is not back
                # within half of it: a dead link is found within ping_interval +
                # ping_timeout, as with websockets.
                heartbeat=(opts.ping_interval + opts.ping_timeout) / 1.5,
                max_msg_size=opts.max_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise UpgradeRefused(exc.status) from exc
        try:
            yield _AiohttpSocket(ws)
        finally:
            await ws.close()
