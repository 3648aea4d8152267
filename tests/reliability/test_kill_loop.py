"""SIGKILL at random points of an armed scenario, restart on the same state, many times.

After every kill: the state database opens, every audit row is whole, every command
the exchange received was in the audit log first, none was received twice, and a latch
once stored is still stored. After the last restart the account is exactly what the
scenario implies: flat, no open order, each action confirmed once, the rule latched.

Storage faults: in about a third of the lives, once the trip's intents are in the audit
log, another process takes the database's write lock and holds it until the kill, so
the kill lands while sends, outcomes and alert states wait in the writer thread's
queue. A command sent while the lock is held may lack its audit row (the storage-fault
policy sends ``close_position`` and ``cancel_all_orders`` anyway: docs/reliability.md);
it must still be received at most once and never flip the position.

``RISKWATCH_KILLS`` sets the number of kills (default 10; 50 when run with ``-m slow``),
``RISKWATCH_KILL_SEED`` the seed.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from riskwatch.sim.server import Simulator
from riskwatch.store import Store
from tests.support.rig import DaemonProcess, Http, free_port, setup_for, simulator, wait_for
from tests.support.storage_faults import HeldLock

ACCOUNT = "desk-a"
SYMBOL = "AAPL-USD"
ROUND_KILLS = 2
"""Kills per round; each round is a fresh trip on a fresh state database."""

FINAL_STATUSES = {"intent", "sent", "retried", "confirmed", "failed", "refused", "dry_run",
                  "unknown"}  # fmt: skip


def kills_wanted(config: pytest.Config) -> int:
    """How many kills this run makes (env, else 50 under ``-m slow``, else 10)."""
    if "RISKWATCH_KILLS" in os.environ:
        return int(os.environ["RISKWATCH_KILLS"])
    return 50 if "slow" in (config.getoption("-m") or "") else 10


def _frames(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [
        f.frame
        for f in sim.received_commands(ACCOUNT)
        if isinstance(f.frame, dict) and f.frame.get("type") == kind
    ]


class Checker:
    """The invariants checked after every kill, against the stopped daemon's state."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.latched_seen = False
        self.locked: list[tuple[float, float]] = []
        """Wall-clock windows in which another process held the database's write lock."""

    def check(self, sim: Simulator) -> dict[str, Any]:
        store = Store.open(self.state)  # refuses a corrupt or half-written database
        try:
            rows = store.actions(limit=10_000)
            alerts = store.load_alerts()
        finally:
            store.close()
        for r in rows:
            assert r.status in FINAL_STATUSES, r
            assert r.account == ACCOUNT
            assert r.rule == "LossFlatten"
            assert r.intent_at > 0
        # Audit first: every close the exchange received has its audit row, unless it
        # was received while the lock was held (sent anyway, as the policy says).
        audited_ids = {r.client_order_id for r in rows if r.action == "close_position"}
        closes = [f["params"]["client_order_id"] for f in _frames(sim, "close_position")]
        unaudited = [
            f.time
            for f in sim.received_commands(ACCOUNT)
            if isinstance(f.frame, dict)
            and f.frame.get("type") == "close_position"
            and f.frame["params"]["client_order_id"] not in audited_ids
        ]
        outside = [t for t in unaudited if not self._in_lock(t)]
        assert not outside, (closes, audited_ids, self.locked)
        # Never the same close twice, except that an attempt sent without its audit row
        # (while the lock was held) is unknown to the next life, which may send it again:
        # harmless to repeat by the storage-fault policy, and the only repeat allowed.
        sends = Counter(
            f.frame["params"]["client_order_id"]
            for f in sim.received_commands(ACCOUNT)
            if isinstance(f.frame, dict)
            and f.frame.get("type") == "close_position"
            and not self._in_lock(f.time)
        )
        dupes = [cid for cid, n in sends.items() if n > 1]
        assert not dupes, f"close_position sent twice: {dupes}"
        cancels = [
            f.time
            for f in sim.received_commands(ACCOUNT)
            if isinstance(f.frame, dict) and f.frame.get("type") == "cancel_all_orders"
        ]
        audited_cancels = sum(1 for r in rows if r.action == "cancel_all_orders")
        assert len([t for t in cancels if not self._in_lock(t)]) <= audited_cancels
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty >= 0  # never flipped short
        latched = any(
            rule == "LossFlatten" and record.get("latched") for rule, _a, _s, record in alerts
        )
        if self.latched_seen:
            assert latched, "a stored latch was lost"
        self.latched_seen = self.latched_seen or latched
        repeats = sum(n - 1 for n in Counter(closes).values() if n > 1)
        return {"rows": rows, "latched": latched, "unaudited": len(unaudited), "repeats": repeats}

    def _in_lock(self, t: float) -> bool:
        return any(a <= t <= b for a, b in self.locked)


def _has_intent(state: Path) -> bool:
    try:
        conn = sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True, timeout=0.1)
    except sqlite3.Error:
        return False
    try:
        return bool(conn.execute("SELECT COUNT(*) FROM action").fetchone()[0])
    except sqlite3.Error:
        return False
    finally:
        conn.close()


async def _lock_once_acting(
    state: Path, proc: DaemonProcess, until: asyncio.Event, checker: Checker
) -> None:
    """Hold the write lock from the first audited intent until ``until`` is set, once the
    daemon serves (it opened its store: a lock held at start makes it exit 2 after 5 s)."""
    while not until.is_set():
        serving = "serving /metrics" in proc.log_text()
        if serving and await asyncio.to_thread(_has_intent, state):
            break
        await asyncio.sleep(0.01)
    else:
        return
    started = time.time()
    lock = await asyncio.to_thread(HeldLock, state)
    try:
        await until.wait()
    finally:
        await asyncio.to_thread(lock.release)
        checker.locked.append((started, time.time()))


async def _serving(port: int, proc: DaemonProcess) -> None:
    """Wait until the daemon answers /healthz (or has died at a fault point)."""
    http = Http(port)
    try:

        async def up() -> bool:
            if not proc.alive:
                return True
            try:
                return (await http.get("/healthz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await wait_for(up, timeout=15, what="for the daemon to serve")
    finally:
        await http.close()


async def _round(tmp: Path, rng: random.Random, kills: int, n: int) -> dict[str, int]:
    """One trip: ``kills`` random SIGKILLs, then a clean run to the end, then the checks."""
    figures = {
        "kills": 0,
        "fault_point_kills": 0,
        "storage_fault_kills": 0,
        "closes_sent": 0,
        "unaudited_closes": 0,
        "repeated_unaudited_closes": 0,
        "unfinished_at_kill": 0,
    }
    async with simulator("crash", pulse_interval=0.05) as (sim, secret):
        sim.pause()
        await sim.set_mark(SYMBOL, 190.0)  # trips LossFlatten at the first pulse
        port = free_port()
        setup = setup_for(
            sim, tmp, secret, mode="armed", admin_token="tok-kill-loop-0123456789", port=port,
            # Every life cut short costs an attempt: allow enough for the kills of a round.
            actions_extra=["max_attempts: 20", "retry_window: 10m"],
        )  # fmt: skip
        config = setup.write()
        checker = Checker(setup.state_path)
        for i in range(kills):
            fault: str | None = None
            point = rng.random()
            if point < 0.15:
                fault = "after_intent"
            elif point < 0.3:
                fault = "after_send"
            # The exchange answers late, so that kills land while actions are in flight
            # (a command still delayed when its connection dies is never executed).
            sim.delay_next("close_position", rng.uniform(0.2, 1.0))
            if rng.random() < 0.5:
                sim.delay_next("cancel_all_orders", rng.uniform(0.1, 0.6))
            proc = DaemonProcess(config, tmp / f"daemon-{n}-{i}.log", fault=fault)
            proc.start()
            killed = asyncio.Event()
            windows = len(checker.locked)
            locker = None
            if rng.random() < 0.35:
                locker = asyncio.create_task(
                    _lock_once_acting(setup.state_path, proc, killed, checker)
                )
            # Mostly after start-up (the first 0-1.2 s of a serving daemon hold the auth,
            # the trip, the intents, the sends and the confirmations), sometimes before.
            if rng.random() < 0.85:
                await _serving(port, proc)
            await asyncio.sleep(rng.uniform(0.0, 1.2))
            if not proc.alive:
                if fault is None:
                    pytest.fail(f"the daemon died on its own:\n{proc.log_text()[-3000:]}")
                figures["fault_point_kills"] += 1
            proc.kill()
            killed.set()
            if locker is not None:
                await locker
                figures["storage_fault_kills"] += len(checker.locked) > windows
            figures["kills"] += 1
            seen = checker.check(sim)
            figures["unfinished_at_kill"] += any(
                r.status in ("intent", "sent") for r in seen["rows"]
            )
            figures["unaudited_closes"] = seen["unaudited"]
            figures["repeated_unaudited_closes"] = seen["repeats"]
        sim._delays.clear()  # the last life runs against a prompt exchange
        proc = DaemonProcess(config, tmp / f"daemon-{n}-final.log")
        proc.start()
        http = Http(port)
        try:

            def done() -> bool:
                if not proc.alive:
                    pytest.fail(f"the daemon died on its own:\n{proc.log_text()[-3000:]}")
                ledger = sim.ledger(ACCOUNT)
                return ledger.position(SYMBOL).qty == 0 and not ledger.open_orders()

            await wait_for(done, timeout=20, what="for the account to be flat")

            async def settled() -> bool:
                try:
                    status, text = await http.get("/api/actions")
                except aiohttp.ClientError:
                    return False  # not serving yet
                return status == 200 and '"intent"' not in text and '"sent"' not in text

            await wait_for(settled, timeout=20, what="for every action to settle")
            await asyncio.sleep(0.3)
        finally:
            await http.close()
            assert await proc.terminate() == 0
        result = checker.check(sim)
        rows = result["rows"]
        finals = Counter((r.action, r.status) for r in rows)
        assert finals[("close_position", "confirmed")] == 1, finals
        assert finals[("cancel_all_orders", "confirmed")] == 1, finals
        assert finals[("close_position", "failed")] == 0, finals
        assert result["latched"], "the rule is latched after the flatten"
        assert sim.ledger(ACCOUNT).position(SYMBOL).qty == 0
        figures["closes_sent"] = len(_frames(sim, "close_position"))
    return figures


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_sigkill_loop_loses_and_repeats_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Seeded SIGKILLs during an armed flatten: nothing sent twice, nothing lost, flat at the end."""
    total = kills_wanted(request.config)
    rng = random.Random(int(os.environ.get("RISKWATCH_KILL_SEED", "20261125")))
    done = 0
    n = 0
    totals: Counter[str] = Counter()
    while done < total:
        kills = min(ROUND_KILLS, total - done)
        round_dir = tmp_path / f"round-{n}"
        round_dir.mkdir()
        totals.update(await _round(round_dir, rng, kills, n))
        done += kills
        n += 1
    assert totals["kills"] == total
    if total >= 10:
        assert totals["storage_fault_kills"] >= 1, totals
    print(f"kill loop: {dict(totals)} over {n} round(s)")


async def test_kill_between_two_intents_of_one_trip_loses_no_action(tmp_path: Path) -> None:
    """Killed right after the trip's first intent: the restart still closes the position, once."""
    async with simulator("crash", pulse_interval=0.05) as (sim, secret):
        sim.pause()
        await sim.set_mark(SYMBOL, 190.0)
        port = free_port()
        setup = setup_for(sim, tmp_path, secret, mode="armed", port=port)
        config = setup.write()
        first = DaemonProcess(config, tmp_path / "first.log", fault="after_intent")
        first.start()
        await wait_for(lambda: not first.alive, timeout=15, what="for the fault point")
        assert first.proc is not None
        assert first.proc.returncode == -9
        assert not _frames(sim, "close_position")
        checker = Checker(setup.state_path)
        rows = checker.check(sim)["rows"]
        assert [(r.action, r.status) for r in rows] == [("cancel_all_orders", "intent")]
        second = DaemonProcess(config, tmp_path / "second.log")
        second.start()
        try:

            def flat() -> bool:
                ledger = sim.ledger(ACCOUNT)
                return ledger.position(SYMBOL).qty == 0 and not ledger.open_orders()

            await wait_for(flat, timeout=15, what="for the restart to flatten the account")
            await _serving(port, second)
            await asyncio.sleep(1.0)
        finally:
            assert await second.terminate() == 0
        rows = checker.check(sim)["rows"]
        finals = Counter((r.action, r.status) for r in rows)
        assert finals[("close_position", "confirmed")] == 1, finals
        assert finals[("cancel_all_orders", "confirmed")] == 1, finals
        assert len(_frames(sim, "close_position")) == 1
