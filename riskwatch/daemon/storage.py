"""The state database's health, as the daemon sees it: loud on every fault.

A failed write of the state database (disk full, I/O error, another process holding
its write lock) never stops protection (docs/reliability.md, "Storage faults"), and it
is never silent either. :class:`StateHealth`, on the event loop, turns each failure
into:

- ``riskwatch_state_errors_total{op}`` (+1 per failed write or batch) and
  ``riskwatch_state_failing`` 1;
- a reason on ``/readyz`` until writes work again;
- a critical notification, the built-in alert :data:`STATE_FAILING` (firing once per
  episode, resolved when writes work again). Notifications need no database.

It also watches the free space of the state directory: ``riskwatch_state_disk_free_bytes``
and the alert :data:`DISK_LOW` below ``state.warn_free_mb``. At start,
:func:`check_free_space` refuses a directory with less than ``state.min_free_mb``.
And it reports a ``run --record`` file that could not be written
(:meth:`StateHealth.recording_stopped`: ``riskwatch_recording`` 0,
``riskwatch_recording_errors_total``, the alert :data:`RECORDING_STOPPED`).

Everything here runs on the event loop; the writer thread's callbacks reach it through
``loop.call_soon_threadsafe`` (:meth:`StateHealth.threadsafe`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Final

from riskwatch.errors import StateStoreError
from riskwatch.metrics import Metrics
from riskwatch.notify.notice import AlertNotice, daemon_notice

__all__ = [
    "DISK_LOW",
    "RECORDING_STOPPED",
    "STATE_FAILING",
    "StateHealth",
    "check_free_space",
    "free_bytes",
]

log = logging.getLogger(__name__)

STATE_FAILING: Final = "StateStoreFailing"
"""Built-in alert: writes of the state database fail."""
DISK_LOW: Final = "StateDiskLow"
"""Built-in alert: the state directory's filesystem is nearly full."""
RECORDING_STOPPED: Final = "RecordingStopped"
"""Built-in alert: ``run --record`` stopped on a write error (the connections go on)."""
MB: Final = 1024 * 1024

Notify = Callable[[AlertNotice], object]


def free_bytes(path: Path) -> int:
    """Free bytes (for an unprivileged process) of the filesystem holding ``path``."""
    return shutil.disk_usage(path).free


def check_free_space(state_path: Path, min_free_mb: int) -> int:
    """Refuse to start on a state directory with less than ``min_free_mb`` MiB free.

    Returns the free bytes; raises :class:`StateStoreError` with the figures otherwise.
    """
    folder = state_path.parent
    try:
        free = free_bytes(folder)
    except OSError as exc:
        msg = f"cannot read the free space of {folder}: {exc.strerror}"
        raise StateStoreError(msg) from exc
    if free < min_free_mb * MB:
        msg = (
            f"only {free / MB:.1f} MiB free in {folder}, below state.min_free_mb"
            f" ({min_free_mb} MiB): free some space (or lower the floor) and start again"
        )
        raise StateStoreError(msg)
    return free


class StateHealth:
    """Counts, readiness and escalation of state-database faults (module docstring).

    ``notify`` queues an alert notice (``NotifyService.enqueue_alert``); ``probe``
    queues a real write, so that a failure seen only by the intent commit is followed
    by a write that tells when the database works again; ``now`` is the clock.
    ``watch_disk`` False (a daemon built without a state database) skips the free-space
    checks.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        notify: Notify,
        now: Callable[[], float],
        state_path: Path,
        warn_free_mb: int,
        probe: Callable[[], None] | None = None,
        watch_disk: bool = True,
    ) -> None:
        self.metrics = metrics
        self._notify = notify
        self._now = now
        self.state_path = state_path
        self.warn_free_bytes = warn_free_mb * MB
        self.probe = probe
        self.watch_disk = watch_disk
        self.failing_since: float | None = None
        self.last_error = ""
        self.disk_low = False
        self.disk_free: int | None = None
        self._episode = 0

    # -- write faults ----------------------------------------------------------------

    def error(self, op: str, message: str) -> None:
        """A write of kind ``op`` failed: count it; the first of an episode escalates."""
        self.metrics.state_errors.labels(op).inc()
        self.last_error = f"{op}: {message}"
        if self.failing_since is not None:
            return
        now = self._now()
        self.failing_since = now
        self._episode += 1
        self.metrics.state_failing.set(1)
        log.critical(
            "STATE DATABASE WRITES FAILING (%s): %s; protection goes on, records are kept"
            " in memory until it works again",
            op,
            message,
        )
        self._notify(
            daemon_notice(
                rule=STATE_FAILING,
                status="firing",
                severity="critical",
                at=now,
                trip_id=self._episode,
                summary=f"state database {self.state_path} cannot be written ({op}): {message}",
                description=(
                    "Protective actions go on (docs/reliability.md, 'Storage faults');"
                    " the audit log and alert states are kept in memory until the"
                    " database can be written again. Check the disk and the file."
                ),
            )
        )
        if self.probe is not None:
            self.probe()

    def recovered(self) -> None:
        """A batch committed: the database works again (resolves the alert)."""
        if self.failing_since is None:
            return
        now = self._now()
        log.warning(
            "state database writes work again after %.1f s", max(0.0, now - self.failing_since)
        )
        self.failing_since = None
        self.metrics.state_failing.set(0)
        self._notify(
            daemon_notice(
                rule=STATE_FAILING,
                status="resolved",
                severity="critical",
                at=now,
                trip_id=self._episode,
                summary=f"state database {self.state_path} can be written again",
            )
        )

    @property
    def failing(self) -> bool:
        """True from a failed write until a later write commits."""
        return self.failing_since is not None

    def threadsafe(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[Callable[[str, str], None], Callable[[], None]]:
        """``(on_error, on_recovered)`` for :class:`riskwatch.store.writer.StateWriter`,
        which calls them on its thread: they run :meth:`error`/:meth:`recovered` on ``loop``."""

        def on_error(op: str, message: str) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.error, op, message)

        def on_recovered() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.recovered)

        return on_error, on_recovered

    # -- free space ------------------------------------------------------------------

    def check_disk(self) -> int | None:
        """Read the free space: gauge, and the :data:`DISK_LOW` alert across the threshold."""
        if not self.watch_disk:
            return None
        try:
            free = free_bytes(self.state_path.parent)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.state_path.parent, exc)
            return None
        self.disk_free = free
        self.metrics.state_disk_free.set(free)
        low = free < self.warn_free_bytes
        if low != self.disk_low:
            self.disk_low = low
            now = self._now()
            folder = self.state_path.parent
            if low:
                log.critical(
                    "only %.1f MiB free in %s (state.warn_free_mb %d MiB)",
                    free / MB,
                    folder,
                    self.warn_free_bytes // MB,
                )
            self._notify(
                daemon_notice(
                    rule=DISK_LOW,
                    status="firing" if low else "resolved",
                    severity="critical",
                    at=now,
                    summary=(
                        f"only {free / MB:.1f} MiB free in {folder} (threshold"
                        f" {self.warn_free_bytes // MB} MiB): the state database will"
                        " soon fail to write"
                        if low
                        else f"{free / MB:.1f} MiB free again in {folder}"
                    ),
                )
            )
        return free

    # -- recording -------------------------------------------------------------------

    def recording_stopped(self, path: Path, message: str) -> None:
        """``run --record`` stopped on a write error: metric and a notification."""
        self.metrics.recording.set(0)
        self.metrics.recording_errors.inc()
        self._notify(
            daemon_notice(
                rule=RECORDING_STOPPED,
                status="firing",
                severity="warning",
                at=self._now(),
                summary=f"recording to {path} stopped: {message}",
                description=(
                    "The exchange connections and protection go on; frames from now on"
                    " are not recorded. Free the disk and restart to record again."
                ),
            )
        )

    # -- readiness -------------------------------------------------------------------

    def readiness_reasons(self) -> list[str]:
        """``/readyz`` reasons: a failing state database makes the daemon unready."""
        if self.failing_since is None:
            return []
        return [f"state database cannot be written: {self.last_error}"]
