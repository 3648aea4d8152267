"""The daemon's HTTP face: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/*`` and ``/``.

Everything here reads frozen views that the core publishes (no lock, no await on the
evaluation path) and never writes a secret: the views it renders hold figures and
names only, and the status page escapes everything it prints. Mutating endpoints
(later: latches, silences, arm/disarm) require ``Authorization: Bearer <admin_token>``
and are disabled when no token is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from riskwatch.metrics import CONTENT_TYPE, exposition_chunks
from riskwatch.secret import Secret
from riskwatch.web import statuspage

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DaemonView(Protocol):
    """What the HTTP layer may read from the running daemon."""

    def alerts_document(self) -> dict[str, Any]:
        """``/api/alerts``: every pending and firing alert (and latched ones)."""
        ...

    def state_document(self) -> dict[str, Any]:
        """``/api/state``: accounts, positions, derived figures; never a secret."""
        ...

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether every account is connected, authenticated and fresh, and why not."""
        ...


MAX_BODY = 64 * 1024
"""Largest request body accepted (the API's inputs are small JSON documents)."""


def _json_default(value: object) -> object:
    return str(value)


def _clean(value: Any) -> Any:
    """Make a document JSON-safe: non-finite floats become strings ("inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def json_response(doc: Any, status: int = 200) -> web.Response:
    """A JSON response with non-finite floats made explicit strings."""
    text = json.dumps(_clean(doc), default=_json_default, indent=1, sort_keys=False)
    return web.Response(text=text, status=status, content_type="application/json")


class AdminGuard:
    """``Authorization: Bearer <admin_token>`` on mutating endpoints (docs/configuration.md, §6).

    No token configured: every mutating endpoint answers 403 (disabled). A missing or
    wrong token: 401, counted in ``on_denied`` and logged without the token. The
    comparison is constant-time.
    """

    def __init__(self, token: Secret | None, on_denied: Callable[[str], None] | None = None):
        self._token = token.reveal().encode() if token is not None else None
        self._on_denied = on_denied

    @property
    def enabled(self) -> bool:
        """Whether mutating endpoints are available at all."""
        return self._token is not None

    def check(self, request: web.Request) -> web.Response | None:
        """None when ``request`` may proceed, else the error response to send."""
        if self._token is None:
            return json_response(
                {"error": "mutating endpoints are disabled: no http.admin_token configured"},
                status=403,
            )
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
        if ok:
            return None
        reason = "missing" if not header else "wrong"
        log.warning(
            "%s %s refused: %s admin token (from %s)",
            request.method,
            request.path,
            reason,
            request.remote,
        )
        if self._on_denied is not None:
            self._on_denied(reason)
        return json_response({"error": "unauthorized"}, status=401)

    def guard(self, handler: Handler) -> Handler:
        """Wrap ``handler`` so that it runs only with the right token."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            refused = self.check(request)
            if refused is not None:
                return refused
            return await handler(request)

        return wrapped


async def read_json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; raises HTTPBadRequest with a clear reason."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def build_app(
    view: DaemonView,
    registry: CollectorRegistry,
    *,
    status_page: Callable[[], str] | None = None,
) -> web.Application:
    """Build the aiohttp application serving the daemon's endpoints."""
    app = web.Application(client_max_size=MAX_BODY)

    async def metrics(request: web.Request) -> web.StreamResponse:
        # Classic text format 0.0.4 whatever the Accept header (Prometheus 2.42 reads
        # it), rendered and written piece by piece with the loop given back in between,
        # so that a scrape of many accounts never holds frame handling for more than
        # one piece (metrics.exposition_chunks; README.md, "Performance").
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await resp.prepare(request)
        for piece in exposition_chunks(registry):
            if piece:
                await resp.write(piece)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, reasons = view.readiness()
        if ok:
            return web.Response(text="ready\n")
        return web.Response(text="not ready\n" + "".join(f"- {r}\n" for r in reasons), status=503)

    async def api_state(_: web.Request) -> web.Response:
        return json_response(view.state_document())

    async def api_alerts(_: web.Request) -> web.Response:
        return json_response(view.alerts_document())

    async def index(_: web.Request) -> web.Response:
        if status_page is not None:
            page = status_page()
        else:
            data = statuspage.PageData(
                state=view.state_document(), alerts=view.alerts_document().get("alerts", [])
            )
            page = statuspage.render(data)
        resp = web.Response(text=page, content_type="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/", index)
    return app
