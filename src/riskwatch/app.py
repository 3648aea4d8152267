"""Wiring of the daemon: config → connections → core → metrics, HTTP, signals.

This is the I/O shell of ``riskwatch run`` (and of ``demo``, which points it at the
simulator). The per-account core (:class:`riskwatch.core.AccountCore`) is pure: it is
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
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from riskwatch import __version__
from riskwatch.clock import Clock, SystemClock
from riskwatch.config import AccountConfig, Config, load_config
from riskwatch.core import AccountCore
from riskwatch.errors import ConfigError
from riskwatch.http import build_app
from riskwatch.logredact import install_redaction
from riskwatch.metrics import AccountView, Metrics, Scrape, SnapshotCollector
from riskwatch.model import BadMessage, Event, MarkPrice, UnknownMessage
from riskwatch.qfex.client import (
    ConnectionStatus,
    MarketDataConnection,
    SocketOptions,
    TradeConnection,
)
from riskwatch.qfex.recorder import Recorder
from riskwatch.qfex.session import TradeSession

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
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry, version=__version__)
        self.recorder = recorder
        self.accounts: dict[str, AccountRuntime] = {}
        stale_after = config.exchange.stale_after.seconds
        for acc in config.accounts:
            self.accounts[acc.name] = AccountRuntime(
                config=acc, core=AccountCore(acc.name, stale_after=stale_after)
            )
            self.metrics.init_account(acc.name)
        self.registry.register(SnapshotCollector(self._scrape))
        self.mds: MarketDataConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self.http_port: int | None = None

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
        result = rt.core.handle(events, now)
        for reason in result.flags:
            self.metrics.impossible_frames.labels(account, reason).inc()
            log.warning(
                "account %s: frame with impossible figures not applied (%s)", account, reason
            )
        if self.mds is not None and len(rt.core.snapshot.positions) != rt.symbols_watched:
            # A symbol appeared in a pulse: ask the market-data gateway for its marks.
            rt.symbols_watched = len(rt.core.snapshot.positions)
            self.mds.watch(set(rt.core.snapshot.positions))
        return list(result.frames)

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
            result = rt.core.handle(mine, now)
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
            "mode": self.config.actions.mode,
            "kill_switch": self.config.actions.kill_switch,
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
            cfg.actions.mode.upper(),
            " (kill switch ON: no action will be sent)" if cfg.actions.kill_switch else "",
        )
        app = build_app(self, self.registry)
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
            self._tasks.append(asyncio.create_task(rt.connection.run(), name=f"trade:{name}"))

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
        if self._runner is not None:
            await self._runner.cleanup()
        if self.recorder is not None:
            self.recorder.close()
        log.info("riskwatch stopped")

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


async def serve(config: Config, *, record: Path | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status."""
    recorder = Recorder(record) if record is not None else None
    daemon = Daemon(config, recorder=recorder)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await daemon.start()
    await stop_requested.wait()
    log.info("shutdown requested")
    await daemon.stop()
    return 0


def run_daemon(config_path: Path, *, record: Path | None = None) -> int:
    """``riskwatch run``: load the config (exit 2 on problems) and serve."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    install_redaction(secrets_of(config))
    return asyncio.run(serve(config, record=record))
