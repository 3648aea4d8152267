"""Clocks: the only place riskwatch reads the time.

Pure code takes ``now`` (Unix seconds, float) as an argument. Drivers own a clock:
``run`` and ``demo`` use :class:`SystemClock`; ``replay`` and ``test`` use
:class:`ManualClock`, which only moves when told to.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Something that tells the time in Unix seconds."""

    def now(self) -> float:
        """Return the current time, Unix seconds."""
        ...


class SystemClock:
    """The wall clock (``time.time()``)."""

    def now(self) -> float:
        """Return the wall-clock time, Unix seconds."""
        return time.time()


class ManualClock:
    """A clock that moves only through :meth:`set` and :meth:`advance`.

    It never goes backwards: ``set`` to an earlier time raises ``ValueError``.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the clock's current time."""
        return self._now

    def set(self, t: float) -> None:
        """Move the clock to ``t``; ``t`` must not be earlier than now."""
        if t < self._now:
            msg = f"clock cannot go backwards from {self._now} to {t}"
            raise ValueError(msg)
        self._now = t

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must be >= 0)."""
        self.set(self._now + seconds)
