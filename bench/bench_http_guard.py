"""HTTP guard overhead: per-request latency with and without the limits of riskwatch/web.

Run: ``.venv/bin/python bench/bench_http_guard.py [--requests 5000] [--loop asyncio]``.

One daemon (not started: no exchange) serves its routes in this process twice over:

- ``guarded``: as ``riskwatch run`` serves them (:class:`riskwatch.web.server.HttpServer`
  with its connection guard, the middleware with the Host check and the body and request
  timeouts, the access check of every route; the default ``http:`` settings with an
  admin and a read token, so that reads check a token);
- ``bare``: the same handlers on a plain aiohttp ``AppRunner``/``TCPSite``, no guard.

A client in a child process (so its CPU is not the server's) sends ``--requests``
sequential ``GET`` requests per case: on one kept-alive connection, and with a new
connection per request (``Connection: close``). Reported: p50/p99 per request and the
ratio guarded/bare of the medians. The server runs on the daemon's event loop (uvloop
where installed, as ``riskwatch run``; ``--loop asyncio`` for the standard one).
Writes ``build/bench/http_guard.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from common import summary_ms, write_result

from riskwatch.config import load_config_text
from riskwatch.daemon import eventloop
from riskwatch.daemon.app import Daemon
from riskwatch.web.handlers import Endpoints
from riskwatch.web.routes import MAX_BODY, ROUTES, build_app
from riskwatch.web.server import HttpServer

ADMIN = "bench-admin-token-0123456789"
READ = "bench-read-token-0123456789"

CLIENT = r"""
import json, socket, sys, time
port, path, count, keep, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        + ("" if keep else "Connection: close\r\n") + "\r\n").encode()
def read_response(f):
    status = f.readline()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = f.read(length)
    assert status.startswith(b"HTTP/1.1 200"), status
    return body
times = []
s = f = None
for i in range(count + 50):
    t0 = time.perf_counter()
    if s is None:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
    s.sendall(head)
    read_response(f)
    if not keep:
        f.close(); s.close(); s = None
    if i >= 50:
        times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def _daemon(tmp: Path) -> Daemon:
    text = (
        "exchange:\n  url: ws://127.0.0.1:9/\n"
        "accounts: [{name: desk-a, jwt: h.p.s}]\n"
        f"http:\n  listen: 127.0.0.1:0\n  admin_token: {ADMIN}\n  read_token: {READ}\n"
    )
    return Daemon(load_config_text(text, tmp / "riskwatch.yaml", {}))


async def _client(port: int, path: str, count: int, keep: bool) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), path, str(count), "1" if keep else "0", READ,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    times: list[float] = json.loads(out)
    return times


async def _guarded(d: Daemon) -> tuple[int, Any]:
    app = build_app(d.views, d.commands, d.registry, d.guard, connections=d.connection_guard)
    server = HttpServer(app, "127.0.0.1", 0, d.connection_guard, idle_timeout=60.0)
    return await server.start(), server.stop


async def _bare(d: Daemon) -> tuple[int, Any]:
    app = web.Application(client_max_size=MAX_BODY)
    endpoints = Endpoints(d.views, d.commands, d.registry)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, partial(route.handler, endpoints))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return port, runner.cleanup


async def main(requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = _daemon(Path(tmp))
        for path in ("/healthz", "/api/state"):
            for keep in (True, False):
                case = f"{path} {'kept-alive' if keep else 'new connection'}"
                medians = {}
                for name, serve in (("bare", _bare), ("guarded", _guarded)):
                    port, stop = await serve(daemon)
                    try:
                        times = await _client(port, path, requests, keep)
                    finally:
                        await stop()
                    results.setdefault(case, {})[name] = summary_ms(times)
                    medians[name] = results[case][name]["p50_ms"]
                ratio = medians["guarded"] / medians["bare"]
                results[case]["ratio_p50"] = round(ratio, 3)
                print(
                    f"{case:32s} bare p50 {medians['bare']:.3f} ms, guarded p50"
                    f" {medians['guarded']:.3f} ms, ratio {ratio:.2f}"
                )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--loop", choices=eventloop.LOOP_CHOICES, default="default")
    args = parser.parse_args()
    loop = eventloop.resolve(args.loop)
    print(f"event loop: {loop}")
    doc = eventloop.run(main(args.requests), args.loop)
    write_result("http_guard", {"requests": args.requests, "loop": loop, "cases": doc})
