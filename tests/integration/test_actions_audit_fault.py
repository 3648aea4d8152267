"""The audit log cannot be written (its database held locked by another process): the
harmless protective actions still leave, the others do not, and a person is told."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.notify_sinks import webhook
from tests.support.rig import Http, in_process, metric, setup_for, simulator, wait_for

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"

RULES = """
rules:
  - name: LossFlatten
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [cancel_all_orders, {close_position: all}]
  - name: LossReduce
    scope: position
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [{reduce_position: {fraction: 0.5, over: 60s}}]
"""


def _sent(sim: Any) -> list[str]:
    return [
        f.frame["type"]
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict)
        and f.frame.get("type") in ("cancel_all_orders", "close_position", "add_twap")
    ]


@pytest.mark.timeout(60)
async def test_locked_audit_log_sends_close_and_cancel_and_escalates(tmp_path: Path) -> None:
    """Intent writes fail: close and cancel are sent, the TWAP is not, both escalate."""
    async with webhook() as hook, simulator("crash", pulse_interval=0.1) as (sim, secret):
        sim.pause()
        setup = setup_for(sim, tmp_path, secret, mode="armed", rules=RULES,
                          notify_urls=[hook.url()])  # fmt: skip
        async with in_process(setup) as daemon:
            assert daemon.http_port is not None
            http = Http(daemon.http_port)
            try:
                await wait_for(lambda: daemon.accounts[ACCOUNT].core.snapshot.balance is not None,
                               10, "(live)")  # fmt: skip
                locker = sqlite3.connect(str(setup.state_path), timeout=5.0)
                locker.execute("BEGIN EXCLUSIVE")
                try:
                    await sim.set_mark(SYMBOL, 190.0)
                    await wait_for(lambda: sorted(_sent(sim)) == ["cancel_all_orders",
                                                                  "close_position"],
                                   10, "(close and cancel sent)")  # fmt: skip
                    await asyncio.sleep(1.0)
                    assert "add_twap" not in _sent(sim)
                    # The store's fault is counted and makes the daemon unready meanwhile.
                    m = await http.metrics()
                    assert metric(m, "riskwatch_state_errors_total", op="intent") >= 3
                    status, body = await http.get("/readyz")
                    assert status == 503, body
                    assert "state database cannot be written" in body

                    def texts() -> list[str]:
                        return [str(doc) for doc in hook.received]

                    await wait_for(
                        lambda: sum("audit log unwritable" in t for t in texts()) >= 3,
                        10,
                        "(escalations delivered)",
                    )
                finally:
                    locker.rollback()
                    locker.close()
                escalations = [t for t in texts() if "audit log unwritable" in t]
                sent_anyway = [d for d in hook.received if "sent anyway" in str(d)]
                # Told as an audit-log fault, not as a failed action (it was sent).
                assert sent_anyway
                assert all(
                    d["title"].startswith("[CRITICAL] action audit log unwritable")
                    for d in sent_anyway
                )
                assert any("reduce_position" in t and "not sent" in t for t in escalations)
                assert any("close_position" in t and "sent anyway" in t for t in escalations)
                assert any("cancel_all_orders" in t and "sent anyway" in t for t in escalations)
                m = await http.metrics()
                for action in ("cancel_all_orders", "close_position", "reduce_position"):
                    got = metric(m, "riskwatch_actions_total", action=action, result="audit_failed")
                    assert got == 1.0, action
                for action in ("cancel_all_orders", "close_position"):
                    got = metric(m, "riskwatch_actions_total", action=action, result="unaudited")
                    assert got == 1.0, action
                assert metric(m, "riskwatch_actions_total", action="reduce_position",
                              result="sent") == 0.0  # fmt: skip
            finally:
                await http.close()
