"""A starved daemon: ``riskwatch run`` (a child process) stopped for 150 ms of every
200 ms (SIGSTOP/SIGCONT, what a container throttled by its CPU quota lives through).
The lateness is counted, ``/readyz`` fails with the reason, a real webhook hears the
alert EventLoopLagging, and once the process runs freely again it resolves
(riskwatch/daemon/looplag.py, docs/reliability.md "A starved event loop").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.notify_sinks import Webhook, webhook
from tests.support.rig import (
    DaemonProcess,
    Http,
    daemon_ready,
    free_port,
    metric,
    setup_for,
    simulator,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def _lagging(hook: Webhook, status: str) -> bool:
    return any(
        "EventLoopLagging" in str(doc) and status in str(doc).lower() for doc in hook.received
    )


async def _starve(pid: int, stop: asyncio.Event) -> None:
    """Stop the process 150 ms of every 200 ms until ``stop`` is set."""
    try:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(0.15)
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


async def test_a_starved_event_loop_is_counted_unready_and_notified(tmp_path: Path) -> None:
    async with webhook() as hook, simulator("crash", pulse_interval=0.5) as (sim, secret):
        sim.pause()  # marks hold: nothing trips
        port = free_port()
        setup = setup_for(sim, tmp_path, secret, port=port, notify_urls=[hook.url()])
        proc = DaemonProcess(setup.write(), tmp_path / "daemon.log")
        proc.start()
        http = Http(port)
        try:
            await wait_for(lambda: daemon_ready(http, proc), 20, "(daemon ready)")
            assert proc.proc is not None
            stop = asyncio.Event()
            starving = asyncio.create_task(_starve(proc.proc.pid, stop))
            try:
                await wait_for(lambda: _lagging(hook, "firing"), 40, "(EventLoopLagging notified)")
            finally:
                stop.set()
                await starving
            # The episode lasts until a whole window on time: still unready, counted.
            status, body = await http.get("/readyz")
            assert status == 503, body
            assert "event loop lagging" in body
            status, text = await http.get("/api/state")
            assert status == 200
            loop_state = json.loads(text)["event_loop"]
            assert loop_state["lagging"] is True
            assert loop_state["lag_p90_seconds"] >= 0.1
            m = await http.metrics()
            assert metric(m, "riskwatch_event_loop_lagging") == 1
            count = metric(m, "riskwatch_event_loop_lag_seconds_count")
            on_time = metric(m, "riskwatch_event_loop_lag_seconds_bucket", le="0.1")
            assert count is not None
            assert on_time is not None
            assert count - on_time >= 20  # wake-ups more than 0.1 s late
            # Free again: resolved, ready.
            await wait_for(lambda: _lagging(hook, "resolved"), 30, "(EventLoopLagging resolved)")
            await wait_for(lambda: daemon_ready(http, proc), 10, "(ready again)")
            m = await http.metrics()
            assert metric(m, "riskwatch_event_loop_lagging") == 0
            status, text = await http.get("/api/state")
            assert status == 200
            assert json.loads(text)["event_loop"]["lagging"] is False
            assert "EVENT LOOP LAGGING" in proc.log_text()
        finally:
            await http.close()
            code = await proc.terminate()
        assert code == 0, proc.log_text()[-3000:]
        assert "Traceback" not in proc.log_text()
