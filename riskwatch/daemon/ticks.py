"""The rule tick: time passes for the rules even when no frame comes.

Every :data:`TICK_INTERVAL` each account's core is ticked (``for`` expiry,
``keep_firing_for``, stale data) and every :data:`SAVE_INTERVAL` the daily baselines
and window history are written to the state database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.rulestate import save_rule_state
from riskwatch.store import Store

__all__ = ["SAVE_INTERVAL", "TICK_INTERVAL", "TickLoop"]

TICK_INTERVAL = 0.25
"""Seconds between rule ticks (``for`` expiry, ``keep_firing_for``, stale data)."""

SAVE_INTERVAL = 60.0
"""Seconds between saves of daily baselines and window history to the state database."""


class TickLoop:
    """Ticks every account's rules until ``stopped`` is set; saves rule state periodically."""

    def __init__(
        self,
        accounts: dict[str, AccountRuntime],
        decisions: Decisions,
        clock: Clock,
        store: Store | None,
        stopped: asyncio.Event,
    ) -> None:
        self.accounts = accounts
        self.decisions = decisions
        self.clock = clock
        self.store = store
        self.stopped = stopped
        self._last_save = 0.0

    async def run(self) -> None:
        """Let time pass for the rules: ``for`` expiry and stale data with no frames."""
        while not self.stopped.is_set():
            now = self.clock.now()
            for rt in self.accounts.values():
                started = time.perf_counter()
                decision = rt.core.tick(now)
                # A quiet tick evaluates nothing: keep it out of rule_evaluation_seconds.
                evaluated = rt.core.last_decision is decision
                self.decisions.apply(decision, time.perf_counter() - started if evaluated else None)
            if now - self._last_save >= SAVE_INTERVAL:
                self.save(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), timeout=TICK_INTERVAL)

    def save(self, now: float, *, alerts: bool = False) -> None:
        """Write the rule state now (with ``alerts``, the alert states too: at shutdown)."""
        if self.store is None:
            return
        save_rule_state(self.store, self.accounts, now, alerts=alerts)
        self._last_save = now
