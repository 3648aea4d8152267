"""The HTTP handlers: each turns one request into one read of the view or one command.

Which handler serves which method and path, and who may call it, is the table in
:mod:`riskwatch.web.routes`; access checks are applied there, not here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from riskwatch.metrics import CONTENT_TYPE, exposition_chunks
from riskwatch.web import statuspage
from riskwatch.web.jsondoc import error_response, json_response, read_json_body
from riskwatch.web.view import CommandRefused, DaemonCommands, DaemonView

__all__ = ["WRITE_SIZE", "Endpoints"]

WRITE_SIZE = 64 * 1024
"""Bytes of ``/metrics`` body gathered before each socket write."""


def _actor(request: web.Request) -> str:
    return f"api ({request.remote})"


class Endpoints:
    """Handlers over one daemon's view and commands (and its metrics registry)."""

    def __init__(
        self, view: DaemonView, commands: DaemonCommands, registry: CollectorRegistry
    ) -> None:
        self.view = view
        self.commands = commands
        self.registry = registry

    # --- open -----------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics``: the Prometheus text format 0.0.4.

        Whatever the Accept header (Prometheus 2.42 reads it), rendered and written
        piece by piece with the loop given back in between, so that a scrape of many
        accounts never holds frame handling for more than one piece
        (metrics.exposition_chunks; docs/performance.md).
        """
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await resp.prepare(request)
        # Pieces are small (a family's header is one): written in writes of about
        # WRITE_SIZE bytes, a socket write each, the loop given back after every piece.
        pending: list[bytes] = []
        size = 0
        for piece in exposition_chunks(self.registry):
            if piece:
                pending.append(piece)
                size += len(piece)
                if size >= WRITE_SIZE:
                    await resp.write(b"".join(pending))
                    pending, size = [], 0
            await asyncio.sleep(0)
        if pending:
            await resp.write(b"".join(pending))
        await resp.write_eof()
        return resp

    async def healthz(self, _: web.Request) -> web.Response:
        """``GET /healthz``: the process serves HTTP."""
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        """``GET /readyz``: 200 when every account is connected and fresh, else 503 and why."""
        ok, reasons = self.view.readiness()
        if ok:
            return web.Response(text="ready\n")
        return web.Response(text="not ready\n" + "".join(f"- {r}\n" for r in reasons), status=503)

    # --- read -----------------------------------------------------------------------

    async def status_page(self, _: web.Request) -> web.Response:
        """``GET /``: the status page (:mod:`riskwatch.web.statuspage`), rendered off the
        event loop so that frames are not held while a large page is built."""
        page = await asyncio.to_thread(statuspage.render, statuspage.page_data(self.view))
        resp = web.Response(text=page, content_type="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def state(self, _: web.Request) -> web.Response:
        """``GET /api/state``: accounts, positions, figures, actions mode."""
        return json_response(self.view.state_document())

    async def alerts(self, _: web.Request) -> web.Response:
        """``GET /api/alerts``: pending, firing and latched alerts."""
        return json_response(self.view.alerts_document())

    async def actions(self, request: web.Request) -> web.Response:
        """``GET /api/actions?limit=N&account=A``: the audit log, newest first."""
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return error_response(400, "limit must be an integer")
        return json_response(self.view.actions_document(limit, request.query.get("account")))

    async def silences(self, request: web.Request) -> web.Response:
        """``GET /api/silences`` (``?active=1``: only those active now)."""
        active = request.query.get("active") in ("1", "true", "yes")
        return json_response({"silences": await self.view.silences(active_only=active)})

    # --- admin ----------------------------------------------------------------------

    async def arm(self, request: web.Request) -> web.Response:
        """``POST /api/arm``: mode armed, kill switch off (409 when the config forbids it)."""
        try:
            return json_response(self.commands.arm(actor=_actor(request)))
        except CommandRefused as exc:
            return error_response(exc.status, exc.message)

    async def disarm(self, request: web.Request) -> web.Response:
        """``POST /api/disarm``: the kill switch; nothing more is sent."""
        return json_response(self.commands.disarm(actor=_actor(request)))

    async def reload(self, _: web.Request) -> web.Response:
        """``POST /api/reload``: reload rules and routes now; 422 when refused."""
        ok, outcome = await self.commands.reload("api")
        return json_response(outcome, status=200 if ok else 422)

    async def reset_latches(self, request: web.Request) -> web.Response:
        """``POST /api/latches/reset`` ``{"account", "rule"?, "symbol"?}``.

        See docs/design.md#precise-points.
        """
        body = await read_json_body(request)
        account = body.get("account")
        rule, symbol = body.get("rule"), body.get("symbol")
        if not isinstance(account, str):
            return error_response(400, f"unknown account {account!r}")
        for key, value in (("rule", rule), ("symbol", symbol)):
            if value is not None and not isinstance(value, str):
                return error_response(400, f"{key} must be a string")
        try:
            reset = self.commands.reset_latches(account, rule, symbol, actor="api")
        except CommandRefused as exc:
            return error_response(exc.status, exc.message)
        return json_response({"reset": reset})

    async def add_silence(self, request: web.Request) -> web.Response:
        """``POST /api/silences``: create a silence; 201 with it."""
        try:
            doc: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "body is not json")
        try:
            silence = await self.commands.add_silence(doc)
        except CommandRefused as exc:
            return error_response(exc.status, exc.message)
        return json_response(silence, status=201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        """``DELETE /api/silences/{id}``: expire it now; 404 when unknown."""
        silence_id = request.match_info["id"]
        silence = await self.commands.expire_silence(silence_id)
        if silence is None:
            return error_response(404, f"no silence {silence_id[:64]}")
        return json_response(silence)
