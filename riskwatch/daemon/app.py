"""The daemon's wiring: config → accounts → connections → core → metrics, notifier, HTTP.

This is the I/O shell of ``riskwatch run`` (and of ``demo``, which points it at the
simulator). :class:`Daemon` builds the parts, each in its own module, and runs their
tasks:

- :mod:`~riskwatch.daemon.accounts`: one runtime per account (pure core + link status);
- :mod:`~riskwatch.daemon.frames`: exchange frames into the cores;
- :mod:`~riskwatch.daemon.decisions`: decisions to the executor, notifier, metrics, store;
- :mod:`~riskwatch.daemon.ticks`: the rule tick and periodic saves;
- :mod:`~riskwatch.daemon.rulestate`: rule state restored from and saved to the store;
- :mod:`~riskwatch.daemon.connections`: the exchange WebSockets;
- :mod:`~riskwatch.daemon.reload`: configuration reload;
- :mod:`~riskwatch.daemon.views` and :mod:`~riskwatch.daemon.commands`: what the HTTP
  layer (:mod:`riskwatch.web`) may read and do;
- :mod:`~riskwatch.daemon.serve`: ``riskwatch run`` (signals, exit status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry

from riskwatch import __version__
from riskwatch.actions.executor import ActionExecutor, scratch_store
from riskwatch.actions.model import ActionEvent
from riskwatch.actions.notices import to_notice
from riskwatch.clock import Clock, SystemClock
from riskwatch.config import Config
from riskwatch.daemon.accounts import build_accounts
from riskwatch.daemon.commands import Commands
from riskwatch.daemon.connections import Connections
from riskwatch.daemon.decisions import Decisions
from riskwatch.daemon.frames import Frames
from riskwatch.daemon.jwtwatch import JwtWatch
from riskwatch.daemon.live import LiveConfig
from riskwatch.daemon.looplag import LoopLagProbe
from riskwatch.daemon.reload import Reloader
from riskwatch.daemon.retention import RetentionPurge
from riskwatch.daemon.rulestate import DailySaver, init_alert_series, restore_rule_state
from riskwatch.daemon.storage import StateHealth
from riskwatch.daemon.taskwatch import TaskWatch
from riskwatch.daemon.ticks import TickLoop
from riskwatch.daemon.views import Views
from riskwatch.ha.base import HaMetrics, LeaseLeadership
from riskwatch.ha.factory import build_leadership
from riskwatch.ha.gate import LeaderGate
from riskwatch.metrics import AlertStateCollector, Metrics, Registry, SnapshotCollector
from riskwatch.notify.deliver import DeliveryPolicy
from riskwatch.notify.inhibit import InhibitPolicy
from riskwatch.notify.service import NotifyService
from riskwatch.qfex.client import MarketDataConnection
from riskwatch.qfex.link import LinkCollector
from riskwatch.qfex.recorder import Recorder
from riskwatch.refdata.collector import HeldPositions, RefdataCollector
from riskwatch.refdata.fetch import RefdataSource
from riskwatch.refdata.figures import MarketFiguresOf
from riskwatch.rules.engine import Decision
from riskwatch.rules.model import EMPTY_RULES, RuleSet
from riskwatch.store import Store
from riskwatch.store.writer import StateWriter
from riskwatch.tasks import cancel_and_wait
from riskwatch.web.guard import AccessGuard
from riskwatch.web.routes import build_app
from riskwatch.web.server import ConnectionGuard, HttpServer

__all__ = ["STOP_STEP_SECONDS", "Daemon", "secrets_of"]

log = logging.getLogger(__name__)

STOP_STEP_SECONDS: Final = 5.0
"""Most seconds one step of :meth:`Daemon.stop` may take. The steps are bounded by
their own timeouts (3 s at most); this bound is for a step that hangs, so that the
steps after it, the last rule-state save among them, still run, inside the 30 s an
orchestrator gives a stopping container by default."""


class Daemon:
    """The running daemon: one :class:`~riskwatch.daemon.accounts.AccountRuntime` per account.

    Construct, then ``await start()``, then ``await wait_stopped()`` (or ``stop()``).
    ``clock`` is injectable so that tests can pin time; ``registry`` likewise.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        recorder: Recorder | None = None,
        rules: RuleSet | None = None,
        store: Store | None = None,
    ) -> None:
        self.live = LiveConfig(config, rules if rules is not None else EMPTY_RULES)
        self.store = store
        self.clock = clock or SystemClock()
        self.registry = registry or Registry()
        self.metrics = Metrics(self.registry, version=__version__)
        self.recorder = recorder
        self.accounts = build_accounts(config, self.live.rules)
        for name in self.accounts:
            self.metrics.init_account(name)
            init_alert_series(self.metrics, self.live.rules, name)
        if store is not None:
            restore_rule_state(store, self.accounts, self.metrics)
        # Every write but the intent commit goes through one thread (store/writer.py).
        self.writer = StateWriter(store) if store is not None else None
        # Notifications: enqueue is O(1) and never awaits; delivery runs in its own tasks.
        self.notifier = NotifyService(
            config.notifications,
            clock=self.clock,
            store=store,
            metrics=self.metrics,
            external_url=config.http.external_url,
            secrets=secrets_of(config),
            inhibit=InhibitPolicy(
                enabled=config.notifications.inhibit,
                family_label=config.notifications.family_label,
            ),
            delivery=DeliveryPolicy(
                timeout=config.notifications.delivery_timeout.seconds,
                attempts=config.notifications.delivery_attempts,
            ),
            group_interval=config.notifications.group_interval.seconds,
            writer=self.writer,
        )
        self.daily = DailySaver(self.accounts, self.writer) if self.writer is not None else None
        # Store faults are counted, fail /readyz and are notified (daemon/storage.py).
        self.health = StateHealth(
            self.metrics,
            notify=self.notifier.enqueue_alert,
            now=self.clock.now,
            state_path=store.path if store is not None else config.state.path,
            warn_free_mb=config.state.warn_free_mb,
            probe=self.daily.save_all if self.daily is not None else None,
            watch_disk=store is not None,
        )
        # A task that ends before stop() is counted, fails /readyz, is notified.
        self.task_watch = TaskWatch(
            self.metrics, notify=self.notifier.enqueue_alert, now=self.clock.now
        )
        # High availability (riskwatch/ha/): the leader lease decides who sends what must
        # happen once; without an ``ha:`` backend this process is the only one.
        self.leadership = build_leadership(config.ha, HaMetrics(self.registry))
        self.gate = LeaderGate(self.leadership.is_leader) if config.ha.backend != "none" else None
        send = self._send_frame if self.gate is None else self.gate.sender(self._send_frame)
        if self.gate is not None:
            self.notifier.gate = self.leadership.is_leader
            self.leadership.listeners.append(self._on_leadership)
        # Protective actions: planned per trip, audited before sending, confirmed from
        # the exchange's replies and pulses (actions/executor.py).
        self.executor = ActionExecutor(
            config.actions,
            store=store if store is not None else scratch_store(),
            metrics=self.metrics,
            clock=self.clock,
            snapshot_of=lambda name: self.accounts[name].core.snapshot,
            is_stale=lambda name, t: self.accounts[name].core.is_stale(t),
            send=send,
            outcomes=self.writer,
            on_store_error=self.health.error,
        )
        self.executor.gate = self.gate
        self.executor.listeners.append(self._on_action_event)
        # The executor first: a protective action never waits behind notification work.
        self.decisions = Decisions(self.executor, self.metrics, self.writer, self.daily)
        self.decisions.listeners.append(self.notifier.on_decision)
        for rt in self.accounts.values():
            # Intents reach the executor as the engine makes them (docs/performance.md).
            rt.core.on_intent = self.decisions.on_intent
        self.frames = Frames(self.accounts, self.decisions, self.executor, self.metrics, self.clock)
        self.connections = Connections(
            config, self.accounts, self.frames, self.clock, recorder, self.metrics
        )
        self._stopped = asyncio.Event()
        self.unclean_stop: list[str] = []
        """The steps of :meth:`stop` that overran or failed (empty after a clean stop)."""
        self.ticks = TickLoop(
            self.accounts,
            self.decisions,
            self.clock,
            self.writer,
            self._stopped,
            self.metrics,
            self.health,
            on_tick=recorder.tick if recorder is not None else None,
        )
        if recorder is not None:
            # --record: the timers that let time pass for the cores and the action book,
            # and the links going down, go into the recording with the frames, in order,
            # so that replay feeds them when the daemon did (riskwatch/qfex/recorder.py).
            self.executor.on_tick = recorder.action_tick
            self.frames.on_flush = recorder.burst_flush
            self.frames.on_disconnect = recorder.disconnected
        # SIGHUP, a changed config or rule file, POST /api/reload (reload.py).
        self.reloader = Reloader(self.live, self.accounts, self.metrics, self.notifier, self.clock)
        self.loop_lag = LoopLagProbe(
            self.metrics, notify=self.notifier.enqueue_alert, now=self.clock.now,
            stopped=self._stopped,
        )  # fmt: skip
        self.views = Views(
            self.live,
            self.accounts,
            self.executor,
            self.notifier,
            self.clock,
            store,
            market_data=lambda: self.connections.mds,
            last_reload=lambda: self.reloader.last,
            leadership=self.leadership,
            health=self.health,
            loop_lag=self.loop_lag,
            tasks=self.task_watch,
        )
        self.registry.register(SnapshotCollector(self.views.scrape))
        self.registry.register(LinkCollector(self.views.link_views))
        self.jwt_watch = JwtWatch(self.accounts, self.notifier, self.clock, self._stopped)
        self.registry.register(AlertStateCollector(self.views.alert_gauges))
        # Reference data (docs/protocol.md §11): REST, fetched at start and periodically;
        # leverage levels come over each account's trade connection.
        self.refdata = RefdataSource(
            config.exchange.rest_url, self.clock, config.exchange.refdata_interval.seconds
        )
        for rt in self.accounts.values():
            rt.link.on_levels = self.refdata.set_levels
        self.executor.book.refdata_of = lambda: self.refdata.refdata
        market = MarketFiguresOf(lambda: self.refdata.refdata)
        for rt in self.accounts.values():
            rt.core.market = market
        self.registry.register(RefdataCollector(self.refdata, self._held_positions))
        self.commands = Commands(
            self.live,
            self.accounts,
            self.executor,
            self.decisions,
            self.notifier,
            self.reloader,
            self.clock,
            self.writer,
            on_store_error=self.health.error,
        )
        http = config.http
        self.guard = AccessGuard(http, on_denied=self._count_denied, on_refused=self._count_refused)
        self.connection_guard = ConnectionGuard(
            http.max_connections,
            http.max_connections_per_client,
            http.header_timeout.seconds,
            http.idle_timeout.seconds,
            on_refused=self._count_refused,
        )
        self.metrics.http_connections.set_function(lambda: self.connection_guard.open_connections)
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The notification log and ended silences are purged on a schedule (retention.py).
        self.retention = (
            RetentionPurge(store, lambda: self.live.config, self.metrics, self.clock)
            if store is not None
            else None
        )

    # --- what the parts share -------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force (a reload replaces its rules and routes)."""
        return self.live.config

    @property
    def rules(self) -> RuleSet:
        """The rule set in force."""
        return self.live.rules

    @property
    def mds(self) -> MarketDataConnection | None:
        """The market-data connection, once started (None without ``market_data_url``)."""
        return self.connections.mds

    def state_document(self) -> dict[str, Any]:
        """``/api/state`` (:meth:`riskwatch.daemon.views.Views.state_document`)."""
        return self.views.state_document()

    def alerts_document(self) -> dict[str, Any]:
        """``/api/alerts`` (:meth:`riskwatch.daemon.views.Views.alerts_document`)."""
        return self.views.alerts_document()

    def _held_positions(self) -> Iterator[HeldPositions]:
        """Each account's non-flat positions with their leverage and notional (refdata
        gauges)."""
        for name, rt in self.accounts.items():
            yield HeldPositions(
                name,
                tuple(
                    (symbol, st.pulse.leverage, st.notional)
                    for symbol, st in rt.core.snapshot.positions.items()
                    if st.pulse.position != 0
                ),
            )

    def readiness(self) -> tuple[bool, list[str]]:
        """``/readyz`` (:meth:`riskwatch.daemon.views.Views.readiness`)."""
        return self.views.readiness()

    def _send_frame(self, account: str, frame: str) -> float:
        return self.connections.send_frame(account, frame)

    def _on_leadership(self, leader: bool) -> None:
        """Became leader: take over the leader-only actions a follower set aside."""
        if leader:
            self.executor.take_over(self.clock.now())

    def _count_denied(self, reason: str) -> None:
        self.metrics.unauthorized.labels(reason).inc()

    def _count_refused(self, reason: str) -> None:
        self.metrics.http_refused.labels(reason).inc()

    def _on_action_event(self, event: ActionEvent) -> None:
        """Action events become notices (dry-run, confirmed, FAILED, breaker)."""
        notice = to_notice(event)
        if notice is not None:
            self.notifier.enqueue_action(notice)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the HTTP server and one connection per account (and market data)."""
        cfg = self.config
        log.info(
            "riskwatch %s starting: %d account(s), actions mode %s%s",
            __version__,
            len(self.accounts),
            self.executor.mode.upper(),
            " (kill switch ON: no action will be sent)" if self.executor.kill_switch else "",
        )
        if self.writer is not None:
            on_error, on_recovered = self.health.threadsafe(asyncio.get_running_loop())
            self.writer.on_error, self.writer.on_recovered = on_error, on_recovered
            self.writer.start()
        self.health.check_disk()
        if self.recorder is not None:
            self._watch_recorder(self.recorder, asyncio.get_running_loop())
        self.executor.announce()
        self.executor.resume(self.clock.now())
        app = build_app(
            self.views,
            self.commands,
            self.registry,
            self.guard,
            connections=self.connection_guard,
            body_timeout=cfg.http.body_timeout.seconds,
        )
        await self.notifier.start()
        if self.notifier.task is not None:
            self.task_watch.watch(self.notifier.task, "notifications")
        now = self.clock.now()
        for name, rt in self.accounts.items():
            restored = rt.core.alerts()
            if restored:
                # Alerts restored from the state database: the notifier learns of them now,
                # so their repeat_interval reminders resume (the log prevents re-sending).
                self.notifier.on_decision(Decision(name, now, "tick", stale=False, alerts=restored))
        self.http = HttpServer(
            app,
            cfg.http.host,
            cfg.http.port,
            self.connection_guard,
            idle_timeout=cfg.http.idle_timeout.seconds,
        )
        self.http_port = await self.http.start()
        log.info("serving /metrics and /api on %s:%s", cfg.http.host, self.http_port)
        for task in self.connections.start_market_data():
            self._tasks.append(self.task_watch.watch(task, "market_data"))
        self._start_task(self.ticks.run(), "rule-ticks", "ticks")
        self._start_task(self.loop_lag.run(), "loop-lag", "loop_lag")
        self._start_task(self.jwt_watch.run(), "jwt-watch", "jwt_watch")
        self._start_task(self.refdata.run(self._stopped), "refdata", "refdata")
        self._start_task(self.reloader.watch(), "config-watch", "config_watch")
        self._start_task(self.executor.run(), "actions", "actions")
        if isinstance(self.leadership, LeaseLeadership):
            log.info(
                "ha: %s lease of %gs as %s",
                self.leadership.backend,
                self.leadership.lease_seconds,
                self.leadership.identity,
            )
            self._start_task(self.leadership.run(), "ha-lease", "ha_lease")
            self._start_task(self.leadership.watch_expiry(), "ha-lease-expiry", "ha_lease")
        if self.retention is not None:
            self._start_task(self.retention.run(self._stopped), "retention-purge", "retention")
        for task in self.connections.start_trade():
            self._tasks.append(self.task_watch.watch(task, "trade"))

    def _start_task(self, coro: Coroutine[Any, Any, None], name: str, kind: str) -> None:
        """Start one of the daemon's long-running tasks, watched (daemon/taskwatch.py)."""
        self._tasks.append(self.task_watch.watch(asyncio.create_task(coro, name=name), kind))

    def _watch_recorder(self, recorder: Recorder, loop: asyncio.AbstractEventLoop) -> None:
        """A write error stops the recording, never the connection: counted and notified."""
        self.metrics.recording.set(1 if recorder.active else 0)

        def on_error(message: str) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.health.recording_stopped, recorder.path, message)

        recorder.on_error = on_error
        if recorder.error is not None:  # failed before the daemon started
            self.health.recording_stopped(recorder.path, recorder.error)

    async def stop(self) -> None:
        """Close connections and the HTTP server, save the rule state; idempotent.

        Each step gets :data:`STOP_STEP_SECONDS`: one that overruns or fails is logged
        as an error and listed in :attr:`unclean_stop`, and the steps after it still run,
        so the last save happens whatever hung before it (``riskwatch run`` then exits 1).
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.task_watch.stopping()
        # The lease first: the other replica takes over while this one shuts down.
        await self._stop_step("leader lease", self.leadership.close())
        await self._stop_step("exchange connections", self.connections.stop())
        await self._stop_step("daemon tasks", cancel_and_wait(*self._tasks))
        await self._stop_step("notifications", self.notifier.stop())
        if self.http is not None:
            await self._stop_step("HTTP server", self.http.stop())
        if self.recorder is not None:
            await self._stop_step("recording", asyncio.to_thread(self.recorder.close, 3.0))
        await self._stop_step("rule state save", self._save_last())
        if self.writer is not None:
            await self._stop_step("state writer", asyncio.to_thread(self.writer.close, 3.0))
        if self.unclean_stop:
            log.error("riskwatch stopped uncleanly: %s", ", ".join(self.unclean_stop))
        else:
            log.info("riskwatch stopped")

    async def _save_last(self) -> None:
        self.ticks.save(self.clock.now(), alerts=True)

    async def _stop_step(self, name: str, step: Awaitable[object]) -> None:
        """Run one step of :meth:`stop` within :data:`STOP_STEP_SECONDS`; an overrun or
        a failure is logged and listed, never raised (the next steps must run)."""
        try:
            async with asyncio.timeout(STOP_STEP_SECONDS):
                await step
        except TimeoutError:
            self.unclean_stop.append(name)
            log.error(
                "shutdown: %s did not finish within %.0f s; stopping the rest",
                name,
                STOP_STEP_SECONDS,
            )
        except Exception:
            self.unclean_stop.append(name)
            log.exception("shutdown: %s failed; stopping the rest", name)

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has been called."""
        await self._stopped.wait()


def secrets_of(config: Config) -> list[str]:
    """Every secret value of ``config`` (for the log redaction filter)."""
    out: list[str] = []
    for acc in config.accounts:
        for s in (acc.secret_key, acc.jwt):
            if s is not None:
                out.append(s.reveal())
    tokens = (config.http.admin_token, config.http.read_token)
    out += [t.reveal() for t in tokens if t is not None]
    for route in config.notifications.routes:
        out.extend(u.reveal() for u in route.urls)
    return out
