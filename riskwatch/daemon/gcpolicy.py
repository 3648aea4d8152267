"""The cyclic garbage collector's policy for ``riskwatch run`` (docs/performance.md).

Every pulse rebuilds an account's position state (a pulse, a position state and a mark
per symbol, all tracked by the cyclic collector): the whole live state is young, and
lives about one pulse interval. With the interpreter's settings the collector scanned
it again and again as it passed through the generations: measured at 1000 accounts ×
20 symbols (``bench/bench_scale.py`` prints the collections of its window), about 15 %
of a core, and event-loop pauses of up to 300 ms (a full collection scans the whole
state: about 250 ms). A young collection that finds the live state costs about 1 µs
per object: 80 000 objects, 90 ms.

Reference counting frees all of that state; the cyclic collector is needed only for the
few reference cycles the libraries make (exception tracebacks, an HTTP request's
objects: about six objects a second at 1000 accounts, measured). So:

- every :data:`FREEZE_INTERVAL` the objects that exist are frozen (:func:`gc.freeze`,
  O(1)): out of the collector's reach, still freed by reference counting when
  released. Freezing also restarts the young generation's count;
- the young generation is collected only after :data:`YOUNG_THRESHOLD` net new tracked
  objects (interpreter: 700), which a freeze interval never reaches in normal work:
  it is the guard against a burst of cycles (a reconnect storm's tracebacks);
- every :data:`FULL_INTERVAL` everything is unfrozen and collected once in full, which
  reclaims the cycles frozen in the meantime, then frozen again: one pause of the
  size above, once an hour, logged with its duration (about 25 ms for a shard of 100
  accounts).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

from riskwatch.tasks import cancel_and_wait

__all__ = ["FREEZE_INTERVAL", "FULL_INTERVAL", "YOUNG_THRESHOLD", "GcPolicy"]

log = logging.getLogger(__name__)

YOUNG_THRESHOLD: Final = 100_000
"""Net new tracked objects that start a young collection (interpreter: 700)."""

FREEZE_INTERVAL: Final = 1.0
"""Seconds between two freezes of the surviving objects."""

FULL_INTERVAL: Final = 3600.0
"""Seconds between two full collections (which reclaim the reference cycles frozen)."""


class GcPolicy:
    """Applies the module docstring's policy from :meth:`start` until :meth:`stop`.

    Process-wide (the collector is the interpreter's): one per process. :meth:`stop`
    restores the thresholds found at :meth:`start` and unfreezes everything.
    """

    def __init__(
        self, freeze_interval: float = FREEZE_INTERVAL, full_interval: float = FULL_INTERVAL
    ) -> None:
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self.full_collections = 0
        self._task: asyncio.Task[None] | None = None
        self._thresholds = gc.get_threshold()

    def start(self) -> None:
        """Set the thresholds, freeze what exists now (start-up objects), and keep on."""
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])
        gc.freeze()
        self._task = asyncio.create_task(self._run(), name="gc-policy")

    async def stop(self) -> None:
        """End the policy: the interpreter's thresholds again, nothing frozen."""
        await cancel_and_wait(self._task)
        self._task = None
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def full_collection(self) -> int:
        """Unfreeze, collect everything, freeze again; return the objects found unreachable."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_collections += 1
        log.info(
            "full garbage collection: %d unreachable objects reclaimed in %.0f ms",
            found,
            (time.perf_counter() - started) * 1e3,
        )
        return found

    async def _run(self) -> None:
        since_full = 0.0
        while True:
            await asyncio.sleep(self.freeze_interval)
            since_full += self.freeze_interval
            try:
                if since_full >= self.full_interval:
                    since_full = 0.0
                    self.full_collection()
                else:
                    gc.freeze()
            except Exception:  # the collector itself failing: keep the daemon, say so
                log.exception("garbage collector policy step failed; going on")
