"""A full armed scenario, then every output channel is searched for every secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.rig import (
    ACTION_COMMANDS,
    DaemonProcess,
    Http,
    free_port,
    setup_for,
    simulator,
    wait_for,
)

TOKEN = "adm-Sx41-token-e5f0c2"
NOTIFY_PASSWORD = "npw-Qm83-hook-a9d1"


class Sink:
    """A webhook receiver that fails its first two deliveries, then keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(status=500 if len(self.bodies) <= 2 else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_in_any_output(tmp_path: Path, log_format: str) -> None:
    """Logs (text and JSON lines), every endpoint, error replies, notifications and the
    state database hold no secret."""
    sink = Sink()
    await sink.start()
    try:
        async with simulator("crash", speed=10.0, pulse_interval=0.1) as (sim, qfex_secret):
            setup = setup_for(
                sim, tmp_path, qfex_secret, mode="armed", admin_token=TOKEN, port=free_port(),
                notify_urls=[f"json://rw:{NOTIFY_PASSWORD}@127.0.0.1:{sink.port}/hook"],
            )  # fmt: skip
            proc = DaemonProcess(
                setup.write(), tmp_path / "daemon.log", log_level="debug", log_format=log_format
            )
            proc.start()
            http = Http(setup.port)
            outputs: list[str] = []
            try:
                await wait_for(
                    lambda: any(
                        f.frame.get("type") == "close_position"
                        for f in sim.received_commands("desk-a")
                        if isinstance(f.frame, dict)
                    ),
                    timeout=30,
                    what="for the flatten action",
                )
                await wait_for(lambda: len(sink.bodies) >= 3, timeout=30, what="for notices")
                for path in ("/", "/metrics", "/healthz", "/readyz", "/api/state",
                             "/api/alerts", "/api/actions", "/api/silences", "/nope"):  # fmt: skip
                    outputs.append((await http.get(path))[1])
                for token in (None, "wrong", TOKEN + "0"):
                    outputs.append((await http.request("POST", "/api/arm", token=token))[1])
                for body in (b"{", b"[]", b'{"account": 1}', b'{"account": "zz"}'):
                    outputs.append(
                        (await http.request("POST", "/api/latches/reset", token=TOKEN, data=body))[
                            1
                        ]
                    )
                silence = {"matchers": [{"name": "rule", "value": "MarginWarn"}], "duration": 60,
                           "created_by": "test", "comment": "quiet"}  # fmt: skip
                outputs.append(
                    (await http.request("POST", "/api/silences", token=TOKEN, json_body=silence))[1]
                )
                outputs.append(
                    (await http.request("POST", "/api/silences", token=TOKEN, json_body={"x": 1}))[
                        1
                    ]
                )
                outputs.append((await http.get("/api/actions"))[1])
                assert '"close_position"' in outputs[-1] or "close_position" in outputs[-1]
            finally:
                await http.close()
                status = await proc.terminate()
            assert status == 0
            sent = [
                f.frame.get("type")
                for f in sim.received_commands("desk-a")
                if isinstance(f.frame, dict)
            ]
            assert sent.count("close_position") >= 1
            assert set(sent) & set(ACTION_COMMANDS)
    finally:
        await sink.stop()
    await asyncio.sleep(0)
    log_text = proc.log_text()
    if log_format == "json":
        # Every line is one JSON object; the search below runs on the raw lines and on
        # the decoded messages (JSON escapes could otherwise hide a secret).
        docs = [json.loads(line) for line in log_text.splitlines() if line]
        log_text += "\n".join(json.dumps(d, ensure_ascii=False) for d in docs)
        log_text += "\n".join(str(v) for d in docs for v in d.values())
    assert "flatten" in log_text.lower() or "LossFlatten" in log_text
    channels = {
        "log": log_text,
        "http": "\n".join(outputs),
        "notifications": b"\n".join(sink.bodies).decode("utf-8", "replace"),
    }
    for db in tmp_path.glob("state.db*"):
        channels[db.name] = db.read_bytes().decode("latin-1")
    assert any("LossFlatten" in b.decode("utf-8", "replace") for b in sink.bodies)
    for secret in (qfex_secret, TOKEN, NOTIFY_PASSWORD):
        for name, text in channels.items():
            assert secret not in text, f"secret found in {name}"
