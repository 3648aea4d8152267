"""Disarm during a disconnect: a command queued while the account was cut off never
leaves after the link comes back (``riskwatch run`` as a child process, the real
simulator, a TCP cut between them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.rig import (
    DaemonProcess,
    Http,
    free_port,
    metric,
    setup_for,
    simulator,
    wait_for,
)

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"
TOKEN = "disarm-queue-admin-token-0123456789"

MARK_RULES = """
rules:
  - name: LossFlattenOnMarks
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    confirm: mark
    latch: true
    actions: [cancel_all_orders, {close_position: all}]
"""
"""Trips on a mark price alone, so that it can trip while the trade link is down."""

PROTECTIVE = ("cancel_all_orders", "close_position")


class Cut:
    """A TCP relay to the exchange's trade port that the test can cut and restore.

    Cut: every relayed connection is aborted and new ones are closed at once (the
    daemon sees a dead link and reconnects with its backoff, in vain); restored: new
    connections are relayed again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.open = True
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.open = False
        for a, b in self._pairs:
            a.transport.abort()
            b.transport.abort()
        self._pairs.clear()

    def restore(self) -> None:
        self.open = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._pairs.append((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


def _protective(sim: Any) -> list[str]:
    return [
        f.frame["type"]
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") in PROTECTIVE
    ]


async def _run(tmp: Path, *, disarm: bool) -> tuple[list[str], list[dict[str, Any]], Any]:
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        sim.pause()
        port = int(sim.trade_url.rsplit(":", 1)[1].split("/")[0])
        relay = Cut(port)
        await relay.start()
        setup = setup_for(
            sim, tmp, secret, mode="armed", rules=MARK_RULES, admin_token=TOKEN,
            stale_after="5s", mds_url=sim.mds_url, port=free_port(),
        )  # fmt: skip
        setup.url = f"ws://127.0.0.1:{relay.port}"
        proc = DaemonProcess(setup.write(), tmp / "daemon.log")
        http = Http(setup.port)
        proc.start()
        try:

            async def connected(up: bool) -> bool:
                try:
                    m = await http.metrics()
                except (aiohttp.ClientError, OSError):  # not listening yet
                    return False
                return metric(m, "riskwatch_connected", account=ACCOUNT) == (1.0 if up else 0.0)

            await wait_for(lambda: connected(True), 20, "(daemon connected)")
            await asyncio.sleep(0.5)  # a few pulses: the account's figures are fresh
            relay.cut()
            await wait_for(lambda: connected(False), 10, "(link cut)")
            await sim.set_mark(SYMBOL, 190.0)  # the marks trip the rule, the link is down

            async def queued() -> bool:
                status, text = await http.request("GET", "/api/actions", token=TOKEN)
                assert status == 200, text
                flights = json.loads(text)["in_flight"]
                return len(flights) == 2 and all(f["phase"] == "queued" for f in flights)

            await wait_for(queued, 10, "(commands queued while disconnected)")
            if disarm:
                status, text = await http.request("POST", "/api/disarm", token=TOKEN)
                assert status == 200, text
            relay.restore()
            await wait_for(lambda: connected(True), 20, "(reconnected)")
            await asyncio.sleep(2.0)  # pulses flow: a queued frame would leave now
            status, text = await http.request("GET", "/api/actions?limit=20", token=TOKEN)
            assert status == 200, text
            rows = json.loads(text)["actions"]
            return _protective(sim), rows, await http.metrics()
        finally:
            await http.close()
            await proc.terminate()
            await relay.stop()


@pytest.mark.timeout(120)
async def test_disarm_drops_a_command_queued_during_a_disconnect(tmp_path: Path) -> None:
    """Queued while cut off, disarmed, reconnected: nothing is sent, the log says why."""
    sent, rows, metrics = await _run(tmp_path, disarm=True)
    assert sent == []
    assert {r["action"] for r in rows} == set(PROTECTIVE)
    for r in rows:
        assert r["status"] == "failed"
        assert r["detail"].startswith("KILL_SWITCH: queued frame dropped by disarm")
    assert metric(metrics, "riskwatch_actions_total", action="close_position", result="sent") == 0


@pytest.mark.timeout(120)
async def test_without_disarm_the_queued_command_leaves_on_a_fresh_pulse(tmp_path: Path) -> None:
    """The same cut without disarm: the commands leave once fresh pulses back them."""
    sent, rows, _ = await _run(tmp_path, disarm=False)
    assert sorted(sent) == sorted(PROTECTIVE)
    assert {r["action"] for r in rows} == set(PROTECTIVE)
