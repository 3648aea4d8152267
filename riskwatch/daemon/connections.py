"""The exchange connections: one trade WebSocket per account, one market-data WebSocket.

Each runs in its own task (reconnecting with backoff, :mod:`riskwatch.qfex.client`)
and hands its frames to :class:`~riskwatch.daemon.frames.Frames`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence

from riskwatch.clock import Clock
from riskwatch.config import Config
from riskwatch.daemon.accounts import AccountRuntime, session_for
from riskwatch.daemon.frames import Frames
from riskwatch.logformat import bound_context
from riskwatch.metrics import Metrics
from riskwatch.model import Event
from riskwatch.qfex.client import (
    ConnectionStatus,
    MarketDataConnection,
    SocketOptions,
    TradeConnection,
)
from riskwatch.qfex.recorder import Recorder
from riskwatch.qfex.session import TradeSession

__all__ = ["Connections"]


log = logging.getLogger(__name__)


class Connections:
    """Opens, feeds and closes the exchange connections of the watched accounts."""

    def __init__(
        self,
        config: Config,
        accounts: dict[str, AccountRuntime],
        frames: Frames,
        clock: Clock,
        recorder: Recorder | None,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.frames = frames
        self.clock = clock
        self.recorder = recorder
        self.metrics = metrics
        self.mds: MarketDataConnection | None = None
        # One jitter source for every connection: a generator's state is 2.5 kB, and
        # reconnect jitter needs no stream of its own (docs/performance.md).
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography

    def _options(self) -> SocketOptions:
        exchange = self.config.exchange
        return SocketOptions(
            ping_interval=exchange.ping_interval.seconds,
            ping_timeout=exchange.ping_timeout.seconds,
            transport=exchange.transport,
        )

    def _on_mds_events(self, events: Sequence[Event], now: float) -> None:
        """Market data into the cores. An error never ends the connection (it would
        reconnect on every frame): it is logged and counted, and the next frame comes."""
        try:
            self.frames.on_mds_events(events, now)
        except Exception:
            log.exception("market data: handling a frame failed")
            self.metrics.task_errors.labels("market_data").inc()

    def start_market_data(self) -> list[asyncio.Task[None]]:
        """Open the market-data connection, when configured; return its task."""
        cfg = self.config
        options = self._options()
        frames = self.frames
        tasks: list[asyncio.Task[None]] = []
        if cfg.exchange.market_data_url:
            self.mds = MarketDataConnection(
                url=cfg.exchange.market_data_url,
                on_events=self._on_mds_events,
                clock=self.clock,
                options=options,
                recorder=self.recorder,
            )
            frames.mds = self.mds
            tasks.append(asyncio.create_task(self.mds.run(), name="mds"))
        return tasks

    def start_trade(self) -> list[asyncio.Task[None]]:
        """Open one trade connection per account; return their tasks."""
        options = self._options()
        frames = self.frames
        tasks: list[asyncio.Task[None]] = []
        for name, rt in self.accounts.items():
            # Looked up at each call: a wrapper set on ``frames`` (benches) is honoured.
            def on_events(events: Sequence[Event], now: float, _n: str = name) -> list[str]:
                try:
                    return frames.on_trade_events(_n, events, now)
                except Exception:  # never the connection: count, log, next frame
                    log.exception("account %s: handling a trade frame failed", _n)
                    self.metrics.task_errors.labels("trade").inc()
                    return []

            def on_status(status: ConnectionStatus, _n: str = name) -> None:
                frames.on_status(_n, status)

            def make_session(_rt: AccountRuntime = rt) -> TradeSession:
                return session_for(_rt)

            # Per-account URL and upgrade credentials; the JWT is fetched again before
            # every attempt (docs/protocol.md §1, §2.1).
            rt.connection = TradeConnection(
                account=name,
                url=rt.link.url,
                handshake=rt.link.handshake,
                prepare=rt.link.prepare,
                on_live=rt.link.on_live,
                session_factory=make_session,
                on_events=on_events,
                clock=self.clock,
                options=options,
                recorder=self.recorder,
                on_status=on_status,
                rng=self.rng,
            )
            # Every line the connection logs names its account (docs/logging.md).
            tasks.append(
                asyncio.create_task(
                    rt.connection.run(), name=f"trade:{name}", context=bound_context(account=name)
                )
            )
        return tasks

    async def stop(self) -> None:
        """Close every connection (at most 3 s)."""
        closers = [rt.connection.stop() for rt in self.accounts.values() if rt.connection]
        if self.mds is not None:
            closers.append(self.mds.stop())
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await asyncio.gather(*closers, return_exceptions=True)

    def send_frame(self, account: str, frame: str) -> float:
        """Write a command frame for ``account`` now; ConnectionError when not connected."""
        conn = self.accounts[account].connection
        if conn is None:
            msg = f"account {account!r} has no connection"
            raise ConnectionError(msg)
        return conn.send_nowait(frame)
