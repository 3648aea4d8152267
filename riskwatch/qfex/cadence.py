"""Each account's measured pulse cadence, and the staleness threshold it implies.

docs/protocol.md §4.2: the docs give the position/balance pulse as 1 s in one place
and 10 s in another, so riskwatch measures it. One ``balance_response`` arrives per
pulse; the cadence is the median of the last intervals between them (a median, so
that a stall or a reconnect gap does not move it), kept until the median moves by more
than :data:`TOLERANCE`. ``stale_after`` is ``pulses`` × that cadence, unless the
configuration pins it. Pure: callers pass ``now``.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Final

__all__ = ["PulseCadence"]

CADENCE_SAMPLES: Final = 9
"""Intervals kept for the median."""

TOLERANCE: Final = 0.01
"""Relative move of the median that changes the cadence. Receive times carry a few
milliseconds of network and scheduling noise that say nothing of the exchange's
cadence; followed, they would move ``riskwatch_pulse_interval_seconds`` and
``riskwatch_stale_after_seconds`` at every pulse, and every scrape would render every
account's link lines again (metrics.OwnedGauges keeps an account's lines while its
values stand; docs/performance.md). A threshold of three 1 s pulses is off by 30 ms
at most."""

MIN_INTERVAL: Final = 0.05
"""Intervals shorter than this are two frames of one burst, not two pulses."""


class PulseCadence:
    """Measures pulse intervals; :attr:`stale_after` follows them.

    ``initial`` is the threshold until a cadence is measured; ``pinned`` (seconds),
    when given, is always the threshold (the measurement still runs and is exported).
    """

    def __init__(self, *, pulses: float, initial: float, pinned: float | None = None) -> None:
        self.pulses = pulses
        self._initial = initial
        self._pinned = pinned
        self._intervals: deque[float] = deque(maxlen=CADENCE_SAMPLES)
        self._last: float | None = None
        self._median: float | None = None  # of _intervals, kept at each pulse (read per frame)

    def observe(self, now: float) -> None:
        """A balance pulse arrived at ``now``."""
        if self._last is not None:
            gap = now - self._last
            if gap < MIN_INTERVAL:
                return
            self._intervals.append(gap)
            median = statistics.median(self._intervals)
            kept = self._median
            if kept is None or abs(median - kept) > TOLERANCE * kept:
                self._median = median
        self._last = now

    def connection_lost(self) -> None:
        """The next pulse starts a fresh interval (the gap across a reconnect is no pulse)."""
        self._last = None

    @property
    def interval(self) -> float | None:
        """The measured cadence in seconds (within :data:`TOLERANCE` of the median of
        the last intervals), or None before two pulses."""
        return self._median

    @property
    def stale_after(self) -> float:
        """Seconds without a pulse after which the account's data is stale."""
        if self._pinned is not None:
            return self._pinned
        interval = self.interval
        return self._initial if interval is None else self.pulses * interval
