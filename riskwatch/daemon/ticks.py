"""The rule tick: time passes for the rules even when no frame comes.

Every :data:`TICK_INTERVAL` each account's core is ticked (``for`` expiry,
``keep_firing_for``, stale data) and every :data:`SAVE_INTERVAL` the daily baselines
and window history are queued for the state database (daily records are also saved as
they change: rulestate.py), :data:`SAVE_SLICE` accounts per loop turn: a day of window
history is about 20 µs of copying per account, and a thousand accounts at once held the
loop (and any reaction waiting on it) for 20 ms. Every :data:`DISK_CHECK_INTERVAL` the
state directory's free space is read (daemon/storage.py). Each tick's ``now`` goes to
``on_tick`` first (``run --record``: the recorder writes it as a tick line, so that
``riskwatch replay`` ticks the rules at the same times as the daemon did:
riskwatch/qfex/recorder.py). A round skips the accounts with nothing to evaluate
(``AccountCore.tick_due``) without deciding anything for them: replay's ticks of every
core decide the same.

No error ends the loop: ``for`` timers and ``DataStale`` depend on it. An error is
logged, counted in ``riskwatch_task_errors_total{task="ticks"}``, and the next tick runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.rulestate import save_account_rule_state, save_rule_state
from riskwatch.daemon.storage import StateHealth
from riskwatch.metrics import Metrics
from riskwatch.store.writer import StateWriter
from riskwatch.tasks import wait_until_set

__all__ = ["DISK_CHECK_INTERVAL", "SAVE_INTERVAL", "SAVE_SLICE", "TICK_INTERVAL", "TickLoop"]

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.25
"""Seconds between rule ticks (``for`` expiry, ``keep_firing_for``, stale data)."""

SAVE_INTERVAL = 60.0
"""Seconds between saves of daily baselines and window history to the state database."""

SAVE_SLICE = 50
"""Accounts whose rule state the periodic save queues between two turns of the loop."""

DISK_CHECK_INTERVAL = 5.0
"""Seconds between reads of the state directory's free space."""


class TickLoop:
    """Ticks every account's rules until ``stopped`` is set; saves rule state periodically."""

    def __init__(
        self,
        accounts: dict[str, AccountRuntime],
        decisions: Decisions,
        clock: Clock,
        writer: StateWriter | None,
        stopped: asyncio.Event,
        metrics: Metrics,
        health: StateHealth | None = None,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        self.accounts = accounts
        self.decisions = decisions
        self.clock = clock
        self.writer = writer
        self.stopped = stopped
        self.metrics = metrics
        self.health = health
        self.on_tick = on_tick
        """Called with each tick's ``now`` before the accounts are ticked (the recorder)."""
        self._last_save = 0.0
        self._last_disk_check = -DISK_CHECK_INTERVAL

    async def run(self) -> None:
        """Let time pass for the rules: ``for`` expiry and stale data with no frames."""
        while not self.stopped.is_set():
            now = self.clock.now()
            if self.on_tick is not None:
                try:
                    self.on_tick(now)
                except Exception:
                    log.exception("rule tick listener failed; ticking on")
                    self.metrics.task_errors.labels("ticks").inc()
            for name, rt in self.accounts.items():
                try:
                    core = rt.core
                    # A quiet account's tick would evaluate nothing and decide nothing:
                    # skipped without building its empty decision (most accounts, most
                    # ticks: the round is one block of the loop).
                    if not core.tick_due(now):
                        continue
                    started = time.perf_counter()
                    decision = core.tick(now)  # evaluated: tick_due said so
                    self.decisions.apply(decision, time.perf_counter() - started)
                except Exception:
                    log.exception("rule tick of account %s failed; ticking on", name)
                    self.metrics.task_errors.labels("ticks").inc()
            try:
                self._housekeeping(now)
            except Exception:
                log.exception("rule tick housekeeping failed; ticking on")
                self.metrics.task_errors.labels("ticks").inc()
            if self.writer is not None and now - self._last_save >= SAVE_INTERVAL:
                self._last_save = now
                await self._save_paced(self.writer, now)
            await wait_until_set(self.stopped, TICK_INTERVAL)

    async def _save_paced(self, writer: StateWriter, now: float) -> None:
        """The periodic save: every account's rule state queued, :data:`SAVE_SLICE` per
        turn of the loop (each account's records copied at its turn), of the accounts
        configured when it started. An account whose save fails is logged and counted,
        and the others are saved."""
        for i, (name, rt) in enumerate(list(self.accounts.items()), start=1):
            try:
                save_account_rule_state(writer, name, rt, now)
            except Exception:
                log.exception("periodic save of account %s's rule state failed", name)
                self.metrics.task_errors.labels("ticks").inc()
            if i % SAVE_SLICE == 0:
                await asyncio.sleep(0)

    def _housekeeping(self, now: float) -> None:
        if self.health is not None and now - self._last_disk_check >= DISK_CHECK_INTERVAL:
            self._last_disk_check = now
            self.health.check_disk()
        if self.writer is not None:
            self.metrics.state_write_queue.set(self.writer.pending())

    def save(self, now: float, *, alerts: bool = False) -> None:
        """Queue every account's rule state at once (with ``alerts``, the alert states
        too: at shutdown)."""
        if self.writer is None:
            return
        save_rule_state(self.writer, self.accounts, now, alerts=alerts)
        self._last_save = now
