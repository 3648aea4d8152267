"""The rule tick loop (riskwatch/daemon/ticks.py): a round ticks every account that has
something to evaluate, and skips the quiet ones without deciding anything for them; the
periodic save gives the loop back between slices of accounts."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from riskwatch.clock import ManualClock
from riskwatch.daemon import ticks as ticks_mod
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.ticks import TickLoop
from riskwatch.metrics import Metrics
from riskwatch.pipeline import AccountCore
from riskwatch.rules.engine import Decision
from riskwatch.rules.load import load_rules_text
from riskwatch.store.writer import StateWriter
from tests.support.factories import balance_update

T0 = 1_767_225_600.0

RULES = load_rules_text(
    """rules:
  - name: Levered
    when: account_leverage > 4
"""
)


class RecordingDecisions:
    """Takes the place of :class:`Decisions`: keeps what the loop applies."""

    def __init__(self) -> None:
        self.applied: list[tuple[Decision, float | None]] = []

    def apply(self, decision: Decision, seconds: float | None = None, **_: Any) -> None:
        self.applied.append((decision, seconds))


def runtime(name: str, pulse_at: float | None) -> AccountRuntime:
    core = AccountCore(name, stale_after=5.0, rules=RULES)
    if pulse_at is not None:
        core.handle([balance_update(10_000.0, at=pulse_at)], pulse_at)
    return AccountRuntime(config=cast(Any, None), core=core, link=cast(Any, None))


async def one_round(accounts: dict[str, AccountRuntime], now: float) -> RecordingDecisions:
    decisions = RecordingDecisions()
    stopped = asyncio.Event()
    loop = TickLoop(
        accounts,
        cast(Decisions, decisions),
        ManualClock(now),
        None,
        stopped,
        Metrics(CollectorRegistry()),
    )
    loop.on_tick = lambda _: stopped.set()  # one round, then the loop ends
    await loop.run()
    return decisions


async def test_a_round_skips_quiet_accounts_and_ticks_the_others() -> None:
    """Of three accounts (quiet, never seen, stale), only the last two are evaluated and
    handed on; the quiet one gets no decision (so no daily record check either)."""
    accounts = {
        "quiet": runtime("quiet", T0),
        "new": runtime("new", None),
        "stale": runtime("stale", T0 - 5.0),  # stale (stale_after 5 s) by T0 + 0.5
    }
    quiet_before = accounts["quiet"].core.last_decision
    decisions = await one_round(accounts, T0 + 0.5)
    assert [(d.account, d.trigger) for d, _ in decisions.applied] == [
        ("new", "tick"),
        ("stale", "tick"),
    ]
    assert all(seconds is not None for _, seconds in decisions.applied)
    assert [tr.rule for tr in decisions.applied[1][0].transitions] == ["DataStale"]
    assert accounts["quiet"].core.last_decision is quiet_before


class RecordingWriter:
    """Takes the place of the state writer: keeps which account each save was queued
    for, and at which turn of the loop (``turn``, advanced by the test)."""

    def __init__(self) -> None:
        self.turn = 0
        self.saved: list[tuple[str, int]] = []

    def save_daily(self, account: str, _record: Any) -> None:
        self.saved.append((account, self.turn))

    def save_windows(self, account: str, _record: Any) -> None:
        self.saved.append((account, self.turn))

    def pending(self) -> int:
        return 0


async def test_the_periodic_save_queues_every_account_a_slice_per_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first round saves every account's rule state, SAVE_SLICE accounts per turn of
    the loop (other tasks run in between), and a failing account does not stop it."""
    monkeypatch.setattr(ticks_mod, "SAVE_SLICE", 10)
    accounts = {f"a{i:02d}": runtime(f"a{i:02d}", T0) for i in range(35)}
    broken = accounts["a17"].core

    def unreadable() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(broken, "records", unreadable)
    writer = RecordingWriter()
    stopped = asyncio.Event()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    loop = TickLoop(
        accounts,
        cast(Decisions, RecordingDecisions()),
        ManualClock(T0 + 0.5),
        cast(StateWriter, writer),
        stopped,
        metrics,
    )

    async def turns() -> None:
        while True:
            writer.turn += 1
            await asyncio.sleep(0)

    spinner = asyncio.create_task(turns())
    loop.on_tick = lambda _: stopped.set()
    await loop.run()
    spinner.cancel()
    saved = {account for account, _ in writer.saved}
    assert saved == set(accounts) - {"a17"}
    assert len({turn for _, turn in writer.saved}) == 4  # 35 accounts, 10 per turn
    assert registry.get_sample_value("riskwatch_task_errors_total", {"task": "ticks"}) == 1
