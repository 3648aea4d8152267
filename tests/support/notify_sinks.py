"""Loopback sinks for the notification tests (no tests here): webhook, SMTP, hanging port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.portutil import free_port as free_port

WEBHOOK_TOKEN = "whk-token-5f1e9a7c3b"
SMTP_PASSWORD = "smtp-pass-q8z2k4"


class Webhook:
    """An aiohttp server collecting apprise json:// posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = asyncio.Event()
        self.port = 0

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}/{WEBHOOK_TOKEN}"

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()

    async def handle(request: web.Request) -> web.Response:
        hook.received.append(await request.json())
        hook.paths.append(request.path)
        hook.arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield hook
    finally:
        await runner.cleanup()


class Mailbox:
    """aiosmtpd handler keeping every message's content."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        self.messages.append(content.decode() if isinstance(content, bytes) else str(content))
        return "250 OK"


def _auth(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


@asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[Mailbox, str]]:
    """An SMTP server with LOGIN auth on a real loopback port; yields (mailbox, apprise url)."""
    box = Mailbox()
    port = free_port()
    ctl = Controller(
        box, hostname="127.0.0.1", port=port, authenticator=_auth, auth_require_tls=False
    )
    await asyncio.to_thread(ctl.start)
    url = (
        f"mailto://rw:{SMTP_PASSWORD}@127.0.0.1:{port}"
        "?smtp=127.0.0.1&from=rw@example.com&to=ops@example.com&mode=insecure"
    )
    try:
        yield box, url
    finally:
        await asyncio.to_thread(ctl.stop)


@asynccontextmanager
async def hanging_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1 << 20)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in writers:
            w.close()
        server.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
