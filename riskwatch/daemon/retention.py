"""The retention purge: the notification log and ended silences do not grow without bound.

Every :data:`PURGE_INTERVAL` (and once at start) the daemon deletes, from the state
database:

- notification-log entries older than ``state.retention.notification_log`` — but never
  younger than the longest ``repeat_interval`` of the notification routes in force: the
  log is what tells a restarted daemon what it last sent to each group, and an entry
  purged too early would make it notify again;
- silences that ended (ran out or were expired) more than ``state.retention.silences``
  ago. Active and future silences are never touched.

Deleted rows are counted in ``riskwatch_retention_purged_total{kind}``. A purge the
database refuses is logged, counted in ``riskwatch_retention_purge_failures_total`` and
retried at the next pass: it never stops evaluation, actions or notifications.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from riskwatch.clock import Clock
from riskwatch.config import Config
from riskwatch.errors import StateStoreError
from riskwatch.metrics import Metrics
from riskwatch.store import Store
from riskwatch.tasks import wait_until_set

__all__ = ["PURGE_BATCH", "PURGE_INTERVAL", "Purged", "RetentionPurge", "notification_log_cutoff"]

log = logging.getLogger(__name__)

PURGE_INTERVAL: Final = 3600.0
"""Seconds between two purges."""

PURGE_BATCH: Final = 1000
"""Most notification-log entries deleted in one transaction."""


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge deleted: notification-log entries and silences."""

    notification_log: int
    silences: int


def notification_log_cutoff(config: Config, now: float) -> float:
    """Entries logged before this instant may go: ``now`` minus the longer of the
    configured retention and the longest ``repeat_interval`` in force."""
    notifications = config.notifications
    intervals = [notifications.repeat_interval, *(r.repeat_interval for r in notifications.routes)]
    keep = max(config.state.retention.notification_log.seconds, *(d.seconds for d in intervals))
    return now - keep


class RetentionPurge:
    """Purges the state database on a schedule; ``config`` gives the config in force
    (a reload may change routes and their ``repeat_interval``)."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        metrics: Metrics,
        clock: Clock,
        *,
        interval: float = PURGE_INTERVAL,
        batch: int = PURGE_BATCH,
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self.batch = batch

    def purge(self, now: float) -> Purged:
        """Delete what is past retention at ``now``; count it; return the counts.

        Raises :class:`~riskwatch.errors.StateStoreError` when the database refuses.
        """
        config = self.config()
        cutoff = notification_log_cutoff(config, now)
        log_rows = 0
        while True:
            # Short transactions: an action's audit write waits for one batch at most.
            deleted = self.store.purge_notifications(cutoff, limit=self.batch)
            log_rows += deleted
            if deleted < self.batch:
                break
            time.sleep(0.001)  # let a waiting writer take the database lock
        silences = self.store.purge_silences(now - config.state.retention.silences.seconds)
        self.metrics.retention_purged.labels("notification_log").inc(log_rows)
        self.metrics.retention_purged.labels("silences").inc(silences)
        if log_rows or silences:
            log.info(
                "retention purge: %d notification log entries, %d silences deleted",
                log_rows,
                silences,
            )
        return Purged(log_rows, silences)

    async def run(self, stopped: asyncio.Event) -> None:
        """Purge now, then every ``interval`` seconds until ``stopped`` is set."""
        while not stopped.is_set():
            try:
                await asyncio.to_thread(self.purge, self.clock.now())
            except StateStoreError:
                self.metrics.retention_purge_failures.inc()
                log.exception("retention purge failed; retrying in %.0f s", self.interval)
            await wait_until_set(stopped, self.interval)
