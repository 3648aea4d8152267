"""``GET|POST|DELETE /api/silences`` on the daemon's aiohttp app (PRODUCT.md §6).

``GET /api/silences`` lists every kept silence (``?active=1``: only those active now);
``POST /api/silences`` creates one from ``{"matchers": […], "duration": s | "ends_at": t,
"starts_at"?: t, "created_by": …, "comment": …}`` and answers 201 with it;
``DELETE /api/silences/{id}`` expires it (404 if unknown).

Mutations need ``Authorization: Bearer <admin_token>``. With no token configured they
are disabled (403); a missing or wrong token is refused (401), counted in
:attr:`AdminGuard.refused` and logged with the peer address, never with the token.
The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web

from riskwatch.notify.service import NotifyService
from riskwatch.notify.silences import parse_silence
from riskwatch.secrets import Secret

__all__ = ["AdminGuard", "add_silence_routes"]

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class AdminGuard:
    """The admin-token check for mutating endpoints; ``refused`` counts 401s."""

    def __init__(self, token: Secret | None) -> None:
        self._token = token.reveal().encode() if token is not None and token else None
        self.refused = 0

    def check(self, request: web.Request) -> web.Response | None:
        """None when allowed, else the 403/401 response to return."""
        if self._token is None:
            return _error(403, "disabled: no admin_token is configured")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
        if ok:
            return None
        self.refused += 1
        log.warning(
            "refused %s %s from %s: %s admin token",
            request.method,
            request.path,
            request.remote,
            "wrong" if given else "missing",
        )
        return _error(401, "unauthorized: a valid admin token is required")


def add_silence_routes(
    app: web.Application, service: NotifyService, admin_token: Secret | None
) -> AdminGuard:
    """Register the silence endpoints on ``app``; return the guard (for its counter)."""
    guard = AdminGuard(admin_token)

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
    return guard
