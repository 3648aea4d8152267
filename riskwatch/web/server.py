"""The HTTP listener and the limits that hold per connection (docs/http.md, "Limits").

aiohttp serves the application of :mod:`riskwatch.web.routes`; this module puts a thin
protocol in front of each of its connections (:class:`GuardedConnection`, made by the
listener's protocol factory) that enforces what aiohttp has no setting for:

- connection caps: past ``max_connections`` open connections (or
  ``max_connections_per_client`` from one client address), a new one is answered
  ``503`` and closed at once, so that its file descriptor is free again within the
  same loop turn (the exchange connections always find one, and one client cannot
  take every slot from Prometheus and the operators);
- a header timeout: from its first byte (or from the connection's opening), a request
  whose header block has not been received within ``header_timeout`` is dropped, so
  a client that sends a partial header and stalls (slowloris) holds nothing for long;
- a request timeout: a request not answered within ``request_timeout`` of its header
  block (a client that stopped reading a long answer) is dropped.

The middleware of :mod:`riskwatch.web.routes` marks each request's start and end here
(:meth:`ConnectionGuard.request_started`) and applies the body timeout; the idle
timeout (between two requests of a kept-alive connection) is aiohttp's
``keepalive_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["ConnectionGuard", "GuardedConnection", "HttpServer"]

log = logging.getLogger(__name__)

OVER_CAP: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 28\r\nRetry-After: 1\r\n\r\ntoo many connections; retry\n"
)
"""The whole answer to a connection past the cap (written before any request is read)."""

BACKLOG: Final = 128
"""Connections the kernel queues before they are accepted (aiohttp's own default)."""

LINGERING: Final = 2.0
"""Seconds aiohttp keeps reading an unread request body after answering (then closes)."""


class ConnectionGuard:
    """The open connections and their limits; shared by the listener and the middleware."""

    def __init__(
        self,
        max_connections: int,
        max_per_client: int,
        header_timeout: float,
        request_timeout: float,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.header_timeout = header_timeout
        self.request_timeout = request_timeout
        self._on_refused = on_refused
        self._open: dict[asyncio.BaseTransport, GuardedConnection] = {}
        self._per_client: dict[str, int] = {}

    @property
    def open_connections(self) -> int:
        """Connections currently held (past the cap ones are never held)."""
        return len(self._open)

    def refused(self, reason: str) -> None:
        """Count one refusal (``riskwatch_http_refused_total{reason}``)."""
        if self._on_refused is not None:
            self._on_refused(reason)

    def admit(self, conn: GuardedConnection, transport: asyncio.BaseTransport) -> bool:
        """Hold ``conn`` if under both caps."""
        if len(self._open) >= self.max_connections:
            self.refused("connection_cap")
            return False
        client = _client_of(transport)
        held = self._per_client.get(client, 0)
        if held >= self.max_per_client:
            self.refused("client_connection_cap")
            return False
        self._per_client[client] = held + 1
        self._open[transport] = conn
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """``transport``'s connection is closed."""
        if self._open.pop(transport, None) is None:
            return
        client = _client_of(transport)
        held = self._per_client.get(client, 0) - 1
        if held > 0:
            self._per_client[client] = held
        else:
            self._per_client.pop(client, None)

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """A request's header block is in (called by the middleware)."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.request_started()

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        """A request's handler returned (called by the middleware)."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.request_finished()


def _client_of(transport: asyncio.BaseTransport) -> str:
    """The peer's address (without port): what the per-client cap counts."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class GuardedConnection(asyncio.Protocol):
    """One HTTP connection: the cap and the header timeout, then aiohttp's handler."""

    def __init__(self, inner: RequestHandler, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._admitted = False
        self._in_request = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's do not derive from asyncio.Transport).
        tcp = self._transport = cast(asyncio.Transport, transport)
        if not self._guard.admit(self, tcp):
            tcp.write(OVER_CAP)
            tcp.close()
            return
        self._admitted = True
        self._arm()
        self._inner.connection_made(transport)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.header_timeout, self._expired)

    def _expired(self) -> None:
        """The header or the request deadline passed: drop the connection."""
        self._deadline = None
        if self._transport is not None:
            self._guard.refused("request_timeout" if self._in_request else "header_timeout")
            self._transport.abort()

    def request_started(self) -> None:
        """Headers received: the request deadline replaces the header deadline."""
        self._in_request = True
        if self._deadline is not None:
            self._deadline.cancel()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.request_timeout, self._expired)

    def request_finished(self) -> None:
        """Answered: the next request's header deadline starts with its first byte."""
        self._in_request = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if not self._in_request and self._deadline is None:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._admitted:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._transport is not None:
            self._guard.release(self._transport)
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)
        self._transport = None


class HttpServer:
    """One aiohttp listener behind a :class:`ConnectionGuard`; :meth:`stop` is idempotent."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        idle_timeout: float,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.guard = guard
        self.idle_timeout = idle_timeout
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    async def start(self) -> int:
        """Bind and serve; return the port (the OS's choice when configured as 0)."""
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.idle_timeout,
            lingering_time=LINGERING,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # noqa: S101 - set by setup()
        guard = self.guard

        def connection() -> GuardedConnection:
            return GuardedConnection(server(), guard)

        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            connection, self.host, self.port, reuse_address=True, backlog=BACKLOG
        )
        sockets = self._listener.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None
