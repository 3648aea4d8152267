"""The HTTP surface holds (docs/http.md): connection caps, header, body, idle and request
timeouts, admin rate limit, failed-login throttle, read token, Host check, and arming
that cannot override the configuration. A real daemon serves each test on loopback;
every test fails if its limit is removed."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from riskwatch.cli.control import run_control
from riskwatch.cli.silence import run_silence
from riskwatch.config import load_config_text
from riskwatch.daemon.app import Daemon
from riskwatch.web.guard import Access
from riskwatch.web.handlers import Endpoints
from riskwatch.web.routes import Route, build_app
from riskwatch.web.server import HttpServer
from tests.support.rig import Http, in_process, metric, offline_setup

ADMIN = "adm-limits-0123456789abcdef"
READ = "read-limits-0123456789abcdef"


@asynccontextmanager
async def served(tmp: Path, *http_extra: str, **options: Any) -> AsyncIterator[tuple[Daemon, Http]]:
    """A daemon whose exchange never answers, with ``http_extra`` settings."""
    setup = offline_setup(tmp, admin_token=ADMIN, http_extra=list(http_extra), **options)
    async with in_process(setup) as daemon:
        assert daemon.http_port is not None
        http = Http(daemon.http_port)
        try:
            yield daemon, http
        finally:
            await http.close()


async def connect(
    port: int, data: bytes = b"", local: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection (keep the writer referenced: a dropped one closes the socket)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def closed_after(reader: asyncio.StreamReader, limit: float = 10.0) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    received = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return time.monotonic() - started, received


def request_bytes(port: int, path: str = "/healthz", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


async def refused(http: Http, reason: str) -> float:
    return metric(await http.metrics(), "riskwatch_http_refused_total", reason=reason)


# --- per connection ---------------------------------------------------------------------


async def test_connections_past_the_cap_get_503_and_are_closed_at_once(tmp_path: Path) -> None:
    """With 3 connections held, a 4th is answered 503 and closed; a freed slot serves again."""
    async with served(tmp_path, "max_connections: 3", "header_timeout: 30s") as (d, http):
        port = d.http_port
        assert port is not None
        held = [await connect(port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert d.registry.get_sample_value("riskwatch_http_connections") == 3
        reader, _writer1 = await connect(port)
        seconds, answer = await closed_after(reader, 2.0)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert seconds < 1.0
        held[0][1].close()
        await asyncio.sleep(0.1)
        reader, _writer0 = await connect(port, request_bytes(port, extra="Connection: close\r\n"))
        _, answer = await closed_after(reader)
        assert answer.startswith(b"HTTP/1.1 200 ")
        for _, w in held[1:]:
            w.close()
        await asyncio.sleep(0.1)
        assert await refused(http, "connection_cap") == 1


async def test_one_client_cannot_take_every_connection(tmp_path: Path) -> None:
    """Past max_connections_per_client, one address is refused while another is served."""
    async with served(tmp_path, "max_connections_per_client: 2", "header_timeout: 30s") as (d, _):
        port = d.http_port
        assert port is not None
        held = [await connect(port) for _ in range(2)]
        reader, _writer2 = await connect(port)
        _, answer = await closed_after(reader, 2.0)
        assert answer.startswith(b"HTTP/1.1 503 ")
        reader, _writer3 = await connect(
            port, request_bytes(port, extra="Connection: close\r\n"), local="127.0.0.2"
        )
        _, answer = await closed_after(reader)
        assert answer.startswith(b"HTTP/1.1 200 ")
        for _, w in held:
            w.close()


async def test_partial_header_is_dropped_after_the_header_timeout(tmp_path: Path) -> None:
    """Slowloris: a header that never ends is dropped after header_timeout, not idle_timeout;
    so is a connection that sends nothing at all."""
    async with served(tmp_path, "header_timeout: 1s", "idle_timeout: 30s") as (d, http):
        port = d.http_port
        assert port is not None
        partial, _writer4 = await connect(
            port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        )
        silent, _writer5 = await connect(port)
        seconds, answer = await closed_after(partial)
        assert 0.8 < seconds < 3.0
        assert answer == b""
        seconds, _ = await closed_after(silent)
        assert seconds < 3.0
        assert await refused(http, "header_timeout") == 2


async def test_a_stalled_second_request_on_a_kept_connection_is_dropped(tmp_path: Path) -> None:
    """After an answered request, the next partial header gets the header timeout too."""
    async with served(tmp_path, "header_timeout: 1s", "idle_timeout: 30s") as (d, _):
        port = d.http_port
        assert port is not None
        reader, writer = await connect(port, request_bytes(port))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        await reader.readexactly(3)  # "ok\n"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        seconds, _ = await closed_after(reader)
        assert 0.8 < seconds < 3.0


async def test_an_idle_kept_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    """A kept-alive connection with no new request is closed after idle_timeout."""
    async with served(tmp_path, "header_timeout: 30s", "idle_timeout: 1s") as (d, _):
        port = d.http_port
        assert port is not None
        reader, _writer6 = await connect(port, request_bytes(port))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        await reader.readexactly(3)
        seconds, _ = await closed_after(reader)
        assert seconds < 3.0


async def test_a_body_that_never_arrives_gets_408(tmp_path: Path) -> None:
    """A request whose body stalls is answered 408 after body_timeout and closed."""
    async with served(tmp_path, "body_timeout: 1s", "idle_timeout: 30s") as (d, http):
        port = d.http_port
        assert port is not None
        head = (
            f"POST /api/latches/reset HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        ).encode()
        reader, _writer7 = await connect(port, head + b'{"account":')
        seconds, answer = await closed_after(reader)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.8 < seconds < 4.0
        assert await refused(http, "body_timeout") == 1


async def test_a_request_not_answered_in_time_is_dropped(tmp_path: Path) -> None:
    """A request not answered within idle_timeout of its header block loses its client
    (here a deliberately slow handler stands for a client that stopped reading)."""
    config = load_config_text(
        "exchange:\n  url: ws://127.0.0.1:9/\n  rest_url: http://127.0.0.1:9/\n"
        "accounts: [{name: a, jwt: h.p.s}]\n"
        "http:\n  listen: 127.0.0.1:0\n  idle_timeout: 1s\n",
        tmp_path / "riskwatch.yaml",
        {},
    )
    daemon = Daemon(config)

    async def slow(_: Endpoints, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(text="late")

    app = build_app(
        daemon.views,
        daemon.commands,
        daemon.registry,
        daemon.guard,
        connections=daemon.connection_guard,
        routes=(Route("GET", "/slow", slow, Access.HEALTH),),
    )
    server = HttpServer(app, "127.0.0.1", 0, daemon.connection_guard, idle_timeout=1.0)
    port = await server.start()
    try:
        reader, _w = await connect(port, request_bytes(port, "/slow"))
        seconds, answer = await closed_after(reader)
        assert answer == b""
        assert 0.8 < seconds < 3.0
        sample = daemon.registry.get_sample_value(
            "riskwatch_http_refused_total", {"reason": "request_timeout"}
        )
        assert sample == 1
    finally:
        await server.stop()


async def test_a_client_that_does_not_read_its_answer_is_dropped(tmp_path: Path) -> None:
    """An answer larger than the socket buffers, never read: dropped after idle_timeout."""
    config = load_config_text(
        "exchange:\n  url: ws://127.0.0.1:9/\n  rest_url: http://127.0.0.1:9/\n"
        "accounts: [{name: a, jwt: h.p.s}]\n"
        "http:\n  listen: 127.0.0.1:0\n  idle_timeout: 1s\n",
        tmp_path / "riskwatch.yaml",
        {},
    )
    daemon = Daemon(config)

    async def big(_: Endpoints, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * (64 << 20))

    app = build_app(
        daemon.views,
        daemon.commands,
        daemon.registry,
        daemon.guard,
        connections=daemon.connection_guard,
        routes=(Route("GET", "/big", big, Access.HEALTH),),
    )
    server = HttpServer(app, "127.0.0.1", 0, daemon.connection_guard, idle_timeout=1.0)
    port = await server.start()
    try:
        _r, _w = await connect(port, request_bytes(port, "/big"))
        started = time.monotonic()

        def dropped() -> bool:
            sample = daemon.registry.get_sample_value(
                "riskwatch_http_refused_total", {"reason": "request_timeout"}
            )
            return sample == 1

        while not dropped() and time.monotonic() - started < 5.0:
            await asyncio.sleep(0.05)
        assert dropped()
        assert 0.8 < time.monotonic() - started < 3.0
        assert daemon.connection_guard.open_connections == 0
    finally:
        await server.stop()


# --- per request ------------------------------------------------------------------------


async def test_admin_requests_past_the_rate_get_429(tmp_path: Path) -> None:
    """Past admin_requests_per_minute, authenticated admin calls get 429 with Retry-After;
    calls without the token do not spend the budget; reads and disarm are never limited."""
    async with served(tmp_path, "admin_requests_per_minute: 3") as (_, http):
        reset = {"account": "desk-a"}
        for _ in range(5):
            status, _ = await http.request("POST", "/api/latches/reset", json_body=reset)
            assert status == 401
        for _ in range(3):
            status, _ = await http.request(
                "POST", "/api/latches/reset", token=ADMIN, json_body=reset
            )
            assert status == 200
        status, text = await http.request(
            "POST", "/api/latches/reset", token=ADMIN, json_body=reset
        )
        assert status == 429
        assert "too many admin requests" in text
        assert (await http.get("/api/state"))[0] == 200
        for _ in range(5):
            assert (await http.request("POST", "/api/disarm", token=ADMIN))[0] == 200
        assert await refused(http, "admin_rate") == 1


async def test_failed_logins_throttle_the_address(tmp_path: Path) -> None:
    """After failed_logins_per_minute wrong tokens, even the right one gets 429 from that
    address, while another address is served."""
    async with served(tmp_path, "failed_logins_per_minute: 3") as (d, http):
        for _ in range(5):  # no token at all: refused, not counted as a guess
            assert (await http.request("POST", "/api/disarm"))[0] == 401
        for _ in range(3):
            assert (await http.request("POST", "/api/disarm", token="wrong-" + ADMIN))[0] == 401
        status, text = await http.request("POST", "/api/disarm", token=ADMIN)
        assert status == 429
        assert "failed logins" in text
        assert ADMIN not in text
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            async with other.post(
                f"http://127.0.0.1:{d.http_port}/api/disarm",
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as resp:
                assert resp.status == 200
        assert await refused(http, "login_throttled") == 1


async def test_read_token_protects_the_page_and_the_read_api(tmp_path: Path) -> None:
    """With a read token, / and /api/* need it (bearer or basic, or the admin token);
    /metrics, /healthz and /readyz stay open."""
    async with served(tmp_path, f"read_token: {READ}", "failed_logins_per_minute: 100") as (
        _,
        http,
    ):
        basic = base64.b64encode(f"ops:{READ}".encode()).decode()
        for path in ("/", "/api/state", "/api/alerts", "/api/actions", "/api/silences"):
            status, text = await http.get(path)
            assert status == 401, path
            assert READ not in text
            assert (await http.request("GET", path, token=READ))[0] == 200, path
            assert (await http.request("GET", path, token=ADMIN))[0] == 200, path
            ok = await http.request("GET", path, headers={"Authorization": f"Basic {basic}"})
            assert ok[0] == 200, path
            assert (await http.request("GET", path, token="x" * 20))[0] == 401, path
        assert (await http.get("/metrics"))[0] == 200
        assert (await http.get("/healthz"))[0] == 200
        assert (await http.get("/readyz"))[0] == 503  # open, and unready: no exchange here


async def test_browsers_are_asked_for_the_read_token(tmp_path: Path) -> None:
    """The 401 of a read route carries a basic-auth challenge (a browser prompts)."""
    async with served(tmp_path, f"read_token: {READ}") as (d, _):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{d.http_port}/") as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Basic ")


async def test_metrics_and_health_can_be_protected(tmp_path: Path) -> None:
    """protect_metrics and protect_health put /metrics, /healthz and /readyz behind the token."""
    async with served(
        tmp_path, f"read_token: {READ}", "protect_metrics: true", "protect_health: true"
    ) as (_, http):
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await http.get(path))[0] == 401, path
        assert (await http.request("GET", "/metrics", token=READ))[0] == 200
        assert (await http.request("GET", "/healthz", token=READ))[0] == 200


async def test_foreign_host_header_is_refused_on_a_loopback_listener(tmp_path: Path) -> None:
    """DNS rebinding: a page served as evil.example cannot read a loopback daemon."""
    async with served(tmp_path) as (d, http):
        port = d.http_port
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            status, text = await http.request("GET", "/api/state", headers={"Host": host})
            assert status == 403, host
            assert "host not allowed" in text
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
            assert (await http.request("GET", "/api/state", headers={"Host": host}))[0] == 200
        assert await refused(http, "host") == 3


async def test_allowed_hosts_names_the_hosts_served(tmp_path: Path) -> None:
    """An explicit allowed_hosts list replaces the loopback default; '*' turns it off."""
    async with served(tmp_path, "allowed_hosts: [riskwatch.internal]") as (_, http):
        ok = await http.request("GET", "/healthz", headers={"Host": "riskwatch.internal:80"})
        assert ok[0] == 200
        assert (await http.request("GET", "/healthz", headers={"Host": "127.0.0.1"}))[0] == 403
    async with served(tmp_path, "allowed_hosts: ['*']") as (_, http):
        assert (await http.request("GET", "/healthz", headers={"Host": "any.example"}))[0] == 200


# --- arming -----------------------------------------------------------------------------


async def test_arm_cannot_override_a_dry_run_config(tmp_path: Path) -> None:
    """POST /api/arm answers 409 when the config says dry-run; disarm still works."""
    async with served(tmp_path, mode="dry-run") as (d, http):
        status, text = await http.request("POST", "/api/arm", token=ADMIN)
        assert status == 409
        assert "actions.mode: dry-run" in text
        assert d.state_document()["mode"] == "dry-run"
        assert not d.state_document()["armed"]
        status, _ = await http.request("POST", "/api/disarm", token=ADMIN)
        assert status == 200
        assert d.state_document()["kill_switch"] is True


async def test_arm_cannot_clear_a_configured_kill_switch(tmp_path: Path) -> None:
    """POST /api/arm answers 409 when the config sets kill_switch: true."""
    async with served(tmp_path, mode="armed", actions_extra=["kill_switch: true"]) as (d, http):
        status, text = await http.request("POST", "/api/arm", token=ADMIN)
        assert status == 409
        assert "kill_switch: true" in text
        assert d.state_document()["kill_switch"] is True
        assert not d.state_document()["armed"]


async def test_arm_undoes_a_remote_disarm_of_an_armed_config(tmp_path: Path) -> None:
    """Where the config says armed, disarm then arm over HTTP re-arms."""
    async with served(tmp_path, mode="armed") as (d, http):
        assert (await http.request("POST", "/api/disarm", token=ADMIN))[0] == 200
        assert d.state_document()["armed"] is False
        assert (await http.request("POST", "/api/arm", token=ADMIN))[0] == 200
        assert d.state_document()["armed"] is True


async def test_operator_commands_read_with_the_admin_token(tmp_path: Path) -> None:
    """``riskwatch actions`` and ``silence list`` pass a read token with the admin token."""
    async with served(tmp_path, f"read_token: {READ}") as (d, _):
        base = f"http://127.0.0.1:{d.http_port}"
        token_file = tmp_path / "admin.token"
        token_file.write_text(ADMIN + "\n", encoding="utf-8")
        out = io.StringIO()
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(
            None, lambda: run_control("actions", url=base, token_file=token_file, out=out)
        )
        assert code == 0, out.getvalue()
        assert "mode dry-run" in out.getvalue()
        os.environ["RISKWATCH_ADMIN_TOKEN"] = ADMIN
        try:
            code = await loop.run_in_executor(
                None, lambda: run_silence("list", config_path=None, url=base, out=out)
            )
        finally:
            del os.environ["RISKWATCH_ADMIN_TOKEN"]
        assert code == 0, out.getvalue()
        assert ADMIN not in out.getvalue()
