"""Pure rate limits of the HTTP surface: a token bucket and a failed-login throttle.

Both take ``now`` (seconds, any monotonic origin) and touch no clock and no I/O.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["LIMIT_WINDOW", "LoginThrottle", "TokenBucket"]

LIMIT_WINDOW: Final = 60.0
"""Seconds over which both limits count (their settings are per minute)."""

MAX_TRACKED: Final = 10_000
"""Client addresses the throttle remembers at most (the oldest are forgotten first)."""


class TokenBucket:
    """At most ``per_minute`` requests in a burst, refilled at ``per_minute / 60`` per second."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / LIMIT_WINDOW
        self._tokens = self.capacity
        self._at: float | None = None

    def take(self, now: float) -> float | None:
        """Take one token: None when allowed, else the seconds until one is available."""
        if self._at is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


class LoginThrottle:
    """Refuses a client address after ``per_minute`` failed logins within :data:`LIMIT_WINDOW`.

    While refused, even a right token is not checked (a guesser learns nothing); the
    refusal ends when the oldest counted failure is :data:`LIMIT_WINDOW` seconds old.
    """

    def __init__(self, per_minute: int) -> None:
        self.limit = per_minute
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - LIMIT_WINDOW:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def blocked(self, address: str, now: float) -> float | None:
        """None when ``address`` may try, else the seconds until it may."""
        times = self._recent(address, now)
        if times is None or len(times) < self.limit:
            return None
        return times[-self.limit] + LIMIT_WINDOW - now

    def failed(self, address: str, now: float) -> None:
        """Count one failed login of ``address``."""
        times = self._recent(address, now)
        if times is None:
            if len(self._failures) >= MAX_TRACKED:
                del self._failures[next(iter(self._failures))]
            times = self._failures[address] = deque(maxlen=self.limit)
        times.append(now)
