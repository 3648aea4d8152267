"""Every HTTP route of the daemon, in one table (:data:`ROUTES`): method, path,
handler, who may call it. docs/http.md describes each endpoint.

Access levels (:class:`Access`):

- ``open``: anyone who reaches the port (``/metrics``, ``/healthz``, ``/readyz``);
- ``read``: the status page and the read API;
- ``admin``: mutations; ``Authorization: Bearer <admin_token>`` required
  (:class:`riskwatch.web.guard.AdminGuard`), disabled without a configured token.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from riskwatch.web.guard import AdminGuard
from riskwatch.web.handlers import Endpoints
from riskwatch.web.view import DaemonCommands, DaemonView

__all__ = ["MAX_BODY", "ROUTES", "Access", "Route", "build_app"]

MAX_BODY: Final = 64 * 1024
"""Largest request body accepted (the API's inputs are small JSON documents)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    """Who may call a route."""

    OPEN = "open"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: ``method path`` served by ``handler`` (an :class:`Endpoints` method)."""

    method: str
    path: str
    handler: Callable[[Endpoints, web.Request], Awaitable[web.StreamResponse]]
    access: Access


ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/metrics", Endpoints.metrics, Access.OPEN),
    Route("GET", "/healthz", Endpoints.healthz, Access.OPEN),
    Route("GET", "/readyz", Endpoints.readyz, Access.OPEN),
    Route("GET", "/", Endpoints.status_page, Access.READ),
    Route("GET", "/api/state", Endpoints.state, Access.READ),
    Route("GET", "/api/alerts", Endpoints.alerts, Access.READ),
    Route("GET", "/api/actions", Endpoints.actions, Access.READ),
    Route("GET", "/api/silences", Endpoints.silences, Access.READ),
    Route("POST", "/api/silences", Endpoints.add_silence, Access.ADMIN),
    Route("DELETE", "/api/silences/{id}", Endpoints.expire_silence, Access.ADMIN),
    Route("POST", "/api/latches/reset", Endpoints.reset_latches, Access.ADMIN),
    Route("POST", "/api/arm", Endpoints.arm, Access.ADMIN),
    Route("POST", "/api/disarm", Endpoints.disarm, Access.ADMIN),
    Route("POST", "/api/reload", Endpoints.reload, Access.ADMIN),
)


def _admin_only(guard: AdminGuard, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = guard.check(request)
        if refused is not None:
            return refused
        return await handler(request)

    return guarded


def build_app(
    view: DaemonView,
    commands: DaemonCommands,
    registry: CollectorRegistry,
    guard: AdminGuard,
    routes: tuple[Route, ...] = ROUTES,
) -> web.Application:
    """The aiohttp application serving ``routes`` over ``view`` and ``commands``."""
    app = web.Application(client_max_size=MAX_BODY)
    endpoints = Endpoints(view, commands, registry)
    for route in routes:
        handler: Handler = partial(route.handler, endpoints)
        if route.access is Access.ADMIN:
            handler = _admin_only(guard, handler)
        app.router.add_route(route.method, route.path, handler)
    return app
