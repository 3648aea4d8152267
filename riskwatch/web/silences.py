"""``GET|POST|DELETE /api/silences`` on the daemon's aiohttp app (docs/metrics.md).

``GET /api/silences`` lists every kept silence (``?active=1``: only those active now);
``POST /api/silences`` creates one from ``{"matchers": […], "duration": s | "ends_at": t,
"starts_at"?: t, "created_by": …, "comment": …}`` and answers 201 with it;
``DELETE /api/silences/{id}`` expires it (404 if unknown).

Mutations need ``Authorization: Bearer <admin_token>``, checked by the daemon's
:class:`riskwatch.web.server.AdminGuard`: with no token configured they are disabled (403); a
missing or wrong token is refused (401), counted and logged without the token.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from riskwatch.notify.service import NotifyService
from riskwatch.notify.silences import parse_silence

__all__ = ["Guard", "add_silence_routes"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Guard(Protocol):
    """The admin-token check (:class:`riskwatch.web.server.AdminGuard`)."""

    def check(self, request: web.Request) -> web.Response | None:
        """None when allowed, else the 403/401 response to return."""
        ...


def add_silence_routes(app: web.Application, service: NotifyService, guard: Guard) -> None:
    """Register the silence endpoints on ``app``, mutations behind ``guard``."""

    async def list_silences(request: web.Request) -> web.Response:
        silences = await service.list_silences()
        if request.query.get("active") in ("1", "true", "yes"):
            now = service.clock.now()
            silences = [s for s in silences if s.active_at(now)]
        return web.json_response({"silences": [s.to_dict() for s in silences]})

    async def create(request: web.Request) -> web.Response:
        denied = guard.check(request)
        if denied is not None:
            return denied
        try:
            doc: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "body is not json")
        try:
            req = parse_silence(doc, service.clock.now())
        except ValueError as exc:
            return _error(400, str(exc))
        silence = await service.add_silence(req)
        return web.json_response(silence.to_dict(), status=201)

    async def expire(request: web.Request) -> web.Response:
        denied = guard.check(request)
        if denied is not None:
            return denied
        silence_id = request.match_info["id"]
        silence = await service.expire_silence(silence_id)
        if silence is None:
            return _error(404, f"no silence {silence_id[:64]}")
        return web.json_response(silence.to_dict())

    app.router.add_get("/api/silences", list_silences)
    app.router.add_post("/api/silences", create)
    app.router.add_delete("/api/silences/{id}", expire)
