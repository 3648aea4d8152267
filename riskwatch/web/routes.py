"""Every HTTP route of the daemon, in one table (:data:`ROUTES`): method, path, handler,
who may call it; and the application that serves them. docs/http.md describes each.

Each request passes, in order: the Host check and the body timeout (the middleware),
then the access check of its route (:class:`riskwatch.web.guard.AccessGuard`), then its
handler (:class:`riskwatch.web.handlers.Endpoints`). The connection limits (caps,
header and request timeouts) are :mod:`riskwatch.web.server`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from riskwatch.web.guard import Access, AccessGuard
from riskwatch.web.handlers import Endpoints
from riskwatch.web.jsondoc import error_response
from riskwatch.web.server import ConnectionGuard
from riskwatch.web.view import DaemonCommands, DaemonView

__all__ = ["MAX_BODY", "ROUTES", "Access", "Route", "build_app"]

MAX_BODY: Final = 64 * 1024
"""Largest request body accepted (the API's inputs are small JSON documents)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: ``method path`` served by ``handler`` (an :class:`Endpoints` method)."""

    method: str
    path: str
    handler: Callable[[Endpoints, web.Request], Awaitable[web.StreamResponse]]
    access: Access


ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/metrics", Endpoints.metrics, Access.METRICS),
    Route("GET", "/healthz", Endpoints.healthz, Access.HEALTH),
    Route("GET", "/readyz", Endpoints.readyz, Access.HEALTH),
    Route("GET", "/", Endpoints.status_page, Access.READ),
    Route("GET", "/api/state", Endpoints.state, Access.READ),
    Route("GET", "/api/alerts", Endpoints.alerts, Access.READ),
    Route("GET", "/api/actions", Endpoints.actions, Access.READ),
    Route("GET", "/api/silences", Endpoints.silences, Access.READ),
    Route("POST", "/api/silences", Endpoints.add_silence, Access.ADMIN),
    Route("DELETE", "/api/silences/{id}", Endpoints.expire_silence, Access.ADMIN),
    Route("POST", "/api/latches/reset", Endpoints.reset_latches, Access.ADMIN),
    Route("POST", "/api/arm", Endpoints.arm, Access.ADMIN),
    Route("POST", "/api/disarm", Endpoints.disarm, Access.KILL_SWITCH),
    Route("POST", "/api/reload", Endpoints.reload, Access.ADMIN),
)


def _checked(guard: AccessGuard, access: Access, handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        refused = guard.check(request, access)
        if refused is not None:
            return refused
        return await handler(request)

    return checked


def _limits(
    guard: AccessGuard, connections: ConnectionGuard | None, body_timeout: float
) -> Middleware:
    """The middleware: Host check, body timeout, request start and end marks."""

    def refused(reason: str) -> None:
        if connections is not None:
            connections.refused(reason)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if connections is not None:
            connections.request_started(transport)
        try:
            denied = guard.check_host(request)
            if denied is not None:
                return denied
            if request.body_exists:
                try:
                    async with asyncio.timeout(body_timeout):
                        await request.read()  # at most MAX_BODY (413 beyond)
                except TimeoutError:
                    refused("body_timeout")
                    resp = error_response(408, "request body not received in time")
                    resp.force_close()
                    return resp
            answer = await handler(request)
            if not answer.prepared:
                # Written here, not after the middleware returns, so that the request
                # timeout also covers a client that does not read its answer.
                await answer.prepare(request)
                await answer.write_eof()
            return answer
        finally:
            if connections is not None:
                connections.request_finished(transport)

    return limits


def build_app(
    view: DaemonView,
    commands: DaemonCommands,
    registry: CollectorRegistry,
    guard: AccessGuard,
    *,
    connections: ConnectionGuard | None = None,
    body_timeout: float = 10.0,
    routes: tuple[Route, ...] = ROUTES,
) -> web.Application:
    """The aiohttp application serving ``routes`` over ``view`` and ``commands``."""
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[_limits(guard, connections, body_timeout)],
    )
    endpoints = Endpoints(view, commands, registry)
    for route in routes:
        handler = _checked(guard, route.access, partial(route.handler, endpoints))
        app.router.add_route(route.method, route.path, handler)
    return app
