"""The real daemon against the real simulator over loopback WebSockets."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from riskwatch.sim.ledger import mm_rate
from tests.support.daemon_harness import MS, Harness, running, wait_for

ACCOUNT = "desk-a"


def _live(h: Harness, account: str = ACCOUNT) -> bool:
    rt = h.daemon.accounts[account]
    return bool(rt.status and rt.status.authenticated and rt.core.snapshot.balance is not None)


def _reached(h: Harness, moment: float) -> bool:
    return h.sim.scenario_time() >= moment


async def _fresh_pulse(h: Harness, account: str = ACCOUNT) -> None:
    """Ask the simulator for a pulse now and wait until the daemon has applied it."""
    loop = asyncio.get_running_loop()
    before = h.daemon.accounts[account].core.snapshot.last_balance_at or 0.0
    await h.sim.pulse_now()
    await wait_for(
        lambda: (h.daemon.accounts[account].core.snapshot.last_balance_at or 0.0) > before
    )
    del loop


def _metric(metrics: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return metrics.get((name, tuple(sorted(labels.items()))))


async def _assert_matches_simulator(h: Harness) -> None:
    """Every derived figure in /api/state and /metrics equals the simulator's arithmetic."""
    ledger = h.sim.ledger(ACCOUNT)
    fig = ledger.figures()
    doc = await h.state()
    (acc,) = [a for a in doc["accounts"] if a["name"] == ACCOUNT]
    f = acc["figures"]
    approx: Callable[[float], object] = lambda v: pytest.approx(v, rel=1e-9, abs=1e-6)  # noqa: E731
    assert f["equity"] == approx(fig.equity)
    assert f["available_balance"] == approx(fig.available_balance)
    assert f["unrealised_pnl"] == approx(fig.unrealised_pnl)
    assert f["realised_pnl"] == approx(fig.realised_pnl)
    assert f["net_funding"] == approx(fig.net_funding)
    assert f["position_margin"] == approx(fig.position_margin)
    assert f["order_margin"] == approx(fig.order_margin)
    assert f["margin_usage"] == approx(fig.margin_usage)
    assert f["maintenance_usage"] == approx(fig.maintenance_usage)
    gross = sum(fig.notional.values())
    net = sum(ledger.position(s).qty * ledger.marks[s] for s in fig.notional)
    assert f["gross_notional"] == approx(gross)
    assert f["net_notional"] == approx(net)
    assert f["account_leverage"] == approx(gross / fig.equity)
    assert f["positions"] == sum(1 for s in fig.notional if ledger.position(s).qty != 0)
    assert f["open_orders"] == len(ledger.open_orders())

    metrics = await h.metrics()
    assert _metric(metrics, "riskwatch_equity_usd", account=ACCOUNT) == approx(fig.equity)
    assert _metric(metrics, "riskwatch_margin_usage_ratio", account=ACCOUNT) == approx(
        fig.margin_usage
    )
    assert _metric(metrics, "riskwatch_maintenance_usage_ratio", account=ACCOUNT) == approx(
        fig.maintenance_usage
    )
    assert _metric(metrics, "riskwatch_gross_notional_usd", account=ACCOUNT) == approx(gross)
    assert _metric(metrics, "riskwatch_available_balance_usd", account=ACCOUNT) == approx(
        fig.available_balance
    )
    assert _metric(metrics, "riskwatch_connected", account=ACCOUNT) == 1.0

    for symbol, notional in fig.notional.items():
        pos = ledger.position(symbol)
        if pos.qty == 0:
            assert symbol not in acc["positions"] or not acc["positions"][symbol]["position"]
            assert (
                _metric(metrics, "riskwatch_position_size", account=ACCOUNT, symbol=symbol) is None
            )
            continue
        row = acc["positions"][symbol]
        assert row["position"] == approx(pos.qty)
        assert row["mark_price"] == approx(ledger.marks[symbol])
        assert row["notional"] == approx(notional)
        assert row["unrealised_pnl"] == approx(fig.unrealised[symbol])
        assert row["effective_leverage"] == approx(notional / fig.equity)
        d = 1.0 if pos.qty > 0 else -1.0
        r = mm_rate(pos.leverage)
        expected_liq = max(
            0.0, (fig.equity - fig.maintenance_requirement) / (notional * (1 - d * r))
        )
        assert row["liquidation_distance"] == approx(expected_liq)
        labels = {"account": ACCOUNT, "symbol": symbol}
        assert _metric(metrics, "riskwatch_position_size", **labels) == approx(pos.qty)
        assert _metric(metrics, "riskwatch_position_notional_usd", **labels) == approx(notional)
        assert _metric(metrics, "riskwatch_position_unrealised_pnl_usd", **labels) == approx(
            fig.unrealised[symbol]
        )
        assert _metric(metrics, "riskwatch_position_liquidation_distance_ratio", **labels) == (
            approx(expected_liq)
        )


async def test_crash_figures_equal_simulator_arithmetic(tmp_path: Path) -> None:
    """At several moments of the crash, /api/state and /metrics equal the simulator's books."""
    async with running(tmp_path, sim_options={"speed": 10.0, "pulse_interval": 0.2}) as h:
        await wait_for(lambda: _live(h))
        for moment in (10.0, 32.0, 45.0):
            await wait_for(partial(_reached, h, moment), timeout=8000 * MS)
            h.sim.pause()
            await _fresh_pulse(h)
            await asyncio.sleep(50 * MS)  # let any mark frame of the same instant land
            await _assert_matches_simulator(h)
            h.sim.resume()
        fig = h.sim.ledger(ACCOUNT).figures()
        assert fig.maintenance_usage > 0.9  # the crash really happened


async def test_mark_price_moves_figures_before_the_next_pulse(tmp_path: Path) -> None:
    """A mark-price frame recomputes equity and usage before the exchange pulses again."""
    async with running(tmp_path, sim_options={"speed": 1.0, "pulse_interval": 30.0}) as h:
        await wait_for(lambda: h.daemon.accounts[ACCOUNT].status is not None)

        async def pulsed_live() -> bool:
            # The simulator pulses only the channels subscribed by then: a pulse sent
            # before the daemon's subscription reached it goes nowhere, and the next
            # scheduled one is 30 s away. So pulse again until one lands.
            if _live(h):
                return True
            await h.sim.pulse_now()
            await asyncio.sleep(100 * MS)
            return _live(h)

        await wait_for(pulsed_live)
        h.sim.pause()
        await _fresh_pulse(h)
        equity_before = (await h.state())["accounts"][0]["figures"]["equity"]
        await wait_for(lambda: h.daemon.mds is not None and "AAPL-USD" in h.daemon.mds.symbols)
        await asyncio.sleep(100 * MS)  # the market-data subscription reaches the simulator
        await h.sim.set_mark("AAPL-USD", 185.0)
        expected = h.sim.ledger(ACCOUNT).figures()

        async def moved() -> bool:
            f = (await h.state())["accounts"][0]["figures"]
            return bool(abs(f["equity"] - expected.equity) < 1e-6)

        await wait_for(moved)
        doc = await h.state()
        f = doc["accounts"][0]["figures"]
        assert f["equity"] < equity_before
        assert f["maintenance_usage"] == pytest.approx(expected.maintenance_usage, rel=1e-9)
        assert doc["accounts"][0]["exchange_confirmed"] is False
        await _fresh_pulse(h)
        metrics = await h.metrics()
        drift = _metric(metrics, "riskwatch_equity_drift_usd", account=ACCOUNT)
        assert drift == pytest.approx(0.0, abs=1e-6)
        assert (await h.state())["accounts"][0]["exchange_confirmed"] is True


async def test_bad_hmac_is_rejected_reported_and_not_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong secret is rejected by the exchange; the daemon reports it and is not ready."""
    caplog.set_level(logging.INFO)
    wrong = "wrong-secret-0123456789abcdef"
    async with running(tmp_path, daemon_secret=wrong) as h:
        await wait_for(
            lambda: bool((conn := h.daemon.accounts[ACCOUNT].status) and conn.auth_rejected)
        )
        status, body = await h.get("/readyz")
        assert status == 503
        assert "authentication rejected" in body
        metrics = await h.metrics()
        assert _metric(metrics, "riskwatch_connected", account=ACCOUNT) == 0.0
        doc = await h.state()
        assert doc["accounts"][0]["connection"]["auth_rejected"] is True
        api_text = (await h.get("/api/state"))[1] + (await h.get("/metrics"))[1]
        assert wrong not in api_text
        assert h.secret not in api_text
    assert "authentication rejected" in caplog.text
    assert wrong not in caplog.text


async def test_reconnect_after_dropped_connection(tmp_path: Path) -> None:
    """A dropped connection is counted, re-established, and the state recovers."""
    async with running(tmp_path, sim_options={"pulse_interval": 0.1}) as h:
        await wait_for(lambda: _live(h))
        await h.sim.drop_connections(ACCOUNT)
        await wait_for(lambda: h.daemon.accounts[ACCOUNT].status.reconnects >= 1)  # type: ignore[union-attr]
        await wait_for(lambda: _live(h))
        before = h.daemon.accounts[ACCOUNT].core.snapshot.last_balance_at or 0.0
        await wait_for(
            lambda: (h.daemon.accounts[ACCOUNT].core.snapshot.last_balance_at or 0.0) > before
        )
        metrics = await h.metrics()
        assert _metric(metrics, "riskwatch_reconnects_total", account=ACCOUNT) >= 1.0  # type: ignore[operator]
        assert _metric(metrics, "riskwatch_connected", account=ACCOUNT) == 1.0
        subscribes = [
            f for f in h.sim.received_commands(ACCOUNT) if f.frame.get("type") == "subscribe"
        ]
        assert len(subscribes) >= 8  # four channels, subscribed again after the reconnect
        assert not any(
            f.frame.get("type") == "cancel_on_disconnect" for f in h.sim.received_commands(ACCOUNT)
        )
        # The session's reply bookkeeping is drained frame by frame: it cannot grow.
        session = h.daemon.accounts[ACCOUNT].connection._session  # type: ignore[union-attr]
        assert session is not None
        assert session.resolutions_received() == []
        assert session.expired_commands() == []


async def test_stalled_pulse_grows_data_age_and_turns_unready(tmp_path: Path) -> None:
    """When pulses stall, data_age grows past stale_after and /readyz turns unready."""
    async with running(
        tmp_path, sim_options={"pulse_interval": 0.1}, config_options={"stale_after": "500ms"}
    ) as h:
        await wait_for(lambda: _live(h))
        await wait_for(lambda: h.daemon.readiness()[0])
        assert (await h.get("/readyz"))[0] == 200
        h.sim.stall_pulses(1.5)
        await asyncio.sleep(800 * MS)
        status, body = await h.get("/readyz")
        assert status == 503
        assert "data stale" in body
        metrics = await h.metrics()
        age = _metric(metrics, "riskwatch_data_age_seconds", account=ACCOUNT)
        assert age is not None
        assert age > 0.5
        await wait_for(lambda: h.daemon.readiness()[0], timeout=3000 * MS)
        assert (await h.get("/readyz"))[0] == 200


async def test_malformed_frame_is_counted_and_skipped(tmp_path: Path) -> None:
    """A malformed frame is counted as bad and the daemon keeps applying pulses."""
    async with running(tmp_path, sim_options={"pulse_interval": 0.1}) as h:
        await wait_for(lambda: _live(h))
        await h.sim.send_raw(ACCOUNT, '{"position_response": {"symbol": ')
        await h.sim.send_raw(ACCOUNT, '{"position_response": {"symbol": 12, "position": "x"}}')
        await h.sim.send_raw(ACCOUNT, '{"brand_new_message": {"a": 1}}')

        async def counted() -> bool:
            m = await h.metrics()
            return (_metric(m, "riskwatch_messages_total", account=ACCOUNT, kind="bad") or 0) >= 2

        await wait_for(counted)
        m = await h.metrics()
        assert _metric(m, "riskwatch_messages_total", account=ACCOUNT, kind="unknown") == 1.0
        before = h.daemon.accounts[ACCOUNT].core.snapshot.last_balance_at or 0.0
        await wait_for(
            lambda: (h.daemon.accounts[ACCOUNT].core.snapshot.last_balance_at or 0.0) > before
        )
        assert h.daemon.accounts[ACCOUNT].status.reconnects == 0  # type: ignore[union-attr]


async def test_legacy_protocol_forms(tmp_path: Path) -> None:
    """Against the legacy v4 envelopes and auth reply, the figures still match the books."""
    async with running(tmp_path, sim_options={"legacy": True, "pulse_interval": 0.2}) as h:
        await wait_for(lambda: _live(h))
        h.sim.pause()
        await _fresh_pulse(h)
        await asyncio.sleep(50 * MS)
        await _assert_matches_simulator(h)
        metrics = await h.metrics()
        assert _metric(metrics, "riskwatch_messages_total", account=ACCOUNT, kind="bad") == 0.0


def test_bad_config_exits_2_with_positions(tmp_path: Path) -> None:
    """`riskwatch run` on a bad config exits 2 and prints FILE:LINE:COL for each problem."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "exchange:\n  stale_after: 1:30\naccounts:\n  - name: a\n    public_key: k\n"
        "    secret_key: s\n    bogus: on\nhttp:\n  listen: 127.0.0.1:9464\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "riskwatch", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}:2:16: ") for line in lines), proc.stderr
    assert any(line.startswith(f"{bad}:7:5: ") and "bogus" in line for line in lines), proc.stderr
