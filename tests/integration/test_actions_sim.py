"""Protective actions of the real daemon against the real simulator over loopback."""

from __future__ import annotations

import asyncio
import io
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from riskwatch.actions.model import ActionEvent
from riskwatch.cli.control import run_control
from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.scenario import load_scenario
from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.support.asyncapi_schemas import validate_client_message
from tests.support.daemon_harness import MS, wait_for
from tests.support.paths import REPO

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"
TOKEN = "test-admin-token-0123456789abcdef"

RULES_BOTH = """
rules:
  - name: LossCritical
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [cancel_all_orders, {close_position: all}]
"""

RULES_CLOSE = """
rules:
  - name: LossCritical
    scope: account
    when: unrealised_pnl < -1000
    severity: critical
    latch: true
    actions: [{close_position: largest_loss}]
"""


def _config(sim: Simulator, tmp: Path, secret_file: Path, mode: str, actions: str) -> Path:
    scenario = sim.scenario
    lines = [
        "exchange:",
        f"  url: {sim.trade_url}",
        f"  rest_url: {sim.rest_url}",
        "  stale_after: 3s",
        "accounts:",
    ]
    for acc in scenario.accounts:
        lines += [
            f"  - name: {acc.name}",
            f"    public_key: {acc.public_key}",
            f"    secret_key_file: {secret_file}",
        ]
    lines += [
        f"rules: [{tmp / 'rules.yaml'}]",
        "actions:",
        f"  mode: {mode}",
        *[f"  {line}" for line in actions.splitlines() if line.strip()],
        "http:",
        "  listen: 127.0.0.1:0",
        f"  admin_token: {TOKEN}",
        "state:",
        f"  path: {tmp / 'state.db'}",
    ]
    path = tmp / "riskwatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@asynccontextmanager
async def simulator(tmp: Path, **options: Any) -> AsyncIterator[tuple[Simulator, Path]]:
    """The crash scenario, paused (marks only move when a test pins them), fast pulses."""
    scenario = load_scenario("crash")
    secret = secrets.token_hex(16)
    secret_file = tmp / "qfex_secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    sim_secrets = {acc.public_key: secret for acc in scenario.accounts}
    async with Simulator(scenario, sim_secrets, pulse_interval=0.1, **options) as sim:
        sim.pause()
        yield sim, secret_file


@asynccontextmanager
async def daemon(
    sim: Simulator,
    tmp: Path,
    secret_file: Path,
    *,
    mode: str = "armed",
    rules: str = RULES_BOTH,
    actions: str = "",
) -> AsyncIterator[tuple[Daemon, list[ActionEvent]]]:
    (tmp / "rules.yaml").write_text(rules, encoding="utf-8")
    config = load_config(_config(sim, tmp, secret_file, mode, actions))
    store = Store.open(config.state.path)
    d = Daemon(config, rules=load_rule_files(list(config.rules.files)), store=store)
    events: list[ActionEvent] = []
    d.executor.listeners.append(events.append)
    await d.start()
    try:
        await wait_for(lambda: d.accounts[ACCOUNT].core.snapshot.last_pulse_at is not None)
        yield d, events
    finally:
        await d.stop()
        store.close()


def _commands(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [f.frame for f in sim.received_commands(ACCOUNT) if f.frame.get("type") == kind]


def _validate_all(sim: Simulator) -> None:
    for f in sim.received_commands(ACCOUNT):
        validate_client_message(f.frame)


def _flat(sim: Simulator) -> bool:
    return sim.ledger(ACCOUNT).position(SYMBOL).qty == 0


def _metric(d: Daemon, name: str, **labels: str) -> float:
    value = d.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _stored(d: Daemon) -> Daemon:
    """``d`` once its writer thread has committed what was queued (outcomes are written
    after their events and metrics, off the event loop)."""
    assert d.writer is not None
    assert d.writer.flush(5.0)
    return d


def _outcomes(d: Daemon) -> list[tuple[str, str | None, int, str]]:
    return [
        (r.action, r.symbol, r.attempt, r.status) for r in _stored(d).executor.store.actions(50)
    ]


async def test_armed_trip_sends_each_command_once_and_flattens(tmp_path: Path) -> None:
    """An armed trip cancels the orders and closes the position, each command sent once."""
    async with simulator(tmp_path) as (sim, secret), daemon(sim, tmp_path, secret) as (d, ev):
        assert sim.ledger(ACCOUNT).open_orders()
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        await wait_for(
            lambda: (
                _metric(
                    d, "riskwatch_actions_total", action="cancel_all_orders", result="confirmed"
                )
                == 1
            )
        )
        await asyncio.sleep(300 * MS)  # more pulses: nothing else may be sent
        assert _flat(sim)
        assert not sim.ledger(ACCOUNT).open_orders()
        assert len(_commands(sim, "cancel_all_orders")) == 1
        (close,) = _commands(sim, "close_position")
        assert close["params"]["symbol"] == SYMBOL
        assert close["params"]["client_order_id"].startswith("rw-")
        _validate_all(sim)
        assert _metric(d, "riskwatch_actions_total", action="close_position", result="sent") == 1
        assert _metric(d, "riskwatch_pulse_to_action_seconds_count") == 2
        assert [e.kind for e in ev if e.action == "close_position"] == ["sent", "confirmed"]
        doc = d.state_document()
        assert doc["mode"] == "armed"
        assert doc["armed"] is True
        recent = doc["actions"]["recent"]
        assert {(r["action"], r["outcome"]) for r in recent} == {
            ("close_position", "confirmed"),
            ("cancel_all_orders", "confirmed"),
        }
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{d.http_port}"
            async with http.get(base + "/api/actions") as resp:
                body = await resp.json()
            assert [a["action"] for a in body["actions"]] == ["close_position", "cancel_all_orders"]
            assert body["actions"][0]["client_order_id"] == close["params"]["client_order_id"]


async def test_dry_run_sends_nothing(tmp_path: Path) -> None:
    """In dry-run mode a trip is recorded, counted and notified as would-have, never sent."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, mode="dry-run") as (d, ev),
    ):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="dry_run")
                == 1
            )
        )
        await asyncio.sleep(300 * MS)
        assert not _commands(sim, "close_position")
        assert not _commands(sim, "cancel_all_orders")
        assert not _flat(sim)
        assert (
            _metric(d, "riskwatch_actions_total", action="cancel_all_orders", result="dry_run") == 1
        )
        assert {e.kind for e in ev} == {"dry_run"}
        assert "would have close_position AAPL-USD" in ev[-1].text
        assert {o[3] for o in _outcomes(d)} == {"dry_run"}


async def test_partial_fill_is_retried_until_flat(tmp_path: Path) -> None:
    """A close that fills half is retried with new client order ids until the account is flat."""
    async with (
        simulator(tmp_path, fill_fraction=0.5) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, _),
    ):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: len(_commands(sim, "close_position")) >= 2)
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty <= 125.0
        sim.fill_fraction = 1.0
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        assert _flat(sim)
        ids = [c["params"]["client_order_id"] for c in _commands(sim, "close_position")]
        assert len(ids) >= 3
        assert len(set(ids)) == len(ids)
        assert _metric(d, "riskwatch_action_retries_total", action="close_position") == len(ids) - 1
        assert _metric(d, "riskwatch_actions_total", action="close_position", result="sent") == 1
        _validate_all(sim)


async def test_rejected_command_is_retried(tmp_path: Path) -> None:
    """A close answered with a retryable err is retried once and then confirmed."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, _),
    ):
        sim.reject_next("close_position", "ServerError")
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        assert len(_commands(sim, "close_position")) == 2
        statuses = [o[3] for o in _outcomes(d)]
        assert statuses == ["confirmed", "retried"]


async def test_rejections_beyond_the_limit_escalate(tmp_path: Path) -> None:
    """Rejected on every attempt, the close fails after max_attempts and escalates."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE, actions="max_attempts: 2") as (d, ev),
    ):
        sim.reject_next("close_position", "RateLimited", as_order_status="RATE_LIMITED")
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: len(_commands(sim, "close_position")) == 1)
        sim.reject_next("close_position", "RateLimited", as_order_status="RATE_LIMITED")
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="failed") == 1
            )
        )
        assert len(_commands(sim, "close_position")) == 2
        assert not _flat(sim)
        escalation = [e for e in ev if e.kind == "escalation"]
        assert len(escalation) == 1
        assert escalation[0].code == "RETRIES_EXHAUSTED"
        assert "RATE_LIMITED" in escalation[0].detail
        assert escalation[0].text.startswith("FAILED close_position AAPL-USD")


async def test_set_leverage_rejection_is_reported_clearly(tmp_path: Path) -> None:
    """A set_user_leverage the exchange rejects fails at once with the reason, not retried."""
    rules = """
rules:
  - name: LeverageTooHigh
    scope: position
    when: leverage > 5 and position == 0 and open_orders == 0
    actions: [{set_leverage: 5}]
"""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=rules) as (d, ev),
    ):
        sim.reject_next("set_user_leverage", "InvalidParameter")
        sim.exchange.cancel_orders(ACCOUNT, time.time())  # MSFT-USD: flat, no order now
        await wait_for(lambda: any(e.kind == "escalation" for e in ev))
        (esc,) = [e for e in ev if e.kind == "escalation"]
        assert esc.symbol == "MSFT-USD"
        assert esc.code == "REJECTED"
        assert "err InvalidParameter" in esc.detail
        assert "QFEX rejects set_user_leverage while MSFT-USD has a position" in esc.detail
        assert len(_commands(sim, "set_user_leverage")) == 1
        assert _metric(d, "riskwatch_actions_total", action="set_leverage", result="failed") == 1
        _validate_all(sim)


async def test_disconnect_in_flight_is_reconciled_not_resent(tmp_path: Path) -> None:
    """A close whose reply is lost in a disconnect is confirmed from the next pulses, not resent."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, _),
    ):
        sim.delay_next("close_position", 5.0)
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: len(_commands(sim, "close_position")) == 1)
        (frame,) = _commands(sim, "close_position")
        # The exchange executes it, but the replies never reach riskwatch.
        sim.exchange.handle(ACCOUNT, frame, time.time())
        await sim.drop_connections(ACCOUNT)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        assert len(_commands(sim, "close_position")) == 1
        assert len(_commands(sim, "get_user_orders")) == 1
        assert _flat(sim)
        (row,) = _stored(d).executor.store.actions(5)
        assert row.status == "confirmed"
        assert row.detail == "reconciled"


async def test_disconnect_without_effect_retries_with_a_new_id(tmp_path: Path) -> None:
    """A close lost with its connection is reconciled, then retried under a new client order id."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, _),
    ):
        sim.delay_next("close_position", 5.0)
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(lambda: len(_commands(sim, "close_position")) == 1)
        await sim.drop_connections(ACCOUNT)  # the delayed command dies with the socket
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        ids = [c["params"]["client_order_id"] for c in _commands(sim, "close_position")]
        assert len(ids) == 2
        assert ids[0] != ids[1]
        assert _flat(sim)


async def test_circuit_breaker_opens_at_the_limit(tmp_path: Path) -> None:
    """Beyond max_per_account_per_hour, actions are refused with CIRCUIT_BREAKER_OPEN."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, actions="max_per_account_per_hour: 1") as (d, ev),
    ):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="refused")
                == 1
            )
        )
        await wait_for(
            lambda: (
                _metric(
                    d, "riskwatch_actions_total", action="cancel_all_orders", result="confirmed"
                )
                == 1
            )
        )
        assert not _commands(sim, "close_position")
        assert not _flat(sim)
        (opened,) = [e for e in ev if e.kind == "breaker_open"]
        assert opened.code == "CIRCUIT_BREAKER_OPEN"
        assert opened.detail == "1 actions in 1h"
        rows = {r.action: r for r in _stored(d).executor.store.actions(10)}
        assert rows["close_position"].detail == "CIRCUIT_BREAKER_OPEN: 1 actions in 1h"


async def test_latched_rule_does_not_act_again(tmp_path: Path) -> None:
    """After its trip, a latched rule sends nothing more even when the loss comes back."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, _),
    ):
        await sim.set_mark(SYMBOL, 150.0)
        await wait_for(
            lambda: (
                _metric(d, "riskwatch_actions_total", action="close_position", result="confirmed")
                == 1
            )
        )
        sim.ledger(ACCOUNT).apply_fill(SYMBOL, "BUY", 100.0, 150.0, 0.0)
        await sim.set_mark(SYMBOL, 120.0)
        await wait_for(
            lambda: d.accounts[ACCOUNT].core.snapshot.positions[SYMBOL].pulse.position == 100.0
        )
        await asyncio.sleep(500 * MS)
        assert len(_commands(sim, "close_position")) == 1
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 100.0


async def test_disarm_and_arm_over_http(tmp_path: Path) -> None:
    """POST /api/disarm engages the kill switch (refusing actions); /api/arm needs the token."""
    async with (
        simulator(tmp_path) as (sim, secret),
        daemon(sim, tmp_path, secret, rules=RULES_CLOSE) as (d, ev),
    ):
        base = f"http://127.0.0.1:{d.http_port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/disarm") as resp:
                assert resp.status == 401
            async with http.post(base + "/api/disarm", headers=auth) as resp:
                assert resp.status == 200
                assert (await resp.json())["kill_switch"] is True
            await sim.set_mark(SYMBOL, 150.0)
            await wait_for(lambda: any(e.kind == "refused" for e in ev))
            assert ev[-1].code == "KILL_SWITCH"
            assert not _commands(sim, "close_position")
            assert d.state_document()["kill_switch"] is True
            async with http.post(base + "/api/arm", headers=auth) as resp:
                assert (await resp.json())["armed"] is True
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n", encoding="utf-8")
        out = io.StringIO()
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(
            None, lambda: run_control("disarm", url=base, token_file=token_file, out=out)
        )
        assert code == 0
        assert "kill switch True" in out.getvalue()
        assert TOKEN not in out.getvalue()
        code = await loop.run_in_executor(None, lambda: run_control("actions", url=base, out=out))
        assert code == 0
        assert "KILL_SWITCH: actions are disarmed" in out.getvalue()


# --- crash safety: the daemon as a subprocess, killed at a fault point -------------


def _spawn(config: Path, fault: str | None) -> subprocess.Popen[bytes]:
    # The fault point is set by a wrapper in tests/support, never by the product.
    entry = ["-m", "tests.support.fault_points", fault] if fault else ["-m", "riskwatch"]
    return subprocess.Popen(
        [sys.executable, *entry, "run", "-c", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _restart_case(tmp_path: Path, fault: str) -> tuple[Simulator, list[Any]]:
    async with simulator(tmp_path) as (sim, secret):
        (tmp_path / "rules.yaml").write_text(RULES_CLOSE, encoding="utf-8")
        config = _config(sim, tmp_path, secret, "armed", "")
        proc = _spawn(config, fault)
        try:
            await wait_for(lambda: bool(_commands(sim, "subscribe")), timeout=15000 * MS)
            await sim.set_mark(SYMBOL, 150.0)
            loop = asyncio.get_running_loop()
            code = await asyncio.wait_for(loop.run_in_executor(None, proc.wait), timeout=15)
            assert code == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        first = len(_commands(sim, "close_position"))
        with Store.open(tmp_path / "state.db") as store:
            (row,) = store.unfinished_actions()
        proc = _spawn(config, None)
        try:
            await wait_for(lambda: _flat(sim), timeout=15000 * MS)
            store = Store.open(tmp_path / "state.db")
            try:
                await wait_for(lambda: not store.unfinished_actions(), timeout=15000 * MS)
                rows = store.actions(10)
            finally:
                store.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        _validate_all(sim)
        return sim, [first, row, rows]


async def test_sigkill_after_intent_before_send_sends_once_on_restart(tmp_path: Path) -> None:
    """Killed between the audit write and the send, the restarted daemon closes exactly once."""
    sim, (first, row, rows) = await _restart_case(tmp_path, "after_intent")
    assert first == 0
    assert row.status == "intent"
    closes = _commands(sim, "close_position")
    assert len(closes) == 1
    assert closes[0]["params"]["client_order_id"] != row.client_order_id
    assert [(r.attempt, r.status) for r in rows] == [(2, "confirmed"), (1, "retried")]


async def test_sigkill_after_send_is_reconciled_not_resent(tmp_path: Path) -> None:
    """Killed right after the send, the restarted daemon confirms from pulses and sends nothing."""
    sim, (first, row, rows) = await _restart_case(tmp_path, "after_send")
    assert first == 1
    assert row.status in ("intent", "sent")
    assert len(_commands(sim, "close_position")) == 1
    assert [(r.attempt, r.status, r.detail) for r in rows] == [(1, "confirmed", "reconciled")]
