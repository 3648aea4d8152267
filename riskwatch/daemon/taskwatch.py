"""The daemon's long-running tasks, watched: one that ends before the daemon stops is a
fault that stops part of the watch, and it is told loudly.

Each task of the daemon (the rule ticks, the action timers, the connections, the lease,
the JWT and config watches…) loops until :meth:`riskwatch.daemon.app.Daemon.stop`; the
errors it expects are caught inside its loop and counted in
``riskwatch_task_errors_total``. One that ends anyway (an exception that escaped its
loop, or a bug that returned) stops what it did, silently until now. :class:`TaskWatch`
is told of every such end, at once:

- ``riskwatch_task_running{task}`` drops to 0 (1 while every task of that kind runs);
- ``/readyz`` answers 503 with ``task rule-ticks ended: RuntimeError`` until a restart;
- the log says so at CRITICAL, with the traceback;
- the built-in alert :data:`TASK_ENDED` (critical, daemon-wide: ``account`` empty) is
  notified once per task, through the notification path, which needs no database (when
  the task that ended is the notification worker itself, the gauge, ``/readyz``, the log
  and the Prometheus rule ``RiskwatchTaskEnded`` remain).

The exception's text is left out of the notification and of ``/readyz`` (it may quote a
URL or a token): its type says which, the log has the rest (redacted, riskwatch/logredact.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from riskwatch.metrics import TASKS, Metrics
from riskwatch.notify.notice import AlertNotice, daemon_notice

__all__ = ["TASK_ENDED", "TaskWatch"]

log = logging.getLogger(__name__)

TASK_ENDED: Final = "DaemonTaskEnded"
"""The built-in alert notified when a daemon task ends before the daemon stops."""


class TaskWatch:
    """Watches the daemon's tasks; see the module docstring.

    ``notify`` queues an alert notice (``NotifyService.enqueue_alert``); ``now`` is the
    clock. Call :meth:`stopping` before the daemon ends its tasks: from then on an end
    is the expected one.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        notify: Callable[[AlertNotice], object],
        now: Callable[[], float],
    ) -> None:
        self._running = metrics.task_running
        self._notify = notify
        self._now = now
        self._stopping = False
        self.ended: dict[str, str] = {}
        """Task name → why it ended (the exception's type, ``returned`` or ``cancelled``)."""

    def watch(self, task: asyncio.Task[Any], kind: str) -> asyncio.Task[Any]:
        """Watch ``task`` (of label ``kind``, one of :data:`riskwatch.metrics.TASKS`);
        returns it."""
        if kind not in TASKS:
            msg = f"unknown task kind {kind!r}"
            raise ValueError(msg)
        task.add_done_callback(lambda t: self._ended(t, kind))
        return task

    def stopping(self) -> None:
        """The daemon is stopping: tasks that end from now on were asked to."""
        self._stopping = True

    def _ended(self, task: asyncio.Task[Any], kind: str) -> None:
        if self._stopping:
            return
        name = task.get_name()
        exc: BaseException | None = None
        if task.cancelled():
            why = "cancelled"
        else:
            exc = task.exception()
            why = type(exc).__name__ if exc is not None else "returned"
        self.ended[name] = why
        self._running.labels(kind).set(0)
        log.critical(
            "DAEMON TASK %s ENDED (%s): what it does has stopped until riskwatch restarts",
            name,
            why,
            exc_info=exc,
        )
        self._notify(
            daemon_notice(
                rule=TASK_ENDED,
                status="firing",
                severity="critical",
                at=self._now(),
                summary=f"riskwatch task {name} ended ({why}); restart riskwatch",
                trip_id=len(self.ended),
                description=(
                    "A task of the daemon ended before the daemon stopped: what it does"
                    " (rule ticks, action timers, an exchange connection…) has stopped."
                    " /readyz is 503 until a restart; the log holds the traceback."
                ),
                labels={"task": name},
            )
        )

    def readiness_reasons(self) -> list[str]:
        """``/readyz`` reasons: one per task that ended before the daemon stopped."""
        return [f"task {name} ended: {why}" for name, why in self.ended.items()]
