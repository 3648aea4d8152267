"""Storage faults against ``riskwatch run`` (a child process) and the simulator: a full
state filesystem during an armed crash, another process holding the database's write
lock, and ``--record`` on a full filesystem. Protection goes on; every fault is counted,
fails ``/readyz`` where it should, and reaches a real webhook (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from riskwatch.sim.server import Simulator
from riskwatch.store import Store
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
from tests.support.storage_faults import HeldLock, fill, tmpfs

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"

pytestmark = pytest.mark.timeout(120)


def _sent(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [
        f.frame
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == kind
    ]


def _texts(hook: Webhook) -> list[str]:
    return [str(doc) for doc in hook.received]


async def _readyz(http: Http) -> tuple[int, str]:
    return await http.get("/readyz")


async def test_full_state_filesystem_during_an_armed_crash(tmp_path: Path) -> None:
    """Disk full, then the crash: close and cancel still leave, a person is told through a
    real webhook, /readyz fails, the rule ticks go on (DataStale fires when the pulses
    stop); once space is freed, writes work again and the alert resolves."""
    with tmpfs(tmp_path / "state", "4m") as state_dir:
        async with webhook() as hook, simulator("crash", pulse_interval=0.1) as (sim, secret):
            sim.pause()
            port = free_port()
            setup = setup_for(
                sim, state_dir, secret, mode="armed", port=port, notify_urls=[hook.url()],
                state_extra=["min_free_mb: 1", "warn_free_mb: 0"],
            )  # fmt: skip
            proc = DaemonProcess(setup.write(), tmp_path / "daemon.log")
            proc.start()
            http = Http(port)
            try:
                await wait_for(lambda: daemon_ready(http, proc), 20, "(daemon ready)")
                filler = fill(state_dir)
                await sim.set_mark(SYMBOL, 190.0)  # LossFlatten trips at the next pulse

                # The protective frames policy holds: both harmless actions leave.
                await wait_for(
                    lambda: bool(_sent(sim, "close_position") and _sent(sim, "cancel_all_orders")),
                    10,
                    "(close and cancel sent on a full disk)",
                )
                # A person is told, through notifications (no database needed).
                await wait_for(
                    lambda: any("audit log unwritable" in t for t in _texts(hook)),
                    15,
                    "(the action's escalation delivered)",
                )
                await wait_for(
                    lambda: any("StateStoreFailing" in t for t in _texts(hook)),
                    15,
                    "(the store's escalation delivered)",
                )
                status, body = await _readyz(http)
                assert status == 503, body
                assert "state database cannot be written" in body
                m = await http.metrics()
                assert metric(m, "riskwatch_state_errors_total", op="intent") >= 1
                assert metric(m, "riskwatch_state_failing") == 1
                assert metric(m, "riskwatch_actions_total", action="close_position",
                              result="unaudited") == 1  # fmt: skip

                # The ticks go on: the exchange stops pulsing, DataStale fires.
                sim.stall_pulses(30)

                async def stale() -> bool:
                    m = await http.metrics()
                    return (
                        metric(
                            m,
                            "riskwatch_alert_state",
                            rule="DataStale",
                            account=ACCOUNT,
                            symbol="",
                            severity="critical",
                        )
                        == 2
                    )

                await wait_for(stale, 15, "(DataStale fired while the store fails)")
                assert proc.alive

                # Space comes back: the queued records are written, the alert resolves.
                filler.unlink()

                async def recovered() -> bool:
                    m = await http.metrics()
                    return metric(m, "riskwatch_state_failing") == 0

                await wait_for(recovered, 15, "(writes work again)")
                await wait_for(
                    lambda: any(
                        "StateStoreFailing" in t and "resolved" in t.lower() for t in _texts(hook)
                    ),
                    15,
                    "(the store's alert resolved)",
                )
            finally:
                await http.close()
                code = await proc.terminate()
            assert code == 0, proc.log_text()[-3000:]
            assert "Traceback" not in proc.log_text()


async def test_held_write_lock_neither_freezes_reactions_nor_ticks(tmp_path: Path) -> None:
    """Another process holds the state database's write lock for 8 s (longer than
    stale_after) while pulses flow and a rule trips: the daemon answers at once, acts,
    never reports stale data, and is unready only for the store."""
    async with webhook() as hook, simulator("crash", pulse_interval=0.1) as (sim, secret):
        sim.pause()
        port = free_port()
        setup = setup_for(sim, tmp_path, secret, mode="armed", port=port,
                          notify_urls=[hook.url()])  # fmt: skip
        proc = DaemonProcess(setup.write(), tmp_path / "daemon.log")
        proc.start()
        http = Http(port)
        try:
            await wait_for(lambda: daemon_ready(http, proc), 20, "(daemon ready)")
            lock = await asyncio.to_thread(HeldLock, setup.state_path)
            try:
                started = time.monotonic()
                await sim.set_mark(SYMBOL, 190.0)
                await wait_for(
                    lambda: bool(_sent(sim, "close_position") and _sent(sim, "cancel_all_orders")),
                    5,
                    "(close and cancel sent under the lock)",
                )
                reaction = time.monotonic() - started
                worst = 0.0
                while time.monotonic() - started < 8.0:
                    t0 = time.monotonic()
                    status, _ = await http.get("/healthz")
                    worst = max(worst, time.monotonic() - t0)
                    assert status == 200
                    m = await http.metrics()
                    assert metric(m, "riskwatch_alerts_fired_total", rule="DataStale",
                                  account=ACCOUNT, severity="critical") == 0  # fmt: skip
                    await asyncio.sleep(0.2)
                status, body = await _readyz(http)
                assert status == 503, body
                assert "state database cannot be written" in body
                assert "data stale" not in body
            finally:
                await asyncio.to_thread(lock.release)
            # The loop never waited on the lock: the HTTP server always answered quickly.
            assert worst < 1.0, worst
            assert reaction < 3.0, reaction

            async def recovered() -> bool:
                status, _ = await _readyz(http)
                return status == 200

            await wait_for(recovered, 15, "(ready again once the lock is gone)")
            m = await http.metrics()
            assert metric(m, "riskwatch_state_errors_total", op="intent") >= 1
            assert metric(m, "riskwatch_alerts_fired_total", rule="DataStale", account=ACCOUNT,
                          severity="critical") == 0  # fmt: skip
            assert any("StateStoreFailing" in t for t in _texts(hook))
        finally:
            await http.close()
            code = await proc.terminate()
        assert code == 0, proc.log_text()[-3000:]


async def test_record_on_a_full_filesystem_keeps_the_daemon_connected(tmp_path: Path) -> None:
    """``run --record`` onto a filesystem that fills up: the recording stops with a metric
    and a notification; the connection stays up and a trip is still acted on."""
    with tmpfs(tmp_path / "rec", "1m") as rec_dir:
        async with webhook() as hook, simulator("crash", pulse_interval=0.05) as (sim, secret):
            sim.pause()
            port = free_port()
            setup = setup_for(sim, tmp_path, secret, mode="armed", port=port,
                              notify_urls=[hook.url()])  # fmt: skip
            recording = rec_dir / "frames.jsonl"
            proc = DaemonProcess(setup.write(), tmp_path / "daemon.log", record=recording)
            proc.start()
            http = Http(port)
            try:
                await wait_for(lambda: daemon_ready(http, proc), 20, "(daemon ready)")
                assert recording.stat().st_mode & 0o777 == 0o600
                m = await http.metrics()
                assert metric(m, "riskwatch_recording") == 1
                reconnects = metric(m, "riskwatch_reconnects_total", account=ACCOUNT)
                fill(rec_dir)

                async def stopped() -> bool:
                    m = await http.metrics()
                    return metric(m, "riskwatch_recording_errors_total") == 1

                await wait_for(stopped, 15, "(the recording stopped on the full disk)")
                await wait_for(
                    lambda: any("RecordingStopped" in t for t in _texts(hook)),
                    15,
                    "(the recording's alert delivered)",
                )
                await sim.set_mark(SYMBOL, 190.0)
                await wait_for(
                    lambda: bool(_sent(sim, "close_position")), 10, "(the trip acted on)"
                )
                _, body = await _readyz(http)
                m = await http.metrics()
                assert metric(m, "riskwatch_recording") == 0
                assert metric(m, "riskwatch_reconnects_total", account=ACCOUNT) == reconnects
                assert metric(m, "riskwatch_actions_total", action="close_position",
                              result="sent") == 1  # fmt: skip
                assert "not connected" not in body
            finally:
                await http.close()
                code = await proc.terminate()
            assert code == 0, proc.log_text()[-3000:]


async def test_daily_peak_survives_a_sigkill_seconds_after_it_was_reached(tmp_path: Path) -> None:
    """Baselines and peaks are saved as they change: a SIGKILL two seconds after a new
    intraday high (far inside the 60 s of the periodic save) leaves it in the database."""
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        sim.pause()
        port = free_port()
        setup = setup_for(sim, tmp_path, secret, port=port, rules=None)
        proc = DaemonProcess(setup.write(), tmp_path / "daemon.log")
        proc.start()
        http = Http(port)
        try:
            await wait_for(lambda: daemon_ready(http, proc), 20, "(daemon ready)")

            async def account() -> dict[str, Any]:
                _, text = await http.get("/api/state")
                doc: dict[str, Any] = json.loads(text)
                return next(a for a in doc["accounts"] if a["name"] == ACCOUNT)

            before = await account()
            mark = float(before["positions"][SYMBOL]["mark_price"])
            await sim.set_mark(SYMBOL, mark * 1.2)  # the long position gains: a new high

            async def higher() -> bool:
                equity = (await account())["figures"].get("equity")
                return equity is not None and equity > before["figures"]["equity"]

            await wait_for(higher, 10, "(equity at a new high)")
            await asyncio.sleep(0.5)
            peak = (await account())["figures"]["equity"]
            await asyncio.sleep(1.5)
        finally:
            await http.close()
            proc.kill()
    with Store.open(setup.state_path) as store:
        daily = store.load_daily()[ACCOUNT]
    assert daily["intraday_peak"] >= peak
