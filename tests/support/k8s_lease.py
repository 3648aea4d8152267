"""A small HTTP server with the Kubernetes Lease API's semantics (``coordination.k8s.io/v1``).

A real API server cannot run here, so the Kubernetes backend is tested against this:
``GET``/``POST``/``PUT`` of ``/apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]``
with the API server's rules that matter for leader election — ``404`` for a Lease that
does not exist, ``409 AlreadyExists`` on creating one that does, ``409 Conflict`` on a
``PUT`` whose ``metadata.resourceVersion`` is not the stored one, a new
``resourceVersion`` on every write, ``401`` without the expected bearer token.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aiohttp import web

from tests.support.rig import free_port

PREFIX = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


class LeaseServer:
    """The fake API server; ``leases[(ns, name)]`` holds the stored objects."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.port = free_port()
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 100
        self.requests: list[tuple[str, str, int]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
        return web.json_response(body, status=code)

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._status(401, "Unauthorized", "Unauthorized")
        ns = request.match_info["ns"]
        name = request.match_info.get("name")
        if request.method == "GET" and name:
            lease = self.leases.get((ns, name))
            if lease is None:
                return self._status(404, "NotFound", f'leases "{name}" not found')
            return web.json_response(lease)
        body = json.loads(await request.read())
        if request.method == "POST" and not name:
            name = body["metadata"]["name"]
            if (ns, name) in self.leases:
                return self._status(409, "AlreadyExists", f'leases "{name}" already exists')
            self.version += 1
            body["metadata"].update(namespace=ns, resourceVersion=str(self.version))
            self.leases[(ns, name)] = copy.deepcopy(body)
            return web.json_response(body, status=201)
        if request.method == "PUT" and name:
            stored = self.leases.get((ns, name))
            if stored is None:
                return self._status(404, "NotFound", f'leases "{name}" not found')
            if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
                return self._status(
                    409, "Conflict", "the object has been modified; please apply your changes"
                )
            self.version += 1
            body["metadata"]["resourceVersion"] = str(self.version)
            self.leases[(ns, name)] = copy.deepcopy(body)
            return web.json_response(body)
        return self._status(405, "MethodNotAllowed", "not supported here")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", PREFIX + "/{name}", self.handle)
        app.router.add_route("*", PREFIX, self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
