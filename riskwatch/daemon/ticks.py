"""The rule tick: time passes for the rules even when no frame comes.

Every :data:`TICK_INTERVAL` each account's core is ticked (``for`` expiry,
``keep_firing_for``, stale data) and every :data:`SAVE_INTERVAL` the daily baselines
and window history are queued for the state database (daily records are also saved as
they change: rulestate.py). Every :data:`DISK_CHECK_INTERVAL` the state directory's
free space is read (daemon/storage.py). Each tick's ``now`` goes to ``on_tick`` first
(``run --record``: the recorder writes it as a tick line, so that ``riskwatch replay``
ticks the rules at the same times as the daemon did: riskwatch/qfex/recorder.py).

No error ends the loop: ``for`` timers and ``DataStale`` depend on it. An error is
logged, counted in ``riskwatch_task_errors_total{task="ticks"}``, and the next tick runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.rulestate import save_rule_state
from riskwatch.daemon.storage import StateHealth
from riskwatch.metrics import Metrics
from riskwatch.store.writer import StateWriter

__all__ = ["DISK_CHECK_INTERVAL", "SAVE_INTERVAL", "TICK_INTERVAL", "TickLoop"]

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.25
"""Seconds between rule ticks (``for`` expiry, ``keep_firing_for``, stale data)."""

SAVE_INTERVAL = 60.0
"""Seconds between saves of daily baselines and window history to the state database."""

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
                    started = time.perf_counter()
                    decision = rt.core.tick(now)
                    # A quiet tick evaluates nothing: keep it out of rule_evaluation_seconds.
                    evaluated = rt.core.last_decision is decision
                    seconds = time.perf_counter() - started if evaluated else None
                    self.decisions.apply(decision, seconds)
                except Exception:
                    log.exception("rule tick of account %s failed; ticking on", name)
                    self.metrics.task_errors.labels("ticks").inc()
            try:
                self._housekeeping(now)
            except Exception:
                log.exception("rule tick housekeeping failed; ticking on")
                self.metrics.task_errors.labels("ticks").inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), timeout=TICK_INTERVAL)

    def _housekeeping(self, now: float) -> None:
        if now - self._last_save >= SAVE_INTERVAL:
            self.save(now)
        if self.health is not None and now - self._last_disk_check >= DISK_CHECK_INTERVAL:
            self._last_disk_check = now
            self.health.check_disk()
        if self.writer is not None:
            self.metrics.state_write_queue.set(self.writer.pending())

    def save(self, now: float, *, alerts: bool = False) -> None:
        """Queue the rule state (with ``alerts``, the alert states too: at shutdown)."""
        if self.writer is None:
            return
        save_rule_state(self.writer, self.accounts, now, alerts=alerts)
        self._last_save = now
