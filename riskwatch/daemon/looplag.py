"""How late the event loop runs, and a loud alert when it stays late.

Frames, rule evaluations, rule ticks and protective commands all run on the daemon's one
event loop. When the loop is starved (more accounts than a core handles, docs/performance.md
"Sharding"; a container throttled by its CPU quota; a noisy neighbour), every piece of
work waits behind the others: a breach is seen late and its command goes out late, while
frames are still received and handled. Nothing else shows it, so:

- :class:`LoopLagProbe` sleeps :data:`PERIOD` seconds at a time and measures how late it
  wakes. Every lateness is observed in ``riskwatch_event_loop_lag_seconds`` (a histogram);
- :class:`LagWatch` (pure) keeps the lateness of the last :data:`WINDOW` seconds. Once
  their 90th percentile reaches :data:`FIRE_LAG`, the episode starts: a critical log line,
  a reason on ``/readyz``, ``riskwatch_event_loop_lagging`` 1, and the built-in alert
  :data:`LOOP_LAGGING` notified (notifications need no database). It resolves once the
  percentile of a whole window is below :data:`RESOLVE_LAG`.

One late wake-up (a scrape piece, a garbage collection, a slow disk) is counted in the
histogram but is no episode: only lateness that lasts a whole window is, and so is a
loop held for longer than a window at once (the window then holds that wake-up alone).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Final, Literal

from riskwatch.metrics import Metrics
from riskwatch.notify.notice import AlertNotice, daemon_notice

__all__ = [
    "FIRE_LAG",
    "LOOP_LAGGING",
    "PERIOD",
    "RESOLVE_LAG",
    "WINDOW",
    "LagWatch",
    "LoopLagProbe",
]

log = logging.getLogger(__name__)

LOOP_LAGGING: Final = "EventLoopLagging"
"""Built-in alert: the event loop has run late for a whole window."""
PERIOD: Final = 0.1
"""Seconds the probe sleeps between two measures (ten wake-ups a second: negligible CPU)."""
WINDOW: Final = 10.0
"""Seconds of lateness the episode is judged on."""
FIRE_LAG: Final = 0.1
"""An episode starts when the window's 90th percentile of lateness reaches this (s)."""
RESOLVE_LAG: Final = 0.025
"""An episode ends when a whole window's 90th percentile is below this (s)."""

Change = Literal["firing", "resolved"]


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


class LagWatch:
    """The episodes of a late loop, from measured lateness (pure: takes ``now``).

    ``now`` is any monotonic clock in seconds (the probe gives the loop's). The verdict
    waits for a whole ``window`` of measures since the first one, so that the start-up's
    work is not judged on a few samples.
    """

    def __init__(
        self,
        *,
        window: float = WINDOW,
        fire_lag: float = FIRE_LAG,
        resolve_lag: float = RESOLVE_LAG,
    ) -> None:
        self.window = window
        self.fire_lag = fire_lag
        self.resolve_lag = resolve_lag
        self.lagging = False
        """True from the start of an episode to its end."""
        self._samples: deque[tuple[float, float]] = deque()  # (measured at, lateness)
        # A verdict waits for a whole window after this: the first measure, then each change.
        self._judged_from: float | None = None

    def observe(self, lag: float, now: float) -> Change | None:
        """Add one lateness measured at ``now``; return the episode's change, if any."""
        if self._judged_from is None:
            self._judged_from = now
        samples = self._samples
        samples.append((now, lag))
        while samples[0][0] < now - self.window:
            samples.popleft()
        if now - self._judged_from < self.window:
            return None
        p90 = self.p90()
        if not self.lagging and p90 >= self.fire_lag:
            self.lagging = True
            self._judged_from = now  # the end is judged on a window after the start
            return "firing"
        if self.lagging and p90 < self.resolve_lag:
            self.lagging = False
            self._judged_from = now
            return "resolved"
        return None

    def p90(self) -> float:
        """The 90th percentile of the window's lateness (s); 0 before any measure."""
        return _p90([lag for _, lag in self._samples]) if self._samples else 0.0

    def worst(self) -> float:
        """The largest lateness of the window (s); 0 before any measure."""
        return max((lag for _, lag in self._samples), default=0.0)


class LoopLagProbe:
    """Measures the loop's lateness until ``stopped`` is set (module docstring).

    ``notify`` queues an alert notice (``NotifyService.enqueue_alert``); ``now`` is the
    daemon's clock, for the notices' times only (lateness is measured on the loop's
    monotonic clock).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        notify: Callable[[AlertNotice], object],
        now: Callable[[], float],
        stopped: asyncio.Event,
        watch: LagWatch | None = None,
        period: float = PERIOD,
    ) -> None:
        self.metrics = metrics
        self._notify = notify
        self._now = now
        self._stopped = stopped
        self.watch = watch or LagWatch()
        self.period = period
        self._episode = 0

    async def run(self) -> None:
        """Sleep ``period`` at a time; measure, count and judge each wake-up."""
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            woke = loop.time()
            try:
                self.measured(max(0.0, woke - due), woke)
            except Exception:  # the probe goes on: a fault here must not end the watch
                log.exception("event loop lag probe failed; measuring on")
                self.metrics.task_errors.labels("loop_lag").inc()

    def measured(self, lag: float, at: float) -> None:
        """One wake-up ``lag`` seconds late, at loop time ``at``."""
        self.metrics.event_loop_lag_seconds.observe(lag)
        change = self.watch.observe(lag, at)
        if change is None:
            return
        watch = self.watch
        p90_ms, worst_ms, window = watch.p90() * 1e3, watch.worst() * 1e3, watch.window
        if change == "firing":
            self._episode += 1
            self.metrics.event_loop_lagging.set(1)
            log.critical(
                "EVENT LOOP LAGGING: wake-ups %.0f ms late (90th percentile of the last"
                " %.0f s, worst %.0f ms): frames, rules and protective commands run late",
                p90_ms,
                window,
                worst_ms,
            )
            summary = (
                f"riskwatch runs late: its event loop wakes {p90_ms:.0f} ms late (90th"
                f" percentile over {window:.0f} s, worst {worst_ms:.0f} ms)"
            )
        else:
            self.metrics.event_loop_lagging.set(0)
            log.warning("event loop on time again (%.1f ms late at the 90th percentile)", p90_ms)
            summary = f"riskwatch's event loop is on time again ({p90_ms:.1f} ms late, p90)"
        self._notify(
            daemon_notice(
                rule=LOOP_LAGGING,
                status=change,
                severity="critical",
                at=self._now(),
                trip_id=self._episode,
                summary=summary,
                description=(
                    "Every breach is seen late and every protective command leaves late"
                    " while this lasts. Give the process a core of its own (no CPU"
                    " throttling), or split the accounts into shards (riskwatch's"
                    " docs/performance.md, 'Sharding')."
                    if change == "firing"
                    else ""
                ),
            )
        )

    def status(self) -> dict[str, float | bool]:
        """For ``/api/state``: whether an episode lasts, and the window's lateness (s)."""
        watch = self.watch
        return {
            "lagging": watch.lagging,
            "lag_p90_seconds": round(watch.p90(), 6),
            "lag_worst_seconds": round(watch.worst(), 6),
            "window_seconds": watch.window,
        }

    def readiness_reasons(self) -> list[str]:
        """``/readyz`` reasons: unready while an episode lasts."""
        if not self.watch.lagging:
            return []
        return [
            f"event loop lagging: {self.watch.p90() * 1e3:.0f} ms late at the 90th"
            f" percentile over the last {self.watch.window:.0f} s"
        ]
