"""``riskwatch replay`` of a recording in which the trade link dropped while an action was
in flight: the recording says when the link went down (no frame does), so replay's audit
log equals the daemon's, row for row, across the reconnect and its reconciliation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riskwatch.config import load_config
from riskwatch.daemon.app import Daemon
from riskwatch.offline.replay import cores_for, replay
from riskwatch.qfex.recorder import RecordedDisconnect, RecordedFrame, read_recording
from riskwatch.records import ActionRecord
from riskwatch.rules.load import load_rule_files
from riskwatch.sim.server import Simulator
from tests.support.rig import in_process, setup_for, simulator, wait_for

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"

Row = tuple[str, str, str | None, int, str, str | None]


def _row(r: ActionRecord) -> Row:
    return (r.rule, r.action, r.symbol, r.attempt, r.status, r.detail)


def _live(d: Daemon) -> bool:
    rt = d.accounts[ACCOUNT]
    return bool(rt.status and rt.status.authenticated and rt.core.snapshot.balance is not None)


def _sent(sim: Simulator, kind: str) -> bool:
    return any(
        isinstance(f.frame, dict) and f.frame.get("type") == kind
        for f in sim.received_commands(ACCOUNT)
    )


async def _drop_during_a_close(folder: Path) -> tuple[Path, Path, list[Row]]:
    """An armed daemon (recording) trips; the link drops while the close is in flight."""
    recording = folder / "rec.jsonl"
    async with simulator("crash", pulse_interval=0.1) as (sim, secret):
        sim.pause()
        setup = setup_for(sim, folder, secret, mode="armed", stale_after="3s")
        async with in_process(setup, record=recording) as daemon:
            await wait_for(lambda: _live(daemon), what="for the account to be live")
            sim.delay_next("close_position", 0.3)
            await sim.set_mark(SYMBOL, 190.0)  # the loss passes 1000 USD: LossFlatten
            await sim.pulse_now()
            await wait_for(lambda: _sent(sim, "close_position"), what="for the close")
            await sim.drop_connections(ACCOUNT)
            await wait_for(lambda: daemon.accounts[ACCOUNT].status.reconnects >= 1)  # type: ignore[union-attr]
            await wait_for(lambda: _live(daemon))

            def settled() -> bool:
                rows = daemon.executor.store.actions(limit=100, account=ACCOUNT)
                final = ("confirmed", "failed", "retried")
                return len(rows) >= 2 and all(r.status in final for r in rows)

            for _ in range(100):  # the paused scenario pulses when told to
                await sim.pulse_now()
                await asyncio.sleep(0.1)
                if settled():
                    break
            assert settled(), [(r.action, r.status) for r in daemon.executor.store.actions()]
            await asyncio.sleep(0.5)
            live = [
                _row(r) for r in reversed(daemon.executor.store.actions(limit=100, account=ACCOUNT))
            ]
    return recording, setup.config_path, live


@pytest.mark.timeout(60)
def test_replay_equals_the_daemon_across_a_dropped_link(tmp_path: Path) -> None:
    recording, config_path, live = asyncio.run(_drop_during_a_close(tmp_path))
    # The close was in flight when the link dropped: its outcome became unknown.
    assert any(row[1] == "close_position" and row[3] == 1 and row[4] != "sent" for row in live)
    assert any("connection lost" in (row[5] or "") or row[5] == "reconciled" for row in live)
    lines = list(read_recording(recording))
    drops = [i for i, line in enumerate(lines) if isinstance(line, RecordedDisconnect)]
    auths = [
        i
        for i, line in enumerate(lines)
        if isinstance(line, RecordedFrame) and "authenticated" in str(line.frame)
    ]
    assert drops, "no disconnect line in the recording"
    first_drop = lines[drops[0]]
    assert isinstance(first_drop, RecordedDisconnect)
    assert first_drop.account == ACCOUNT
    assert auths[0] < drops[0] < auths[1]  # between the two connections
    config = load_config(config_path)
    rules = load_rule_files(list(config.rules.files))
    result = replay(
        lines, cores_for(config, rules), actions=config.actions, exchange=config.exchange
    )
    replayed = [(r.rule, r.action, r.symbol, r.attempt, r.status, r.detail) for r in result.audit]
    assert replayed == live
