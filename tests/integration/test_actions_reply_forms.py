"""Protective actions against the simulator answering in the documentation's other forms:
``order_response`` with an empty ``client_order_id`` (the docs' ACK example), and
``err``/``ack`` echoing a re-serialised request (the docs' error example)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from riskwatch.daemon.app import Daemon
from riskwatch.sim.server import Simulator
from tests.support.notify_sinks import Webhook, webhook
from tests.support.rig import Http, in_process, metric, setup_for, simulator, wait_for

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"

CLOSE_RULES = """
rules:
  - name: LossClose
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [{close_position: all}]
"""

CANCEL_RULES = """
rules:
  - name: LossCancel
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [cancel_all_orders]
"""


def sent(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [
        f.frame
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == kind
    ]


@asynccontextmanager
async def armed(
    tmp: Path, rules: str, **modes: Any
) -> AsyncIterator[tuple[Simulator, Daemon, Http, Webhook]]:
    async with (
        webhook() as hook,
        simulator("crash", pulse_interval=0.1, **modes) as (sim, secret),
    ):
        sim.pause()
        setup = setup_for(sim, tmp, secret, mode="armed", rules=rules, notify_urls=[hook.url()])
        async with in_process(setup) as daemon:
            daemon.executor.reply_timeout = 0.4
            daemon.executor.confirm_timeout = 0.4
            daemon.executor.backoff_initial = 0.1
            assert daemon.http_port is not None
            http = Http(daemon.http_port)
            try:
                await wait_for(
                    lambda: daemon.accounts[ACCOUNT].core.snapshot.balance is not None, 10
                )
                yield sim, daemon, http, hook
            finally:
                await http.close()


def _rows(daemon: Daemon) -> list[tuple[str, int, str, str]]:
    return [
        (r.action, r.attempt, r.status, r.detail or "")
        for r in reversed(daemon.executor.store.actions(limit=50, account=ACCOUNT))
    ]


@pytest.mark.timeout(60)
async def test_close_without_echoed_id_is_confirmed(tmp_path: Path) -> None:
    """Replies carry client_order_id "": the close is still matched and confirmed once."""
    async with armed(tmp_path, CLOSE_RULES, blank_order_ids=True) as (sim, daemon, _http, _):
        await sim.set_mark(SYMBOL, 190.0)
        await wait_for(lambda: any(r[2] == "confirmed" for r in _rows(daemon)), 10)
        assert len(sent(sim, "close_position")) == 1
        assert _rows(daemon) == [("close_position", 1, "confirmed", "effect seen in pulse")]


@pytest.mark.timeout(60)
async def test_close_rejection_without_echoed_id_reaches_the_operator(tmp_path: Path) -> None:
    """BAD_SYMBOL in an order_response with client_order_id "": sent once, not retried,
    the reason in the audit log, the metric and the escalation."""
    async with armed(tmp_path, CLOSE_RULES, blank_order_ids=True) as (sim, daemon, http, hook):
        sim.reject_next("close_position", as_order_status="BAD_SYMBOL")
        await sim.set_mark(SYMBOL, 190.0)
        await wait_for(lambda: any(r[2] == "failed" for r in _rows(daemon)), 10)
        await asyncio.sleep(1.0)  # a retry would have left by now
        assert len(sent(sim, "close_position")) == 1
        ((action, attempt, status, detail),) = _rows(daemon)
        assert (action, attempt, status) == ("close_position", 1, "failed")
        assert detail == "REJECTED: order_response BAD_SYMBOL"
        m = await http.metrics()
        labels = {"action": "close_position", "result": "rejected_bad_symbol"}
        assert metric(m, "riskwatch_actions_total", **labels) == 1.0
        await hook.wait_for(1, timeout=10)
        assert any("BAD_SYMBOL" in str(doc) for doc in hook.received)


@pytest.mark.timeout(60)
async def test_cancel_err_with_reserialised_echo_is_not_retried(tmp_path: Path) -> None:
    """err PermissionDenied echoing the request re-serialised: sent once, not retried,
    the operator told why."""
    async with armed(tmp_path, CANCEL_RULES, reserialised_echoes=True) as (
        sim,
        daemon,
        http,
        hook,
    ):
        sim.reject_next("cancel_all_orders", "PermissionDenied")
        await sim.set_mark(SYMBOL, 190.0)
        await wait_for(lambda: any(r[2] == "failed" for r in _rows(daemon)), 10)
        await asyncio.sleep(1.0)
        assert len(sent(sim, "cancel_all_orders")) == 1
        ((action, attempt, status, detail),) = _rows(daemon)
        assert (action, attempt, status) == ("cancel_all_orders", 1, "failed")
        assert detail.startswith("REJECTED: err PermissionDenied")
        m = await http.metrics()
        labels = {"action": "cancel_all_orders", "result": "rejected_permissiondenied"}
        assert metric(m, "riskwatch_actions_total", **labels) == 1.0
        await hook.wait_for(1, timeout=10)
        assert any("PermissionDenied" in str(doc) for doc in hook.received)


@pytest.mark.timeout(60)
async def test_cancel_ack_with_reserialised_echo_is_confirmed(tmp_path: Path) -> None:
    """An ack echoing the request re-serialised answers the cancel: confirmed once."""
    async with armed(tmp_path, CANCEL_RULES, reserialised_echoes=True) as (sim, daemon, _, _h):
        await sim.set_mark(SYMBOL, 190.0)
        await wait_for(lambda: any(r[2] == "confirmed" for r in _rows(daemon)), 10)
        assert len(sent(sim, "cancel_all_orders")) == 1
