"""Exchange frames into the accounts' cores: trade pulses, bursts, mark prices, link status.

Each frame's events go to its account's pure core with the frame's receive time; the
decision goes to :class:`~riskwatch.daemon.decisions.Decisions`; the frames the core
and the executor want written go back to the connection, on the same loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from riskwatch.actions.executor import ActionExecutor
from riskwatch.clock import Clock
from riskwatch.daemon.accounts import AccountRuntime
from riskwatch.daemon.decisions import Decisions
from riskwatch.metrics import Metrics
from riskwatch.model import BadMessage, Event, MarkPrice, UnknownMessage
from riskwatch.qfex.client import ConnectionStatus, MarketDataConnection

__all__ = ["BURST_QUIET", "Frames"]

BURST_QUIET = 0.002
"""Seconds without a position frame after which a burst no balance closed is evaluated."""

log = logging.getLogger(__name__)


class Frames:
    """Handles every account's trade frames and the market-data frames."""

    def __init__(
        self,
        accounts: dict[str, AccountRuntime],
        decisions: Decisions,
        executor: ActionExecutor,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.accounts = accounts
        self.decisions = decisions
        self.executor = executor
        self.metrics = metrics
        self.clock = clock
        self.mds: MarketDataConnection | None = None
        """The market-data connection, once started (asked to watch new symbols)."""
        self.on_flush: Callable[[str, float], None] | None = None
        """Called with ``(account, now)`` before a burst flush reaches the account's core
        (``run --record``: riskwatch/qfex/recorder.py)."""
        self.on_disconnect: Callable[[str, float], None] | None = None
        """Called with ``(account, now)`` when an account's link goes down, before the
        executor hears of it (``run --record``: riskwatch/qfex/recorder.py)."""
        self._up: set[str] = set()  # accounts whose link is up (connected, authenticated)
        self._flush_soon: set[str] = set()  # accounts with a deferred-burst flush queued
        self._deferred_at: dict[str, float] = {}  # loop time of the last deferred frame
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop frames arrive on

    def on_trade_events(self, account: str, events: Sequence[Event], now: float) -> list[str]:
        """Count, log and apply one frame's events; return frames to send at once."""
        rt = self.accounts[account]
        rt.link.observe(events, now)
        rt.core.stale_after = rt.link.cadence.stale_after
        messages = self.metrics.messages
        for ev in events:
            messages.labels(account, ev.kind).inc()
            if isinstance(ev, BadMessage):
                log.warning(
                    "account %s: bad message skipped (%s): %.200r", account, ev.reason, ev.sample
                )
            elif isinstance(ev, UnknownMessage):
                log.info("account %s: unknown message %r skipped", account, ev.key)
        started = time.perf_counter()
        self.executor.frame_started(account)
        result = rt.core.handle(events, now)
        if result.decision is not None:
            self.decisions.apply(result.decision, time.perf_counter() - started, defer=True)
        elif result.deferred:
            # Evaluate the burst once no frame came for BURST_QUIET seconds, if no balance
            # frame closed it by then (riskwatch/pipeline.py; docs/performance.md).
            # Not at once: the burst's frames trickle in, and a flush between them
            # evaluated half a pulse.
            loop = self._loop
            if loop is None:  # the first deferred frame (a lookup per frame cost 0.2 µs)
                loop = self._loop = asyncio.get_running_loop()
            self._deferred_at[account] = loop.time()
            if account not in self._flush_soon:
                self._flush_soon.add(account)
                loop.call_later(BURST_QUIET, self._flush_deferred, account)
        for reason in result.flags:
            self.metrics.impossible_frames.labels(account, reason).inc()
            log.warning(
                "account %s: frame with impossible figures not applied (%s)", account, reason
            )
        if self.mds is not None and len(rt.core.position_symbols) != rt.symbols_watched:
            # A symbol appeared in a pulse: ask the market-data gateway for its marks.
            rt.symbols_watched = len(rt.core.position_symbols)
            self.mds.watch(set(rt.core.position_symbols))
        # Commands planned from this frame are written on the same loop turn.
        return [*result.frames, *self.executor.on_events(account, events, now)]

    def _flush_deferred(self, account: str) -> None:
        """End of a burst with position frames left unevaluated (no balance came)."""
        self._flush_soon.discard(account)
        rt = self.accounts.get(account)
        if rt is None or not rt.core.deferred:
            return
        loop = asyncio.get_running_loop()
        wait = self._deferred_at.get(account, 0.0) + BURST_QUIET - loop.time()
        if wait > 0:  # position frames still coming: the burst has not ended
            self._flush_soon.add(account)
            loop.call_later(wait, self._flush_deferred, account)
            return
        now = self.clock.now()
        if self.on_flush is not None:
            self.on_flush(account, now)
        started = time.perf_counter()
        decision = rt.core.flush(now)
        if decision is not None:
            # The executor's commands are written by a task queued before the rest.
            self.decisions.apply(decision, time.perf_counter() - started, defer=True)

    def on_mds_events(self, events: Sequence[Event], now: float) -> None:
        """Fan mark prices out to the accounts holding the symbol."""
        marks = [ev for ev in events if isinstance(ev, MarkPrice)]
        for ev in events:
            if not isinstance(ev, MarkPrice):
                self.metrics.messages.labels("", ev.kind).inc()
        if not marks:
            return
        for name, rt in self.accounts.items():
            mine = [m for m in marks if m.symbol in rt.core.position_symbols]
            if not mine:
                continue
            self.metrics.messages.labels(name, "mark_price").inc(len(mine))
            started = time.perf_counter()
            result = rt.core.handle(mine, now)
            if result.decision is not None:
                self.decisions.apply(result.decision, time.perf_counter() - started)
            for reason in result.flags:
                self.metrics.impossible_frames.labels(name, reason).inc()
            if result.frames and rt.connection is not None:
                for frame in result.frames:
                    with contextlib.suppress(ConnectionError):
                        rt.connection.send_nowait(frame)

    def on_status(self, account: str, status: ConnectionStatus) -> None:
        """A trade connection's link status changed: count reconnects, report a link that
        went down (``on_disconnect``), tell the executor."""
        rt = self.accounts[account]
        rt.status = status
        if not status.connected:
            rt.link.cadence.connection_lost()
        if status.reconnects > rt.reconnects_seen:
            self.metrics.reconnects.labels(account).inc(status.reconnects - rt.reconnects_seen)
            rt.reconnects_seen = status.reconnects
        now = self.clock.now()
        if rt.connected:
            self._up.add(account)
        elif account in self._up:
            self._up.discard(account)
            if self.on_disconnect is not None:
                self.on_disconnect(account, now)
        self.executor.on_status(account, rt.connected, now)
