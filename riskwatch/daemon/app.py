"""Wiring of the daemon: config → connections → core → metrics, HTTP, signals.

This is the I/O shell of ``riskwatch run`` (and of ``demo``, which points it at the
simulator). The per-account core (:class:`riskwatch.pipeline.AccountCore`) is pure: it is
handed the events of each frame with the frame's receive time and returns what to
send; this module counts, publishes the frozen views that ``/metrics`` and ``/api``
read, and owns the sockets, the HTTP server and the signal handlers.

Shutdown: SIGTERM or SIGINT stop the connections and the HTTP server within a few
seconds, and ``run_daemon`` returns 0. A bad config at start prints
``FILE:LINE:COL: message`` lines to stderr and returns 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from riskwatch import __version__
from riskwatch.actions.executor import ActionExecutor, scratch_store
from riskwatch.actions.model import ActionEvent
from riskwatch.actions.notices import to_notice
from riskwatch.clock import Clock, SystemClock
from riskwatch.config import AccountConfig, Config, load_config
from riskwatch.daemon.reload import Reloader
from riskwatch.errors import ConfigError, StateStoreError
from riskwatch.logformat import bound_context, log_context
from riskwatch.logredact import install_redaction
from riskwatch.metrics import AccountView, Metrics, Registry, Scrape, SnapshotCollector
from riskwatch.model import BadMessage, Event, MarkPrice, UnknownMessage
from riskwatch.notify.deliver import DeliveryPolicy
from riskwatch.notify.inhibit import InhibitPolicy
from riskwatch.notify.notice import alert_labels
from riskwatch.notify.service import NotifyService
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.client import (
    ConnectionStatus,
    MarketDataConnection,
    SocketOptions,
    TradeConnection,
)
from riskwatch.qfex.recorder import Recorder
from riskwatch.qfex.session import TradeSession
from riskwatch.rules.engine import ActionIntent, Decision, StateRecords
from riskwatch.rules.lifecycle import TransitionReason
from riskwatch.rules.load import load_rule_files
from riskwatch.rules.model import DATA_STALE_RULE, EMPTY_RULES, RuleSet
from riskwatch.shard import ALL, Shard
from riskwatch.store import Store
from riskwatch.web.server import AdminGuard, build_app, json_response, read_json_body
from riskwatch.web.silences import add_silence_routes
from riskwatch.web.statuspage import page_of

DecisionListener = Callable[[Decision], None]
"""Called with every decision that carries transitions or intents (notifications, actions)."""

TICK_INTERVAL = 0.25
"""Seconds between rule ticks (``for`` expiry, ``keep_firing_for``, stale data)."""

SAVE_INTERVAL = 60.0

BURST_QUIET = 0.002
"""Seconds without a position frame after which a burst no balance closed is evaluated."""
"""Seconds between saves of daily baselines and window history to the state database."""

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AccountRuntime:
    """One account inside the daemon: its core, its connection and its link status."""

    config: AccountConfig
    core: AccountCore
    connection: TradeConnection | None = None
    status: ConnectionStatus | None = None
    reconnects_seen: int = 0
    symbols_watched: int = 0


class Daemon:
    """The running daemon: one :class:`AccountRuntime` per configured account.

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
        self.config = config
        self.rules = rules if rules is not None else EMPTY_RULES
        self.store = store
        self.decision_listeners: list[DecisionListener] = []
        self.clock = clock or SystemClock()
        self.registry = registry or Registry()
        self.metrics = Metrics(self.registry, version=__version__)
        self.recorder = recorder
        self.accounts: dict[str, AccountRuntime] = {}
        stale_after = config.exchange.stale_after.seconds
        for acc in config.accounts:
            core = AccountCore(
                acc.name, stale_after=stale_after, rules=self.rules, daily=config.daily
            )
            self.accounts[acc.name] = AccountRuntime(config=acc, core=core)
            self.metrics.init_account(acc.name)
            self._init_alert_series(acc.name)
        if store is not None:
            self._restore(store)
        self.admin = AdminGuard(config.http.admin_token, on_denied=self._count_denied)
        self.registry.register(SnapshotCollector(self._scrape))
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
        )
        self.decision_listeners.append(self.notifier.on_decision)
        # Protective actions: planned per trip, audited before sending, confirmed from
        # the exchange's replies and pulses (actions/executor.py).
        self.executor = ActionExecutor(
            config.actions,
            store=store if store is not None else scratch_store(),
            metrics=self.metrics,
            clock=self.clock,
            snapshot_of=lambda name: self.accounts[name].core.snapshot,
            is_stale=lambda name, t: self.accounts[name].core.is_stale(t),
            send=self._send_frame,
        )
        # First listener: a protective action never waits behind notification work.
        self.decision_listeners.insert(0, self.executor.on_decision)
        self.executor.listeners.append(self._on_action_event)
        for rt in self.accounts.values():
            # Intents reach the executor as the engine makes them (README.md, "Performance").
            rt.core.on_intent = self._on_intent
        # SIGHUP, a changed config or rule file, POST /api/reload (reload.py).
        self.reloader = Reloader(self)
        self.mds: MarketDataConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self.http_port: int | None = None
        self._last_save = 0.0
        self._flush_soon: set[str] = set()  # accounts with a deferred-burst flush queued
        self._deferred_at: dict[str, float] = {}  # loop time of the last deferred frame

    # --- rule state -----------------------------------------------------------------

    def _init_alert_series(self, account: str) -> None:
        """``alert_state`` exists at 0 for every account-scope rule once the account is."""
        for rule in self.rules.account_rules:
            self.metrics.alert_state.labels(rule.name, account, "", rule.severity).set(0)
        self.metrics.alert_state.labels(DATA_STALE_RULE, account, "", "critical").set(0)
        # Counters appear at 0 so that increase() sees their first rise.
        for rule in self.rules.rules:
            self.metrics.alerts_fired.labels(rule.name, account, rule.severity)
        self.metrics.alerts_fired.labels(DATA_STALE_RULE, account, "critical")

    def _restore(self, store: Store) -> None:
        """Resume alert states, pending timers, latches, baselines and peaks."""
        alerts = store.load_alerts()
        daily = store.load_daily()
        windows = store.load_windows()
        for name, rt in self.accounts.items():
            records = StateRecords(
                alerts=tuple((r, sym, rec) for r, a, sym, rec in alerts if a == name),
                daily=daily.get(name),
                windows=windows.get(name),
            )
            try:
                rt.core.restore(records)
            except ValueError as exc:
                log.error("account %s: stored rule state unreadable, starting fresh: %s", name, exc)
                continue
            for alert in rt.core.alerts():
                self.metrics.alert_state.labels(
                    alert.rule, name, alert.symbol or "", alert.severity
                ).set(alert.state.value)
                if alert.latched:
                    self.metrics.latched.labels(alert.rule, name, alert.symbol or "").set(1)

    def _count_denied(self, reason: str) -> None:
        self.metrics.unauthorized.labels(reason).inc()

    def _apply_decision(
        self, decision: Decision, seconds: float | None = None, *, defer: bool = False
    ) -> None:
        """Act on a decision: the action executor first, then the other listeners,
        metrics, log lines and the state database. With ``defer`` (a trade frame whose
        commands are written when its callback returns) everything after the executor
        runs on the next loop turn, i.e. after the commands are on the socket
        (README.md, "Performance")."""
        if seconds is not None:
            self.metrics.rule_evaluation_seconds.observe(seconds)
        if not decision.transitions and not decision.intents:
            return
        if decision.intents:
            try:
                self.executor.on_decision(decision)
            except Exception:  # a listener's bug must not stop evaluation
                log.exception("decision listener failed")
        if defer:
            asyncio.get_running_loop().call_soon(self._record_decision, decision)
        else:
            self._record_decision(decision)

    def _on_intent(self, intent: ActionIntent) -> None:
        """An action intent, mid-evaluation: the executor plans and sends it at once."""
        try:
            with log_context(
                account=intent.account,
                rule=intent.rule,
                symbol=intent.symbol,
                trip_id=intent.trip_id,
            ):
                self.executor.on_intent(intent)
        except Exception:  # a bug here must not stop evaluation
            log.exception("action executor failed on an intent")

    def _record_decision(self, decision: Decision) -> None:
        """The non-urgent part of :meth:`_apply_decision`."""
        for listener in self.decision_listeners:
            if listener == self.executor.on_decision:
                continue  # already called by _apply_decision
            try:
                listener(decision)
            except Exception:  # a listener's bug must not stop evaluation
                log.exception("decision listener failed")
        m = self.metrics
        rows = []
        for t in decision.transitions:
            symbol = t.symbol or ""
            m.alert_state.labels(t.rule, t.account, symbol, t.severity).set(t.state.value)
            m.latched.labels(t.rule, t.account, symbol).set(1 if t.latched else 0)
            if t.reason is TransitionReason.FIRING:
                m.alerts_fired.labels(t.rule, t.account, t.severity).inc()
            rows.append((t.rule, t.account, t.symbol, dict(t.record)))
            log.log(
                logging.WARNING
                if t.reason in (TransitionReason.FIRING, TransitionReason.LATCHED)
                else logging.INFO,
                "alert %s %s account=%s%s%s: %s",
                t.rule,
                t.reason.value.upper(),
                t.account,
                f" symbol={t.symbol}" if t.symbol else "",
                " (shadow)" if t.shadow else "",
                t.summary,
                extra={"account": t.account, "rule": t.rule, "symbol": t.symbol},
            )
        if self.store is not None and rows:
            self.store.save_alerts(rows, decision.at)

    def _save_rule_state(self, now: float, *, alerts: bool = False) -> None:
        if self.store is None:
            return
        for name, rt in self.accounts.items():
            records = rt.core.records()
            if records.daily is not None:
                self.store.save_daily(name, records.daily)
            if records.windows is not None:
                self.store.save_windows(name, records.windows)
            if alerts and records.alerts:
                self.store.save_alerts(
                    [(rule, name, sym, rec) for rule, sym, rec in records.alerts], now
                )
        self._last_save = now

    async def _tick_loop(self) -> None:
        """Let time pass for the rules: ``for`` expiry and stale data with no frames."""
        while not self._stopped.is_set():
            now = self.clock.now()
            for rt in self.accounts.values():
                started = time.perf_counter()
                decision = rt.core.tick(now)
                # A quiet tick evaluates nothing: keep it out of rule_evaluation_seconds.
                evaluated = rt.core.last_decision is decision
                self._apply_decision(decision, time.perf_counter() - started if evaluated else None)
            if now - self._last_save >= SAVE_INTERVAL:
                self._save_rule_state(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=TICK_INTERVAL)

    def reset_latches(
        self, account: str, rule: str | None, symbol: str | None, actor: str
    ) -> list[dict[str, Any]]:
        """Reset latches (operator action); returns the alerts that were reset."""
        rt = self.accounts[account]
        now = self.clock.now()
        if self.store is not None:
            self.store.reset_latch(account, rule=rule, symbol=symbol, now=now, actor=actor)
        decision = rt.core.reset_latch(now=now, rule=rule, symbol=symbol)
        self._apply_decision(decision)
        log.warning(
            "latch reset by %s: account=%s rule=%s symbol=%s (%d alert(s))",
            actor,
            account,
            rule or "*",
            symbol or "*",
            len(decision.transitions),
        )
        return [
            {"rule": t.rule, "account": t.account, "symbol": t.symbol, "reason": t.reason.value}
            for t in decision.transitions
        ]

    def alerts_document(self) -> dict[str, Any]:
        """``/api/alerts``: pending, firing and latched alerts of every account."""
        now = self.clock.now()
        alerts = [
            # A silenced or inhibited alert stays listed, marked "muted" (not notified).
            a.to_dict()
            | self.notifier.mute_of(
                alert_labels(a.rule, a.account, a.symbol, a.severity, a.labels), now
            )
            for rt in self.accounts.values()
            for a in rt.core.alerts()
        ]
        return {"time": now, "alerts": alerts}

    # --- event handling -------------------------------------------------------------

    def _on_trade_events(self, account: str, events: Sequence[Event], now: float) -> list[str]:
        """Count, log and apply one frame's events; return frames to send at once."""
        rt = self.accounts[account]
        messages = self.metrics.messages
        for ev in events:
            messages.labels(account, ev.kind).inc()
            if isinstance(ev, BadMessage):
                log.warning(
                    "account %s: bad message skipped (%s): %.200r", account, ev.reason, ev.sample
                )
            elif isinstance(ev, UnknownMessage):
                log.info("account %s: unknown message %r skipped", account, ev.key)
        started = time.perf_counter()
        self.executor.frame_started(account)
        result = rt.core.handle(events, now)
        if result.decision is not None:
            self._apply_decision(result.decision, time.perf_counter() - started, defer=True)
        elif result.deferred:
            # Evaluate the burst once no frame came for BURST_QUIET seconds, if no balance
            # frame closed it by then (core.py; README.md, "Performance"). Not at once: the
            # burst's frames trickle in, and a flush between them evaluated half a pulse.
            loop = asyncio.get_running_loop()
            self._deferred_at[account] = loop.time()
            if account not in self._flush_soon:
                self._flush_soon.add(account)
                loop.call_later(BURST_QUIET, self._flush_deferred, account)
        for reason in result.flags:
            self.metrics.impossible_frames.labels(account, reason).inc()
            log.warning(
                "account %s: frame with impossible figures not applied (%s)", account, reason
            )
        if self.mds is not None and len(rt.core.snapshot.positions) != rt.symbols_watched:
            # A symbol appeared in a pulse: ask the market-data gateway for its marks.
            rt.symbols_watched = len(rt.core.snapshot.positions)
            self.mds.watch(set(rt.core.snapshot.positions))
        # Commands planned from this frame are written on the same loop turn.
        return [*result.frames, *self.executor.on_events(account, events, now)]

    def _flush_deferred(self, account: str) -> None:
        """End of a burst with position frames left unevaluated (no balance came)."""
        self._flush_soon.discard(account)
        rt = self.accounts.get(account)
        if rt is None or not rt.core.deferred:
            return
        loop = asyncio.get_running_loop()
        wait = self._deferred_at.get(account, 0.0) + BURST_QUIET - loop.time()
        if wait > 0:  # position frames still coming: the burst has not ended
            self._flush_soon.add(account)
            loop.call_later(wait, self._flush_deferred, account)
            return
        started = time.perf_counter()
        decision = rt.core.flush(self.clock.now())
        if decision is not None:
            # The executor's commands are written by a task queued before the rest.
            self._apply_decision(decision, time.perf_counter() - started, defer=True)

    def _on_mds_events(self, events: Sequence[Event], now: float) -> None:
        """Fan mark prices out to the accounts holding the symbol."""
        marks = [ev for ev in events if isinstance(ev, MarkPrice)]
        for ev in events:
            if not isinstance(ev, MarkPrice):
                self.metrics.messages.labels("", ev.kind).inc()
        if not marks:
            return
        for name, rt in self.accounts.items():
            mine = [m for m in marks if m.symbol in rt.core.snapshot.positions]
            if not mine:
                continue
            self.metrics.messages.labels(name, "mark_price").inc(len(mine))
            started = time.perf_counter()
            result = rt.core.handle(mine, now)
            if result.decision is not None:
                self._apply_decision(result.decision, time.perf_counter() - started)
            for reason in result.flags:
                self.metrics.impossible_frames.labels(name, reason).inc()
            if result.frames and rt.connection is not None:
                for frame in result.frames:
                    with contextlib.suppress(ConnectionError):
                        rt.connection.send_nowait(frame)

    def _on_status(self, account: str, status: ConnectionStatus) -> None:
        rt = self.accounts[account]
        rt.status = status
        if status.reconnects > rt.reconnects_seen:
            self.metrics.reconnects.labels(account).inc(status.reconnects - rt.reconnects_seen)
            rt.reconnects_seen = status.reconnects
        self.executor.on_status(account, self._connected(rt), self.clock.now())

    # --- views ----------------------------------------------------------------------

    def _connected(self, rt: AccountRuntime) -> bool:
        return rt.status is not None and rt.status.connected and rt.status.authenticated

    def _scrape(self) -> Scrape:
        now = self.clock.now()
        return Scrape(
            now=now,
            accounts=[
                AccountView(name, self._connected(rt), rt.core.figures_at(now))
                for name, rt in self.accounts.items()
            ],
        )

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when every account is connected, authenticated and its data fresh."""
        now = self.clock.now()
        reasons: list[str] = []
        for name, rt in self.accounts.items():
            st = rt.status
            if st is not None and st.auth_rejected:
                reasons.append(f"account {name}: authentication rejected")
            elif st is None or not st.connected:
                reasons.append(f"account {name}: not connected")
            elif not st.authenticated:
                reasons.append(f"account {name}: not authenticated")
            elif rt.core.is_stale(now):
                reasons.append(f"account {name}: data stale")
        return (not reasons, reasons)

    def state_document(self) -> dict[str, Any]:
        """``/api/state``: accounts, positions, derived figures; never a secret."""
        now = self.clock.now()
        accounts = []
        for name, rt in self.accounts.items():
            st = rt.status or ConnectionStatus()
            doc = rt.core.describe(now)
            doc.update(
                name=name,
                connected=self._connected(rt),
                connection={
                    "socket_open": st.connected,
                    "authenticated": st.authenticated,
                    "auth_rejected": st.auth_rejected,
                    "last_error": st.last_error,
                    "reconnects": st.reconnects,
                },
            )
            accounts.append(doc)
        return {
            "version": __version__,
            "time": now,
            "mode": self.executor.mode,
            "kill_switch": self.executor.kill_switch,
            "armed": self.executor.armed,
            "actions": {**self.executor.status(), "recent": self.executor.recent(10)},
            "exchange": {
                "url": self.config.exchange.url,
                "market_data_url": self.config.exchange.market_data_url,
                "market_data_connected": bool(self.mds and self.mds.status.connected),
            },
            "accounts": accounts,
        }

    # --- lifecycle ------------------------------------------------------------------

    def _session_factory(self, acc: AccountConfig) -> TradeSession:
        return TradeSession(
            public_key=acc.public_key if acc.jwt is None else None,
            secret_key=acc.secret_key.reveal() if acc.secret_key is not None else None,
            jwt=acc.jwt.reveal() if acc.jwt is not None else None,
            account_id=acc.account_id,
        )

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
        self.executor.announce()
        self.executor.resume(self.clock.now())
        app = build_app(self, self.registry, status_page=lambda: page_of(self))
        app.router.add_post("/api/reload", self.admin.guard(self._http_reload))
        app.router.add_post("/api/latches/reset", self.admin.guard(self._http_reset_latches))
        add_silence_routes(app, self.notifier, self.admin)
        app.router.add_get("/api/actions", self._http_actions)
        app.router.add_post("/api/arm", self.admin.guard(self._http_arm))
        app.router.add_post("/api/disarm", self.admin.guard(self._http_disarm))
        await self.notifier.start()
        now = self.clock.now()
        for name, rt in self.accounts.items():
            restored = rt.core.alerts()
            if restored:
                # Alerts restored from the state database: the notifier learns of them now,
                # so their repeat_interval reminders resume (the log prevents re-sending).
                self.notifier.on_decision(Decision(name, now, "tick", stale=False, alerts=restored))
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else cfg.http.port
        log.info("serving /metrics and /api on %s:%s", cfg.http.host, self.http_port)
        options = SocketOptions(
            ping_interval=cfg.exchange.ping_interval.seconds,
            ping_timeout=cfg.exchange.ping_timeout.seconds,
        )
        if cfg.exchange.market_data_url:
            self.mds = MarketDataConnection(
                url=cfg.exchange.market_data_url,
                on_events=self._on_mds_events,
                clock=self.clock,
                options=options,
                recorder=self.recorder,
            )
            self._tasks.append(asyncio.create_task(self.mds.run(), name="mds"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="rule-ticks"))
        self._tasks.append(asyncio.create_task(self.reloader.watch(), name="config-watch"))
        self._tasks.append(asyncio.create_task(self.executor.run(), name="actions"))
        for name, rt in self.accounts.items():
            acc = rt.config

            def on_events(events: Sequence[Event], now: float, _n: str = name) -> list[str]:
                return self._on_trade_events(_n, events, now)

            def on_status(status: ConnectionStatus, _n: str = name) -> None:
                self._on_status(_n, status)

            def make_session(_a: AccountConfig = acc) -> TradeSession:
                return self._session_factory(_a)

            rt.connection = TradeConnection(
                account=name,
                url=cfg.exchange.url,
                session_factory=make_session,
                on_events=on_events,
                clock=self.clock,
                options=options,
                recorder=self.recorder,
                on_status=on_status,
            )
            # Every line the connection logs names its account (docs/logging.md).
            self._tasks.append(
                asyncio.create_task(
                    rt.connection.run(), name=f"trade:{name}", context=bound_context(account=name)
                )
            )

    async def stop(self) -> None:
        """Close connections and the HTTP server; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        closers = [rt.connection.stop() for rt in self.accounts.values() if rt.connection]
        if self.mds is not None:
            closers.append(self.mds.stop())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), timeout=3)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.recorder is not None:
            self.recorder.close()
        self._save_rule_state(self.clock.now(), alerts=True)
        log.info("riskwatch stopped")

    def _send_frame(self, account: str, frame: str) -> float:
        """Write a command frame for ``account`` now; ConnectionError when not connected."""
        conn = self.accounts[account].connection
        if conn is None:
            msg = f"account {account!r} has no connection"
            raise ConnectionError(msg)
        return conn.send_nowait(frame)

    def _on_action_event(self, event: ActionEvent) -> None:
        """Action events become notices (dry-run, confirmed, FAILED, breaker)."""
        notice = to_notice(event)
        if notice is not None:
            self.notifier.enqueue_action(notice)

    async def _http_actions(self, request: web.Request) -> web.Response:
        """``GET /api/actions?limit=N&account=A``: the audit log, newest first."""
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return json_response({"error": "limit must be an integer"}, status=400)
        rows = self.executor.store.actions(limit=limit, account=request.query.get("account"))
        doc = self.executor.status()
        doc["actions"] = [
            {**r.to_dict(), "outcome": r.status if r.finished else "pending"} for r in rows
        ]
        return json_response(doc)

    async def _http_arm(self, request: web.Request) -> web.Response:
        """``POST /api/arm``: mode armed, kill switch off."""
        return json_response(self.executor.arm(actor=f"api ({request.remote})"))

    async def _http_disarm(self, request: web.Request) -> web.Response:
        """``POST /api/disarm``: the kill switch; nothing more is sent."""
        return json_response(self.executor.disarm(actor=f"api ({request.remote})"))

    async def _http_reload(self, _: web.Request) -> web.Response:
        """``POST /api/reload``: reload rules and routes now; 422 when refused."""
        outcome = await self.reloader.reload("api")
        return json_response(outcome.to_dict(), status=200 if outcome.ok else 422)

    async def _http_reset_latches(self, request: web.Request) -> web.Response:
        """``POST /api/latches/reset`` ``{"account", "rule"?, "symbol"?}``.

        See docs/design.md#precise-points.
        """
        body = await read_json_body(request)
        account = body.get("account")
        rule, symbol = body.get("rule"), body.get("symbol")
        if not isinstance(account, str) or account not in self.accounts:
            return json_response({"error": f"unknown account {account!r}"}, status=400)
        for key, value in (("rule", rule), ("symbol", symbol)):
            if value is not None and not isinstance(value, str):
                return json_response({"error": f"{key} must be a string"}, status=400)
        if rule is not None and rule not in self.rules.by_name and rule != DATA_STALE_RULE:
            return json_response({"error": f"unknown rule {rule!r}"}, status=400)
        reset = self.reset_latches(account, rule, symbol, actor="api")
        return json_response({"reset": reset})

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
    if config.http.admin_token is not None:
        out.append(config.http.admin_token.reveal())
    for route in config.notifications.routes:
        out.extend(u.reveal() for u in route.urls)
    return out


async def serve(
    config: Config,
    rules: RuleSet,
    store: Store,
    *,
    record: Path | None = None,
    shard: Shard = ALL,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (SIGHUP reloads); return the exit status."""
    recorder = Recorder(record) if record is not None else None
    daemon = Daemon(config, recorder=recorder, rules=rules, store=store)
    if shard != ALL:
        daemon.reloader.select = lambda accounts: shard.select(accounts, lambda a: a.name)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await daemon.start()
    # Start-up objects (config, rules, modules, series) out of the cyclic GC's reach:
    # full collections scanned them all, 80-100 ms loop stalls at 1000 accounts
    # (README.md, "Performance").
    gc.freeze()
    loop.add_signal_handler(signal.SIGHUP, daemon.reloader.request, "SIGHUP")
    await stop_requested.wait()
    log.info("shutdown requested")
    await daemon.stop()
    return 0


def run_daemon(config_path: Path, *, record: Path | None = None, shard: Shard = ALL) -> int:
    """``riskwatch run``: load the config (exit 2 on problems) and serve.

    With ``shard`` (``--shard I/N``) only the accounts that shard owns are watched
    (:mod:`riskwatch.shard`; README.md, "Performance").
    """
    try:
        config = load_config(config_path)
        if shard != ALL:
            config = replace(config, accounts=shard.select(config.accounts, lambda a: a.name))
            log.info("shard %s: watching %d account(s)", shard, len(config.accounts))
        rules = load_rule_files(list(config.rules.files))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    install_redaction(secrets_of(config))
    try:
        store = Store.open(config.state.path)
    except StateStoreError as exc:
        print(f"{config.state.path}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(config, rules, store, record=record, shard=shard))
    finally:
        store.close()
