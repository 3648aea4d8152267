"""The exchange misbehaves on purpose (simulator fault injection over real sockets).

For each fault: no crash, no duplicate or lost action, the alerts and counters say what
happened, reconnects follow the backoff, and nothing spins in a busy loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import riskwatch.daemon.connections
from riskwatch.daemon.app import Daemon
from riskwatch.qfex.client import SocketOptions
from riskwatch.sim.server import Simulator
from tests.support.rig import Http, in_process, metric, setup_for, simulator, wait_for

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"


def _live(d: Daemon) -> bool:
    rt = d.accounts[ACCOUNT]
    return bool(rt.status and rt.status.authenticated and rt.core.snapshot.balance is not None)


def sent(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    """Every ``kind`` command the exchange received from the account, in order."""
    return [
        f.frame
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == kind
    ]


@asynccontextmanager
async def armed(
    tmp: Path, *, mode: str = "armed", stale_after: str = "3s", **sim_options: Any
) -> AsyncIterator[tuple[Simulator, Daemon, Http]]:
    """The crash scenario paused (marks move only when pinned), an armed daemon, live."""
    options = {"pulse_interval": 0.1, **sim_options}
    async with simulator("crash", **options) as (sim, secret):
        sim.pause()
        setup = setup_for(sim, tmp, secret, mode=mode, stale_after=stale_after)
        async with in_process(setup) as daemon:
            # Short executor timeouts keep each fault within a second of test time.
            daemon.executor.reply_timeout = 0.4
            daemon.executor.confirm_timeout = 0.4
            daemon.executor.backoff_initial = 0.1
            assert daemon.http_port is not None
            http = Http(daemon.http_port)
            try:
                await wait_for(lambda: _live(daemon), what="for the account to be live")
                yield sim, daemon, http
            finally:
                await http.close()


def _audit(daemon: Daemon) -> list[Any]:
    return list(reversed(daemon.executor.store.actions(limit=1000, account=ACCOUNT)))


def _finals(daemon: Daemon, action: str) -> list[str]:
    """Final statuses of ``action``'s attempts (retried attempts excluded)."""
    return [r.status for r in _audit(daemon) if r.action == action and r.status != "retried"]


async def _settled(daemon: Daemon, action: str, timeout: float = 8.0) -> None:
    await wait_for(
        lambda: (
            bool(_finals(daemon, action))
            and all(s in ("confirmed", "failed") for s in _finals(daemon, action))
        ),
        timeout=timeout,
        what=f"for {action} to settle: {[(r.attempt, r.status) for r in _audit(daemon)]}",
    )


async def _assert_flat_once(sim: Simulator, daemon: Daemon, http: Http) -> None:
    """The position is closed (not flipped), each action confirmed exactly once."""
    await _settled(daemon, "close_position")
    await _settled(daemon, "cancel_all_orders")
    assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0
    assert sim.ledger(ACCOUNT).open_orders() == []
    assert _finals(daemon, "close_position") == ["confirmed"]
    assert _finals(daemon, "cancel_all_orders") == ["confirmed"]
    m = await http.metrics()
    for action in ("close_position", "cancel_all_orders"):
        assert metric(m, "riskwatch_actions_total", action=action, result="sent") == 1
        assert metric(m, "riskwatch_actions_total", action=action, result="confirmed") == 1
        assert metric(m, "riskwatch_actions_total", action=action, result="failed") == 0
    assert not [r for r in _audit(daemon) if r.status in ("intent", "sent")]


async def _trip(sim: Simulator) -> None:
    """Drop AAPL so that the loss passes 1000 USD (LossFlatten: cancel all, close all)."""
    await sim.set_mark(SYMBOL, 190.0)
    await sim.pulse_now()


@pytest.mark.parametrize("code", ["RateLimited", "ServerError"])
async def test_retryable_rejection_is_retried_once_and_confirmed(tmp_path: Path, code: str) -> None:
    """A RateLimited or ServerError reply leads to one retry with a new id, then confirmation."""
    async with armed(tmp_path) as (sim, daemon, http):
        sim.reject_next("close_position", code)
        await _trip(sim)
        await _assert_flat_once(sim, daemon, http)
        closes = sent(sim, "close_position")
        assert len(closes) == 2
        ids = [c["params"]["client_order_id"] for c in closes]
        assert ids[0] != ids[1]
        m = await http.metrics()
        assert metric(m, "riskwatch_action_retries_total", action="close_position") == 1


async def test_rate_limited_order_status_is_retried(tmp_path: Path) -> None:
    """An order_response RATE_LIMITED (the order path's form) is retried, then confirmed."""
    async with armed(tmp_path) as (sim, daemon, http):
        sim.reject_next("close_position", as_order_status="RATE_LIMITED")
        await _trip(sim)
        await _assert_flat_once(sim, daemon, http)
        assert len(sent(sim, "close_position")) == 2


async def test_permission_denied_fails_and_escalates_without_spinning(tmp_path: Path) -> None:
    """PermissionDenied is final: one attempt, failed, escalated, nothing resent afterwards."""
    async with armed(tmp_path) as (sim, daemon, http):
        events: list[Any] = []
        daemon.executor.listeners.append(events.append)
        sim.reject_next("close_position", "PermissionDenied")
        await _trip(sim)
        await _settled(daemon, "close_position")
        assert _finals(daemon, "close_position") == ["failed"]
        assert any(getattr(e, "kind", "") == "escalation" for e in events)
        await asyncio.sleep(0.6)
        assert len(sent(sim, "close_position")) == 1
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 250
        m = await http.metrics()
        assert metric(m, "riskwatch_actions_total", action="close_position", result="failed") == 1
        assert metric(m, "riskwatch_action_retries_total", action="close_position") == 0


async def test_reply_delayed_past_the_timeout_is_not_a_double_close(tmp_path: Path) -> None:
    """A reply that comes after the timeout leads to a retry, and the position closes once."""
    async with armed(tmp_path) as (sim, daemon, _http):
        sim.delay_next("close_position", 1.2)
        await _trip(sim)
        await _settled(daemon, "close_position")
        await asyncio.sleep(1.5)  # the delayed first attempt reaches the book now
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0
        assert _finals(daemon, "close_position") == ["confirmed"]
        assert len(sent(sim, "close_position")) <= daemon.config.actions.max_attempts


async def test_drop_during_an_action_reconciles_without_duplicate(tmp_path: Path) -> None:
    """The connection drops while a close is in flight: reconnect, reconcile, close once."""
    async with armed(tmp_path) as (sim, daemon, http):
        sim.delay_next("close_position", 0.3)
        await _trip(sim)
        await wait_for(lambda: bool(sent(sim, "close_position")), what="for the close")
        await sim.drop_connections(ACCOUNT)
        await wait_for(lambda: daemon.accounts[ACCOUNT].status.reconnects >= 1)  # type: ignore[union-attr]
        await wait_for(lambda: _live(daemon))
        await _assert_flat_once_or_retried(sim, daemon, http)


async def _assert_flat_once_or_retried(sim: Simulator, daemon: Daemon, http: Http) -> None:
    await _settled(daemon, "close_position")
    assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0
    assert _finals(daemon, "close_position") == ["confirmed"]
    assert not [r for r in _audit(daemon) if r.status in ("intent", "sent")]
    m = await http.metrics()
    assert metric(m, "riskwatch_actions_total", action="close_position", result="confirmed") == 1
    assert metric(m, "riskwatch_reconnects_total", account=ACCOUNT) >= 1


async def test_drops_in_a_loop_follow_the_backoff(tmp_path: Path) -> None:
    """Dropping the connection every 30 ms for 2 s: reconnects are paced, then recover."""
    async with armed(tmp_path, mode="dry-run") as (sim, daemon, http):
        st = daemon.accounts[ACCOUNT].status
        assert st is not None
        connects_before = st.connects
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            await sim.drop_connections(ACCOUNT)
            await asyncio.sleep(0.03)
        connects = st.connects - connects_before
        # backoff 0.5 s × [0.8, 1] after each live connection: at most 2 s / 0.4 s + 1.
        assert 1 <= connects <= 6, connects
        await wait_for(lambda: _live(daemon), timeout=5)
        await sim.pulse_now()
        await asyncio.sleep(0.2)
        m = await http.metrics()
        assert metric(m, "riskwatch_reconnects_total", account=ACCOUNT) == st.reconnects
        assert metric(m, "riskwatch_connected", account=ACCOUNT) == 1
        fig = sim.ledger(ACCOUNT).figures()
        doc = json.loads((await http.get("/api/state"))[1])
        assert doc["accounts"][0]["figures"]["equity"] == pytest.approx(fig.equity, rel=1e-9)


async def test_drop_during_a_pulse_keeps_the_books_right(tmp_path: Path) -> None:
    """Drops timed inside pulse bursts never leave half-applied figures once pulses resume."""
    async with armed(tmp_path, mode="dry-run", pulse_interval=0.02) as (sim, daemon, http):
        for _ in range(5):
            await sim.drop_connections(ACCOUNT)
            await wait_for(lambda: _live(daemon), timeout=5)
        await sim.pulse_now()
        await asyncio.sleep(0.1)
        fig = sim.ledger(ACCOUNT).figures()
        f = json.loads((await http.get("/api/state"))[1])["accounts"][0]["figures"]
        assert f["equity"] == pytest.approx(fig.equity, rel=1e-9)
        assert f["margin_usage"] == pytest.approx(fig.margin_usage, rel=1e-9)


async def test_bad_frames_are_counted_and_skipped(tmp_path: Path) -> None:
    """Truncated, non-UTF-8, wrongly typed, unknown and oversized frames: counted, survived."""
    async with armed(tmp_path, mode="dry-run") as (sim, daemon, http):
        bad = [
            '{"position_response": {"symbol": ',
            '{"balance_response": {"deposit": "lots"}}',
            '{"position_response": {"symbol": 12, "position": [1]}}',
            '{"order_response": null}',
            "[1, 2, 3]",
            "not json at all",
        ]
        for text in bad:
            await sim.send_raw(ACCOUNT, text)
        for conn in list(sim._conns):  # binary frames: non-UTF-8 bytes
            if conn.account == ACCOUNT:
                await conn.ws.send(b"\xff\xfe{\x80}")
        await sim.send_raw(ACCOUNT, '{"brand_new_message": {"a": 1}}')

        async def counted() -> bool:
            m = await http.metrics()
            return metric(m, "riskwatch_messages_total", account=ACCOUNT, kind="bad") >= 7

        await wait_for(counted)
        m = await http.metrics()
        assert metric(m, "riskwatch_messages_total", account=ACCOUNT, kind="bad") == 7
        assert metric(m, "riskwatch_messages_total", account=ACCOUNT, kind="unknown") == 1
        assert daemon.accounts[ACCOUNT].status.reconnects == 0  # type: ignore[union-attr]
        # Oversized (over the 4 MiB socket limit): the socket closes, the daemon reconnects.
        await sim.send_raw(ACCOUNT, '{"x": "' + "a" * (5 * 1024 * 1024) + '"}')
        await wait_for(lambda: daemon.accounts[ACCOUNT].status.reconnects >= 1)  # type: ignore[union-attr]
        await wait_for(lambda: _live(daemon))
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 250
        assert (await http.get("/healthz"))[0] == 200


async def test_stall_fires_data_stale_and_acts_on_nothing(tmp_path: Path) -> None:
    """Stalled pulses: DataStale fires once, /readyz turns unready, no action, then recovery."""
    async with armed(tmp_path, stale_after="500ms") as (sim, daemon, http):
        sim.stall_pulses(1.5)
        await wait_for(lambda: not daemon.readiness()[0], timeout=3)
        await asyncio.sleep(0.3)
        m = await http.metrics()
        assert metric(m, "riskwatch_alert_state", rule="DataStale", account=ACCOUNT, symbol="",
                      severity="critical") == 2  # fmt: skip
        assert metric(m, "riskwatch_alerts_fired_total", rule="DataStale", account=ACCOUNT,
                      severity="critical") == 1  # fmt: skip
        assert (await http.get("/readyz"))[0] == 503
        await wait_for(lambda: daemon.readiness()[0], timeout=5)
        await asyncio.sleep(0.3)
        m = await http.metrics()
        assert metric(m, "riskwatch_alert_state", rule="DataStale", account=ACCOUNT, symbol="",
                      severity="critical") == 0  # fmt: skip
        assert not sent(sim, "close_position")
        assert not sent(sim, "cancel_all_orders")


async def test_auth_fails_then_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejected credentials: unready, retried on the slow schedule only; then fixed, live."""
    fast = functools.partial(SocketOptions, auth_retry_interval=0.5, backoff_initial=0.1)
    monkeypatch.setattr(riskwatch.daemon.connections, "SocketOptions", fast)
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        setup = setup_for(sim, tmp_path, secret)
        public_key = sim.scenario.accounts[0].public_key
        sim._secrets[public_key] = "not-the-daemon-secret"
        async with in_process(setup) as daemon:
            assert daemon.http_port is not None
            http = Http(daemon.http_port)
            try:

                def rejected() -> bool:
                    st = daemon.accounts[ACCOUNT].status
                    return st is not None and st.auth_rejected

                await wait_for(rejected)
                await asyncio.sleep(1.6)
                attempts = len(
                    [f for f in sim.received_commands(None) if isinstance(f.frame, dict)
                     and f.frame.get("type") == "auth"]
                )  # fmt: skip
                assert 2 <= attempts <= 5, attempts  # one per 0.5 s, no busy loop
                assert (await http.get("/readyz"))[0] == 503
                m = await http.metrics()
                assert metric(m, "riskwatch_connected", account=ACCOUNT) == 0
                sim._secrets[public_key] = secret
                await wait_for(lambda: _live(daemon), timeout=5)
                await wait_for(lambda: daemon.readiness()[0], timeout=5)
                assert (await http.get("/readyz"))[0] == 200
                st = daemon.accounts[ACCOUNT].status
                assert st is not None
                assert not st.auth_rejected
            finally:
                await http.close()
