"""The notification service: the daemon's one entry point to notifications.

The daemon builds a :class:`NotifyService`, ``await start()``s it, and feeds it with
:meth:`NotifyService.enqueue_decision` (every rule-engine decision) and
:meth:`NotifyService.enqueue_action` (every action outcome). Both are ``put_nowait`` on
a bounded queue: O(1), never awaiting, never blocking evaluation or actions (docs/design.md
item 10). A worker task drains the queue into the pure :class:`~riskwatch.notify.dispatch.
Dispatcher` and hands what it decides to the :class:`~riskwatch.notify.deliver.Deliverer`
(one lane per URL). Outcomes are counted in ``riskwatch_notifications_total{route,
result}`` and written to the store's notification log off the event loop.

At start the service restores, from the store, what was last sent to each group (so a
restart does not re-notify) and the silences. Silences are added and expired through
:meth:`add_silence` / :meth:`expire_silence` (the HTTP API and the CLI call them) and
take effect at the next flush.

``/api/alerts`` should show whether an alert is muted: :meth:`mute_of` answers
``{"muted": "silenced", "silenced_by": id}`` / ``{"muted": "inhibited"}`` / ``{}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets as _secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Final

from riskwatch.alertmanager_target import is_alertmanager
from riskwatch.clock import Clock, SystemClock
from riskwatch.config import NotificationsConfig
from riskwatch.metrics import Metrics
from riskwatch.notify.alertmanager import Posting
from riskwatch.notify.amfanout import AlertmanagerFanout, split_targets
from riskwatch.notify.dedup import LastSent
from riskwatch.notify.deliver import Deliverer, DeliveryPolicy, Outcome, guard_apprise_logs
from riskwatch.notify.dispatch import Dispatcher, Muted, Outgoing
from riskwatch.notify.inhibit import DEFAULT_POLICY, InhibitPolicy
from riskwatch.notify.notice import ActionNotice, AlertNotice, from_alert, from_transition
from riskwatch.notify.routes import build_routes, group_key
from riskwatch.notify.silences import SilenceRequest
from riskwatch.records import Silence, url_id
from riskwatch.rules.engine import Alert, Decision
from riskwatch.store import Store
from riskwatch.store.writer import StateWriter
from riskwatch.tasks import cancel_and_wait

__all__ = ["NotifyService", "restore_last_sent"]

log = logging.getLogger(__name__)

_FP: Final = "fp="
RESTORE_ROWS: Final = 5000
"""How many notification-log rows are read at start to restore dedup state."""
BATCH: Final = 500
"""Most queued items taken per dispatch step (one step holds the loop ~ms at most)."""


def restore_last_sent(rows: Iterable[Any]) -> dict[tuple[str, str], LastSent]:
    """Dedup state from notification-log rows, newest first (``Store.notifications``).

    Only successful group messages (``firing``/``resolved`` with a fingerprint) count.
    """
    out: dict[tuple[str, str], LastSent] = {}
    for row in rows:
        if row.result != "sent" or row.status not in ("firing", "resolved"):
            continue
        detail = row.detail or ""
        if not detail.startswith(_FP):
            continue
        out.setdefault((row.route, row.alert_key), LastSent(row.at, row.status, detail[3:]))
    return out


class NotifyService:
    """Queue, pure dispatcher, delivery lanes, metrics and the notification log.

    ``tick`` is how often (seconds) groups are re-examined for ``repeat_interval`` and
    silence changes; for ``group_interval`` see :class:`~riskwatch.notify.dispatch.Dispatcher`.
    ``store`` and ``metrics`` are optional (tests, ``notify-test``). With ``writer``
    the notification log is written through it (the daemon's one writer thread).
    """

    def __init__(
        self,
        config: NotificationsConfig,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        metrics: Metrics | None = None,
        external_url: str | None = None,
        inhibit: InhibitPolicy = DEFAULT_POLICY,
        delivery: DeliveryPolicy | None = None,
        queue_size: int = 10_000,
        tick: float = 1.0,
        group_interval: float = 5.0,
        secrets: Iterable[str] = (),
        writer: StateWriter | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.routes = build_routes(config)
        # alertmanager:// targets get every alert as it changes; Alertmanager groups,
        # silences and deduplicates them (amfanout.py). The dispatcher serves the rest.
        self.alertmanagers = AlertmanagerFanout(
            self.routes,
            clock=self.clock,
            external_url=external_url,
            on_result=self._on_am_result,
        )
        self.dispatcher = Dispatcher(
            split_targets(self.routes),
            policy=inhibit,
            external_url=external_url,
            group_interval=group_interval,
        )
        self.tick = tick
        route_secrets = [u.reveal() for r in self.routes for u in r.targets]
        self.deliverer = Deliverer(
            policy=delivery,
            apprise_config=config.apprise_config,
            on_outcome=self._on_outcome,
            on_retry=self._on_retry,
            secrets=[*secrets, *route_secrets],
        )
        self._secrets = list(secrets)
        self._guard = guard_apprise_logs([*secrets, *route_secrets])
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.outcomes: list[Outcome] = []
        self._keep_outcomes = 1000
        self._memory: dict[str, Silence] = {}
        self.gate: Callable[[], bool] | None = None

    def _may_notify(self) -> bool:
        """Whether this process speaks through its own channels: False on a follower
        replica (riskwatch/ha/). Alertmanager targets are posted by every replica:
        Alertmanager deduplicates them, so a failover loses nothing there."""
        return self.gate is None or self.gate()

    # -- input (called on the evaluation path: O(1), never awaits) ------------------

    def _put(self, kind: str, item: Any) -> bool:
        try:
            self._queue.put_nowait((kind, item))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.notifications.labels("queue", "failed").inc()
            return False
        return True

    def enqueue_decision(self, decision: Decision) -> bool:
        """Queue a rule-engine decision (its transitions and its current alerts).

        Returns False when the queue is full (the decision is dropped and counted as a
        failed notification on route ``queue``).
        """
        if not decision.transitions and not decision.alerts:
            return True
        return self._put("decision", decision)

    def on_decision(self, decision: Decision) -> None:
        """:meth:`enqueue_decision` as a daemon decision listener."""
        self.enqueue_decision(decision)

    def enqueue_alert(self, notice: AlertNotice) -> bool:
        """Queue one alert notice (drivers without a :class:`Decision`, tests)."""
        return self._put("alert", notice)

    def enqueue_action(self, notice: ActionNotice) -> bool:
        """Queue one action outcome (dry run, confirmed, FAILED escalation, breaker)."""
        return self._put("action", notice)

    def enqueue_sync(self, account: str, alerts: tuple[Alert, ...], now: float) -> bool:
        """Queue ``account``'s current alerts even when there are none, so that alerts
        of rules a reload removed resolve (and new ones are known)."""
        return self._put("decision", Decision(account, now, "tick", stale=False, alerts=alerts))

    # -- reload -----------------------------------------------------------------------

    def set_routes(self, config: NotificationsConfig) -> None:
        """Switch to reloaded routes; what was sent to each kept group is kept.

        Routes are named by position: a group whose route still exists keeps its dedup
        state under the new route (members that no longer match it leave it); groups of
        routes that are gone are dropped. The firing alerts are then re-offered, so they
        join the groups of the new routes (a new route notifies them once).
        ``apprise_config`` is read at start only.
        """
        routes = build_routes(config)
        by_name = {r.name: r for r in routes}
        d = self.dispatcher
        for gk, g in list(d.groups.items()):
            new = by_name.get(g.route.name)
            if new is None:
                del d.groups[gk]
                continue
            g.route = split_targets([new])[0]
            for key, n in list(g.members.items()):
                labels = n.all_labels
                if not new.matches(labels) or group_key(new, labels) != g.key:
                    del g.members[key]
            g.dirty = True
        d.routes = split_targets(routes)
        self.routes = routes
        for gone in self.alertmanagers.set_routes(routes):
            self._spawn(gone.close())
        self.config = config
        route_secrets = [u.reveal() for r in routes for u in r.targets]
        self._guard = guard_apprise_logs([*self._secrets, *route_secrets])
        now = self.clock.now()
        for n in list(d.alerts.values()):
            d.alert(n, now)

    # -- views ------------------------------------------------------------------------

    def mute_of(self, labels: Mapping[str, str], now: float | None = None) -> dict[str, str]:
        """For ``/api/alerts``: ``{"muted": "silenced", "silenced_by": id}``,
        ``{"muted": "inhibited"}`` or ``{}``, for an alert's full label set
        (:func:`riskwatch.notify.notice.alert_labels`)."""
        mute = self.dispatcher.mute_of(labels, self.clock.now() if now is None else now)
        if mute is None:
            return {}
        if mute[0] == "silenced":
            return {"muted": "silenced", "silenced_by": mute[1]}
        return {"muted": "inhibited"}

    # -- silences ---------------------------------------------------------------------

    async def _reload_silences(self) -> None:
        self.dispatcher.set_silences(await self.list_silences())

    async def list_silences(self) -> list[Silence]:
        """Every kept silence (active, future, expired), by start time."""
        if self.store is None:
            return sorted(self._memory.values(), key=lambda s: (s.starts_at, s.id))
        return await asyncio.to_thread(self.store.silences)

    async def add_silence(self, req: SilenceRequest) -> Silence:
        """Store a new silence (a random id) and apply it from the next flush."""
        now, sid = self.clock.now(), _secrets.token_hex(8)
        matchers = [m.to_dict() for m in req.matchers]
        if self.store is None:
            silence = Silence(
                sid,
                tuple(matchers),
                req.starts_at,
                req.ends_at,
                req.created_by,
                req.comment,
                now,
                None,
            )
            self._memory[sid] = silence
        else:
            store = self.store
            silence = await asyncio.to_thread(
                lambda: store.add_silence(
                    id=sid,
                    matchers=matchers,
                    starts_at=req.starts_at,
                    ends_at=req.ends_at,
                    created_by=req.created_by,
                    comment=req.comment,
                    now=now,
                )
            )
        await self._reload_silences()
        log.info("silence %s added by %s until %.0f", silence.id, req.created_by, req.ends_at)
        return silence

    async def expire_silence(self, silence_id: str) -> Silence | None:
        """End a silence now (kept for history); None if unknown."""
        now = self.clock.now()
        if self.store is None:
            found = self._memory.get(silence_id)
            silence = found
            if found is not None and found.ends_at > now:
                silence = dataclasses.replace(found, ends_at=now, expired_at=now)
                self._memory[silence_id] = silence
        else:
            silence = await asyncio.to_thread(self.store.expire_silence, silence_id, now)
        await self._reload_silences()
        if silence is not None:
            log.info("silence %s expired", silence_id)
        return silence

    # -- worker -----------------------------------------------------------------------

    async def start(self) -> None:
        """Restore dedup state and silences from the store, then start the worker."""
        if self._task is not None:
            return
        if self.store is not None:
            rows = await asyncio.to_thread(self.store.notifications, RESTORE_ROWS)
            self.dispatcher.restore(restore_last_sent(rows))
        await self._reload_silences()
        self._task = asyncio.create_task(self._run(), name="notify")
        self.alertmanagers.start()

    async def stop(self, drain: float = 1.0) -> None:
        """Flush everything queued, give the lanes ``drain`` seconds, then stop everything."""
        if self._task is None:
            return
        await cancel_and_wait(self._task)
        self._task = None
        self._step()
        while not self._queue.empty():
            self._step()
        await self.deliverer.drain(drain)
        await self.deliverer.close()
        await self.alertmanagers.close(drain)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = self.clock.now()
            due = self.dispatcher.next_due(now) if self._may_notify() else None
            wait = self.tick if due is None else max(0.0, min(self.tick, due - now))
            item: tuple[str, Any] | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    item = await self._queue.get()
            try:
                if item is not None:
                    self._take(item)
                self._step()
            except Exception:  # one bad item or step must not end notifications
                log.exception("notification dispatch failed; continuing")
                if self.metrics is not None:
                    self.metrics.task_errors.labels("notifications").inc()
            await asyncio.sleep(0)  # let evaluation run between batches

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The worker task while the service runs (the daemon watches it: daemon/taskwatch.py)."""
        return self._task

    def _take(self, item: tuple[str, Any]) -> None:
        kind, value = item
        now = self.clock.now()
        if kind == "decision":
            d: Decision = value
            for t in d.transitions:
                n = from_transition(t)
                if n is not None:
                    self.dispatcher.alert(n, now)
                    self.alertmanagers.alert(n)
            firing = [n for a in d.alerts if (n := from_alert(a, now)) is not None]
            self.dispatcher.sync(d.account, firing, now)
            self.alertmanagers.sync(d.account, firing, now)
        elif kind == "alert":
            self.dispatcher.alert(value, now)
            self.alertmanagers.alert(value)
        elif kind == "action":
            self.dispatcher.action(value)
            self.alertmanagers.action(value)

    def _step(self) -> None:
        """Take up to ``BATCH`` queued items, flush the dispatcher, hand messages to the lanes.

        The batch bound keeps one step short, so a burst never holds the event loop long.
        """
        for _ in range(BATCH):
            if self._queue.empty():
                break
            self._take(self._queue.get_nowait())
        if not self._may_notify():
            # A follower keeps the alerts but decides nothing: what is due when it
            # becomes the leader goes out then (a page the old leader had not sent yet is
            # not lost; one it had sent may be repeated once, docs/high-availability.md).
            return
        outgoing, muted = self.dispatcher.flush(self.clock.now())
        for m in muted:
            self._on_muted(m)
        for out in outgoing:
            self.deliverer.submit(out)

    def _on_muted(self, m: Muted) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(m.route, m.result).inc()
        log.info(
            "alert %s not notified on route %s: %s %s", "/".join(m.key), m.route, m.result, m.by
        )
        self._log_row(m.route, "", ",".join(m.key), "firing", m.result, m.by or None)

    def _on_am_result(
        self, route: str, display: str, posting: Posting, result: str, detail: str | None
    ) -> None:
        """Count and log one post to an Alertmanager (resends of firing alerts: metric only)."""
        if self.metrics is not None:
            self.metrics.notifications.labels(route, result).inc()
        uid = url_id(display)
        if result == "failed":
            self._log_row(route, uid, "alertmanager", "firing", "failed", detail)
            return
        for doc, kind in zip(posting.body, posting.kinds, strict=True):
            if kind == "resend":
                continue
            labels = doc["labels"]
            key = ",".join(f"{k}={labels.get(k, '')}" for k in ("rule", "account", "symbol"))
            self._log_row(route, uid, key, kind, "sent", "alertmanager")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _on_retry(self, route: str) -> None:
        """A delivery attempt failed and is retried: counted (``result="retried"``)."""
        if self.metrics is not None:
            self.metrics.notifications.labels(route, "retried").inc()

    def _on_outcome(self, o: Outcome) -> None:
        self.outcomes.append(o)
        del self.outcomes[: -self._keep_outcomes]
        if self.metrics is not None:
            self.metrics.notifications.labels(o.route, o.result).inc()
        detail = o.detail
        if o.result == "sent" and o.fingerprint and o.status in ("firing", "resolved"):
            detail = _FP + o.fingerprint
        self._log_row(o.route, o.url_id, o.key, o.status, o.result, detail)

    def _log_row(
        self, route: str, uid: str, key: str, status: str, result: str, detail: str | None
    ) -> None:
        now = self.clock.now()
        if self.writer is not None:
            self.writer.record_notification(
                route=route,
                url_id=uid or "-",
                alert_key=key,
                status=status,
                result=result,
                detail=detail,
                now=now,
            )
            return
        if self.store is None:
            return
        store = self.store

        def write() -> None:
            store.record_notification(
                route=route,
                url_id=uid or "-",
                alert_key=key,
                status=status,
                result=result,
                detail=detail,
                now=now,
            )

        async def run() -> None:
            try:
                await asyncio.to_thread(write)
            except Exception:
                log.exception("could not write the notification log")

        task = asyncio.create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def send_test(self, now: float | None = None) -> list[Outcome]:
        """``notify-test``: one test message per route to each of its URLs, now."""
        from riskwatch.notify.render import render_test

        t = self.clock.now() if now is None else now
        jobs = []
        results: list[Outcome] = []
        for route in self.routes:
            out = Outgoing(route.name, "test", route.targets, render_test(route.name, t), "test")
            jobs += [
                self.deliverer.send_now(target, out)
                for target in route.targets
                if not is_alertmanager(target.reveal())
            ]
            for shown, error in await self.alertmanagers.send_test(route):
                result = "sent" if error is None else "failed"
                ident = url_id(shown)
                results.append(
                    Outcome(route.name, ident, "test", "test", result, error, 1, "", shown)
                )
        return [*await asyncio.gather(*jobs), *results]

    def pending(self) -> int:
        """Items waiting in the intake queue."""
        return self._queue.qsize()
