"""The silences HTTP API, the silence CLI and notify-test against loopback servers."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from riskwatch.cli.main import main
from riskwatch.cli.notify_test import notify_test
from riskwatch.cli.silence import run_silence
from riskwatch.clock import Clock, ManualClock
from riskwatch.config import load_config_text
from riskwatch.daemon.app import Daemon
from riskwatch.notify.deliver import DeliveryPolicy
from riskwatch.notify.notice import alert_labels
from riskwatch.store import Store
from riskwatch.web.routes import build_app
from tests.support.notify_sinks import WEBHOOK_TOKEN, webhook
from tests.support.storage_faults import HeldLock

MS = 0.001
T0 = 1_700_000_000.0
ADMIN = "admin-token-7d3c9e1f"


def daemon_of(token: str | None, clock: Clock | None = None, store: Store | None = None) -> Daemon:
    """A daemon (not started: no exchange connection) whose notifier serves the silences."""
    lines = [
        "exchange:",
        "  url: ws://127.0.0.1:9/",
        "  rest_url: http://127.0.0.1:9/",
        "accounts:",
        "  - name: desk-a",
        "    public_key: pk",
        "    secret_key: sk",
    ]
    if token:
        lines += ["http:", f"  admin_token: {token}"]
    config = load_config_text("\n".join(lines) + "\n", "/tmp/riskwatch.yaml", environ={})
    return Daemon(config, clock=clock, store=store)


async def api(daemon: Daemon) -> TestClient[web.Request, web.Application]:
    """The daemon's HTTP routes on a loopback test server."""
    app = build_app(daemon.views, daemon.commands, daemon.registry, daemon.guard)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_mutations_disabled_without_token() -> None:
    """With no admin token, POST and DELETE answer 403 and GET still works."""
    client = await api(daemon_of(None, clock=ManualClock(T0)))
    try:
        r = await client.post("/api/silences", json={"matchers": ["a=b"], "duration": 60})
        assert r.status == 403
        assert "disabled" in (await r.json())["error"]
        assert (await client.delete("/api/silences/x")).status == 403
        assert (await client.get("/api/silences")).status == 200
    finally:
        await client.close()


async def test_silence_lifecycle_with_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong tokens are refused and logged without the token; silences persist and expire."""
    caplog.set_level(logging.INFO)
    clock = ManualClock(T0)
    store = Store.open(tmp_path / "state.db")
    d = daemon_of(ADMIN, clock=clock, store=store)
    svc = d.notifier
    await svc.start()
    client = await api(d)
    try:
        body = {
            "matchers": [{"name": "rule", "op": "=~", "value": "Margin.*"}, "account=desk-a"],
            "duration": 600,
            "created_by": "ops",
            "comment": "exchange maintenance",
        }
        r = await client.post("/api/silences", json=body)
        assert r.status == 401
        r = await client.post(
            "/api/silences", json=body, headers={"Authorization": "Bearer wrong-" + ADMIN}
        )
        assert r.status == 401
        auth = {"Authorization": f"Bearer {ADMIN}"}
        r = await client.post("/api/silences", json={"matchers": []}, headers=auth)
        assert r.status == 400
        assert "matchers" in (await r.json())["error"]
        r = await client.post("/api/silences", json=body, headers=auth)
        assert r.status == 201
        created = await r.json()
        assert created["ends_at"] == T0 + 600
        assert svc.mute_of(alert_labels("MarginUsageHigh", "desk-a", None, "warning")) == {
            "muted": "silenced",
            "silenced_by": created["id"],
        }
        listed = await (await client.get("/api/silences?active=1")).json()
        assert [s["id"] for s in listed["silences"]] == [created["id"]]
        assert [s.id for s in store.silences(active_at=T0 + 1)] == [created["id"]]
        r = await client.delete(f"/api/silences/{created['id']}", headers=auth)
        assert r.status == 200
        assert svc.mute_of(alert_labels("MarginUsageHigh", "desk-a", None, "warning")) == {}
        assert (await client.delete("/api/silences/nope", headers=auth)).status == 404
        clock.advance(10)
        assert (await (await client.get("/api/silences?active=1")).json())["silences"] == []
    finally:
        await client.close()
        await svc.stop()
        store.close()
    assert ADMIN not in caplog.text
    assert "POST /api/silences refused: wrong admin token" in caplog.text


async def test_silence_cli_against_the_api() -> None:
    """silence add, list and expire work through the HTTP API with the admin token."""
    client = await api(daemon_of(ADMIN))
    base = str(client.make_url("")).rstrip("/")
    out = io.StringIO()
    try:
        rc = await asyncio.to_thread(
            lambda: run_silence(
                "add",
                config_path=None,
                url=base,
                matchers=["severity=warning"],
                duration="30m",
                author="me",
                comment="noisy",
                out=out,
            )
        )
        assert rc == 1  # no token in the environment
        import os

        os.environ["RISKWATCH_ADMIN_TOKEN"] = ADMIN
        try:
            rc = await asyncio.to_thread(
                lambda: run_silence(
                    "add",
                    config_path=None,
                    url=base,
                    matchers=["severity=warning"],
                    duration="30m",
                    author="me",
                    comment="noisy",
                    out=out,
                )
            )
            assert rc == 0
            sid = out.getvalue().strip()
            rc = await asyncio.to_thread(
                lambda: run_silence("list", config_path=None, url=base, out=out)
            )
            assert rc == 0
            assert "severity=warning" in out.getvalue()
            assert "by me: noisy" in out.getvalue()
            rc = await asyncio.to_thread(
                lambda: run_silence("expire", config_path=None, url=base, silence_id=sid, out=out)
            )
            assert rc == 0
            assert f"expired {sid}" in out.getvalue()
        finally:
            del os.environ["RISKWATCH_ADMIN_TOKEN"]
        assert ADMIN not in out.getvalue()
    finally:
        await client.close()


async def test_notify_test_reports_each_url_without_secrets(tmp_path: Path) -> None:
    """notify-test delivers to the live URL, fails the dead one, exits 1 and hides tokens."""
    async with webhook() as hook:
        text = (
            "accounts:\n  - name: solo\n    jwt: a.b.c\n"
            "notifications:\n  routes:\n"
            f"    - urls: ['{hook.url()}']\n"
            f"    - urls: ['json://127.0.0.1:1/dead/{WEBHOOK_TOKEN}', '{hook.url('two')}']\n"
        )
        config = load_config_text(text, tmp_path / "riskwatch.yaml", environ={})
        out = io.StringIO()
        policy = DeliveryPolicy(timeout=500 * MS, attempts=1)
        rc = await notify_test(config, out, policy)
        assert rc == 1
        lines = out.getvalue().splitlines()
        assert len(hook.received) == 2
        assert all("test notification" in m["title"] for m in hook.received)
        assert lines[0].startswith("route 0: json://127.0.0.1:")
        assert lines[0].endswith(" sent")
        assert "FAILED" in lines[1]
        assert lines[-1] == "2 delivered, 1 failed"
        assert WEBHOOK_TOKEN not in out.getvalue()
        ok = load_config_text(
            "accounts:\n  - name: solo\n    jwt: a.b.c\n"
            f"notifications:\n  routes:\n    - urls: ['{hook.url()}']\n",
            tmp_path / "riskwatch.yaml",
            environ={},
        )
        assert await notify_test(ok, io.StringIO(), policy) == 0


def test_notify_test_command_without_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The notify-test command exits 1 when no route is configured and 2 on a bad config."""
    cfg = tmp_path / "riskwatch.yaml"
    cfg.write_text("accounts:\n  - name: solo\n    jwt: a.b.c\n")
    assert main(["notify-test", "-c", str(cfg)]) == 1
    assert "no notification route" in capsys.readouterr().out
    cfg.write_text("accounts: 3\n")
    assert main(["notify-test", "-c", str(cfg)]) == 2


async def test_silence_the_store_cannot_write_is_refused_counted_and_unready(
    tmp_path: Path,
) -> None:
    """Another process holds the state database's write lock: a new silence is refused
    with 503 (it is kept nowhere else), counted, and the daemon is unready meanwhile."""
    store = Store.open(tmp_path / "state.db")
    d = daemon_of(ADMIN, clock=ManualClock(T0), store=store)
    await d.notifier.start()
    client = await api(d)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    body = {"matchers": ["account=desk-a"], "duration": 600, "created_by": "ops", "comment": "x"}
    try:
        with HeldLock(tmp_path / "state.db"):
            r = await client.post("/api/silences", json=body, headers=auth)
            assert r.status == 503
            assert "state database cannot be written" in (await r.json())["error"]
        errors = d.registry.get_sample_value("riskwatch_state_errors_total", {"op": "silence"})
        assert errors == 1
        assert "state database cannot be written" in "".join(d.readiness()[1])
        r = await client.post("/api/silences", json=body, headers=auth)
        assert r.status == 201
    finally:
        await client.close()
        await d.notifier.stop()
        store.close()
