"""The HTTP listener: serves the application of :mod:`riskwatch.web.routes` on host:port."""

from __future__ import annotations

import logging

from aiohttp import web

__all__ = ["HttpServer"]

log = logging.getLogger(__name__)


class HttpServer:
    """One aiohttp listener; :meth:`start` binds, :meth:`stop` closes (idempotent)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Bind and serve; return the port (the OS's choice when configured as 0)."""
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
