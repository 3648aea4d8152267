"""A real Alertmanager (Debian's ``prometheus-alertmanager``) with a webhook receiver.

``alertmanager_binary()`` finds the binary (tests skip with a reason when it is
absent: ``scripts/ci-apt.sh`` installs it). :class:`Webhook` is an aiohttp server
that keeps every notification Alertmanager sends it; :func:`running_alertmanager`
starts Alertmanager on a free loopback port with clustering off, routing everything to
the webhook with short group timings, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.rig import free_port, wait_for


def alertmanager_binary() -> str:
    """The Alertmanager binary, or skip the test saying how to get it."""
    for name in ("alertmanager", "prometheus-alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Alertmanager is not installed (Debian package prometheus-alertmanager)")


class Webhook:
    """Alertmanager's webhook receiver: every notification body, parsed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.notifications: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.notifications.append(json.loads(await request.read()))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def alerts(self, status: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """Alerts of every notification (one entry per notification they were in)."""
        out = []
        for note in self.notifications:
            for alert in note["alerts"]:
                if status is not None and alert["status"] != status:
                    continue
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    out.append(alert)
        return out


@dataclass
class Alertmanager:
    """A running Alertmanager: its base URL and an HTTP client for its v2 API."""

    url: str
    log: Path

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, self.url + "/api/v2" + path, json=body) as resp,
        ):
            assert resp.status // 100 == 2, await resp.text()
            text = await resp.text()
            return json.loads(text) if text else None

    async def silence(self, comment: str, **labels: str) -> str:
        """A silence for ``labels`` (equality matchers), an hour long; its id."""
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in labels.items()
            ],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "riskwatch tests",
            "comment": comment,
        }
        return str((await self.api("POST", "/silences", body))["silenceID"])

    async def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.api("GET", "/alerts")
        return result


CONFIG = """
route:
  receiver: hook
  group_by: [alertname, account]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@asynccontextmanager
async def running_alertmanager(
    tmp: Path, webhook: Webhook, port: int | None = None
) -> AsyncIterator[Alertmanager]:
    """Alertmanager on ``port`` (default: a free one) of loopback, every alert routed to
    ``webhook``."""
    binary = alertmanager_binary()
    folder = tmp / "alertmanager"
    folder.mkdir(exist_ok=True)
    config = folder / "alertmanager.yml"
    config.write_text(CONFIG.format(url=webhook.url), encoding="utf-8")
    port = port or free_port()
    log = folder / "alertmanager.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=out,
        )
    am = Alertmanager(f"http://127.0.0.1:{port}", log)

    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(am.url + "/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not await ready():
            assert proc.poll() is None, log.read_text()
            assert asyncio.get_running_loop().time() < deadline, "alertmanager not ready"
            await asyncio.sleep(0.1)
        yield am
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


__all__ = ["Alertmanager", "Webhook", "alertmanager_binary", "running_alertmanager", "wait_for"]
