"""aiohttp sockets share one client session that keeps no cookies and has no
connection limit, and it is closed with its last socket (riskwatch/qfex/transport.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from riskwatch.qfex import transport
from riskwatch.qfex.transport import SocketOptions, open_socket

OPTS = SocketOptions(transport="aiohttp", open_timeout=5.0)


@contextlib.asynccontextmanager
async def echo_server(seen_cookies: list[str | None]) -> AsyncIterator[str]:
    """A loopback WebSocket server that sets a cookie on every upgrade, records the
    Cookie header each upgrade carried, and echoes text frames."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        seen_cookies.append(request.headers.get("Cookie"))
        ws = web.WebSocketResponse()
        ws.set_cookie("session", f"account-{len(seen_cookies)}")
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


def open_sessions() -> list[tuple[object, int]]:
    return list(transport._SESSIONS._open.values())


async def test_sockets_share_one_session_without_cookies() -> None:
    cookies: list[str | None] = []
    async with echo_server(cookies) as url, contextlib.AsyncExitStack() as stack:
        # More sockets than aiohttp's default connector limit (100) would allow.
        sockets = [await stack.enter_async_context(open_socket(url, OPTS)) for _ in range(110)]
        (held,) = open_sessions()
        assert held[1] == 110
        for i, sock in enumerate(sockets):
            await sock.send(f"frame {i}")
        for i, sock in enumerate(sockets):
            assert await asyncio.wait_for(anext(aiter(sock)), 5) == f"frame {i}"
        # No upgrade carried the cookie an earlier one was given: accounts do not mix.
        assert cookies == [None] * 110
    assert open_sessions() == []


async def test_session_closes_with_its_last_socket_and_reopens() -> None:
    cookies: list[str | None] = []
    async with echo_server(cookies) as url:
        async with open_socket(url, OPTS) as first:
            (held,) = open_sessions()
            session = held[0]
            async with open_socket(url, OPTS):
                assert open_sessions() == [(session, 2)]
            assert open_sessions() == [(session, 1)]
            await first.send("still open")
            assert await asyncio.wait_for(anext(aiter(first)), 5) == "still open"
        assert open_sessions() == []
        assert session.closed  # type: ignore[attr-defined]
        async with open_socket(url, OPTS):
            (again,) = open_sessions()
            assert again[0] is not session


async def test_a_failed_connect_releases_the_session() -> None:
    cookies: list[str | None] = []
    async with echo_server(cookies) as url:
        bad = url.replace("/ws", "/missing")
        with pytest.raises(transport.UpgradeRefused):
            async with open_socket(bad, OPTS):
                pass
        assert open_sessions() == []
