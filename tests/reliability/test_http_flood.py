"""500 stalled HTTP connections against ``riskwatch run``: the exchange link holds.

The daemon runs as a child process against the real simulator, with its open-file limit
lowered to 256: without the HTTP connection caps, 500 partial-header connections would
take every file descriptor and the exchange reconnect would fail with EMFILE. One client
address (127.0.0.1) keeps 500 connections that send half a request header and stall,
reopening each one the daemon drops; another address (127.0.0.2) reads the metrics. The
trade link is cut during the flood: the daemon reconnects; then the crash trips the
flatten rule and the daemon acts within its usual latency, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from tests.support.rig import DaemonProcess, free_port, metric, setup_for, simulator, wait_for
from tests.support.scrape import Samples, parse_samples

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"
TOKEN = "flood-admin-token-0123456789"
FLOOD = 500
OPEN_FILES = 256
PARTIAL = b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Stall: "

USUAL_LATENCY = 0.05
"""Seconds from the deciding pulse's receipt to the protective command's write: about a
millisecond (docs/performance.md); 50 ms leaves room for a busy shared test machine."""


class Flood:
    """``size`` connections from 127.0.0.1, each sending a partial header and stalling;
    every connection the daemon closes or refuses is opened again at once."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.refused = 0
        self.dropped = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._hold()) for _ in range(self.size)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hold(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=("127.0.0.1", 0)
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.opened += 1
            try:
                writer.write(PARTIAL)
                answer = await reader.read(64)
                if answer.startswith(b"HTTP/1.1 503"):
                    self.refused += 1
                else:
                    self.dropped += 1
            except OSError:
                self.dropped += 1
            finally:
                writer.transport.abort()
            await asyncio.sleep(0.01)


async def _metrics(session: aiohttp.ClientSession, port: int) -> Samples:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        return parse_samples(await resp.text())


@pytest.mark.timeout(180)
async def test_500_stalled_http_connections_do_not_starve_the_exchange_link(
    tmp_path: Path,
) -> None:
    """The link stays up (and comes back after a cut), no EMFILE, the trip is acted on."""
    async with simulator("crash", pulse_interval=0.2) as (sim, secret):
        sim.pause()  # the crash starts when the test says
        setup = setup_for(
            sim, tmp_path, secret, mode="armed", admin_token=TOKEN, port=free_port(),
            http_extra=["header_timeout: 2s"],
        )  # fmt: skip
        proc = DaemonProcess(setup.write(), tmp_path / "daemon.log", max_open_files=OPEN_FILES)
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5))
        flood = Flood(setup.port, FLOOD)
        proc.start()
        try:

            async def connected() -> bool:
                try:
                    m = await _metrics(session, setup.port)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return False
                return metric(m, "riskwatch_connected", account=ACCOUNT) == 1.0

            await wait_for(connected, 20, "(daemon connected)")
            flood.start()
            await wait_for(lambda: flood.opened >= FLOOD, 20, "(every flood connection opened)")
            await asyncio.sleep(3.0)  # past the header timeout: stalled ones are dropped
            assert await connected()

            # A reconnect needs a file descriptor while the flood goes on.
            before = metric(
                await _metrics(session, setup.port), "riskwatch_reconnects_total", account=ACCOUNT
            )
            await sim.drop_connections(ACCOUNT)

            async def reconnected() -> bool:
                m = await _metrics(session, setup.port)
                return (
                    metric(m, "riskwatch_reconnects_total", account=ACCOUNT) > before
                    and metric(m, "riskwatch_connected", account=ACCOUNT) == 1.0
                )

            await wait_for(reconnected, 20, "(reconnected during the flood)")
            await asyncio.sleep(1.0)  # fresh pulses after the reconnect

            sim.resume()
            await sim.set_mark(SYMBOL, 150.0)  # -12 500 USD: LossFlatten trips

            def closed() -> bool:
                return any(
                    isinstance(f.frame, dict) and f.frame.get("type") == "close_position"
                    for f in sim.received_commands(ACCOUNT)
                )

            await wait_for(closed, 10, "(close_position sent during the flood)")
            m = await _metrics(session, setup.port)
            assert metric(m, "riskwatch_connected", account=ACCOUNT) == 1.0
            count = metric(m, "riskwatch_pulse_to_action_seconds_count")
            total = metric(m, "riskwatch_pulse_to_action_seconds_sum")
            assert count >= 1
            assert total / count < USUAL_LATENCY, (total, count)
            assert metric(m, "riskwatch_http_refused_total", reason="client_connection_cap") > 0
            assert metric(m, "riskwatch_http_refused_total", reason="header_timeout") > 0
            assert flood.dropped > 0  # stalled connections were let go, then reopened
        finally:
            await flood.stop()
            await session.close()
            with contextlib.suppress(Exception):
                await proc.terminate()
    closes = [
        f
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == "close_position"
    ]
    assert len(closes) == 1
    log = proc.log_text()
    assert "Too many open files" not in log
    assert "EMFILE" not in log
