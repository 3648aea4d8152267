"""The asyncio shell around the sans-I/O QFEX sessions: sockets, reconnects, pings.

One :class:`TradeConnection` per configured account holds the trade WebSocket; one
:class:`MarketDataConnection` per daemon holds the market-data WebSocket. Both only
move bytes: decoding and the auth → subscribe state machine live in
:mod:`riskwatch.qfex.session`, and what events mean is the caller's business.

The receive loop is deliberately thin (docs/design.md#libraries: a slow consumer stalls pongs and
the connection dies with 1011): each frame is stamped with the clock, handed to the
session, and the resulting events go to a synchronous ``on_events`` callback that
returns the frames to send at once (a protective command written on the same turn
of the loop as the pulse that tripped it).

Reconnection (docs/reliability.md): capped exponential backoff with jitter, reset after a
connection reached LIVE; an authentication rejection is not a network blip: it is
reported on every attempt and retried only on the slow schedule (≥ 30 s,
docs/design.md#precise-points). ``cancel_on_disconnect`` is never sent (docs/protocol.md §7: it may
cancel the whole account's orders when our own socket drops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import websockets

from riskwatch.clock import Clock
from riskwatch.model import Event
from riskwatch.qfex import backoff as backoff_mod
from riskwatch.qfex import commands
from riskwatch.qfex.recorder import Recorder
from riskwatch.qfex.schemas import decode_mds
from riskwatch.qfex.session import SessionState, TradeSession
from riskwatch.qfex.transport import Socket, UpgradeRefused, classify_failure, open_socket
from riskwatch.qfex.transport import SocketOptions as SocketOptions
from riskwatch.qfex.upgrade import Handshake
from riskwatch.tasks import wait_until_set

log = logging.getLogger(__name__)

EventSink = Callable[[Sequence[Event], float], Sequence[str]]
"""Called with the events of one frame and its receive time; returns frames to send."""


@dataclass(slots=True)
class ConnectionStatus:
    """What the daemon shows about one connection (read by metrics and the API)."""

    connected: bool = False
    authenticated: bool = False
    auth_rejected: bool = False
    last_error: str = ""
    connects: int = 0
    reconnects: int = 0
    next_attempt_in: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
    unconfirmed_channels: tuple[str, ...] = ()
    """Subscriptions still unconfirmed past the session's timeout (docs/protocol.md §4)."""
    resubscribes: int = 0
    """Subscribe frames sent again on this connection for want of a confirmation."""


class TradeConnection:
    """Keeps one account's trade WebSocket alive until :meth:`stop`.

    ``session_factory`` builds a fresh :class:`TradeSession` for every connection (it
    re-authenticates and resubscribes by construction). ``on_events`` must not block.
    ``on_reconnect`` is called after each lost connection (for the reconnect counter).
    ``on_live`` gives frames to send once per connection, when commands become allowed.
    ``prepare`` (awaited before every attempt) refreshes credentials, e.g. re-reads a
    JWT; ``handshake`` gives the upgrade request of one attempt at Unix time ``now``
    (URL and credential headers, docs/protocol.md §1); without it the plain ``url``.
    An upgrade refused with HTTP 401 or 403 counts as an authentication rejection.
    """

    def __init__(
        self,
        *,
        account: str,
        url: str,
        session_factory: Callable[[], TradeSession],
        on_events: EventSink,
        clock: Clock,
        options: SocketOptions | None = None,
        recorder: Recorder | None = None,
        on_status: Callable[[ConnectionStatus], None] | None = None,
        rng: random.Random | None = None,
        handshake: Callable[[float], Handshake] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        on_live: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.account = account
        self.url = url
        self.status = ConnectionStatus()
        self._handshake = handshake or (lambda _now: Handshake(url))
        self._prepare = prepare
        self._on_live = on_live
        self._session_factory = session_factory
        self._on_events = on_events
        self._clock = clock
        self._options = options or SocketOptions()
        self._recorder = recorder
        self._on_status = on_status
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._ws: Socket | None = None
        self._session: TradeSession | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"TradeConnection(account={self.account!r}, url={self.url!r})"

    @property
    def live(self) -> bool:
        """True while commands may go out: authenticated on an open socket, subscribed
        or with position and balance data flowing (:attr:`TradeSession.actionable`)."""
        return self._session is not None and self._session.actionable

    async def send(self, frame: str) -> float:
        """Write a command frame now; return the time it was written.

        Raises ``ConnectionError`` when the socket is not live: the caller decides
        (an action whose command could not be written is not "sent").
        """
        ws, session = self._ws, self._session
        if ws is None or session is None or not session.actionable:
            msg = f"account {self.account!r} is not connected"
            raise ConnectionError(msg)
        now = self._clock.now()
        session.send(frame, now)
        await self._flush(ws, session)
        return now

    def send_nowait(self, frame: str) -> float:
        """Queue ``frame`` on the session and schedule the write; return the time."""
        ws, session = self._ws, self._session
        if ws is None or session is None or not session.actionable:
            msg = f"account {self.account!r} is not connected"
            raise ConnectionError(msg)
        now = self._clock.now()
        session.send(frame, now)
        task = asyncio.get_running_loop().create_task(self._flush(ws, session))
        task.add_done_callback(_log_task_error)
        return now

    async def stop(self) -> None:
        """Close the socket and end :meth:`run`."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        """Connect, read, and reconnect until :meth:`stop`; never raises on network errors."""
        delays = backoff_mod.backoff_delays(
            initial=self._options.backoff_initial, cap=self._options.backoff_cap, rng=self._rng
        )
        first = True
        while not self._stopping.is_set():
            if not first:
                self.status.reconnects += 1
            first = False
            reached_live = False
            try:
                reached_live = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except UpgradeRefused as exc:
                code = exc.status
                self.status.last_error = f"upgrade refused: HTTP {code}"
                # 401/403 on the upgrade: the gateway refused the credentials (§1).
                self.status.auth_rejected = code in (401, 403)
                log.warning("account %s: %s", self.account, self.status.last_error)
            except Exception as exc:
                verdict = classify_failure(exc)
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                if verdict == "fatal":
                    log.exception("account %s: unexpected error in connection loop", self.account)
                else:
                    log.warning(
                        "account %s: connection failed: %s", self.account, self.status.last_error
                    )
            finally:
                self._set_disconnected()
            if self._stopping.is_set():
                break
            if self.status.auth_rejected:
                delay = self._options.auth_retry_interval
            else:
                if reached_live:
                    delays = backoff_mod.backoff_delays(
                        initial=self._options.backoff_initial,
                        cap=self._options.backoff_cap,
                        rng=self._rng,
                    )
                delay = next(delays)
            self.status.next_attempt_in = delay
            self._notify_status()
            await wait_until_set(self._stopping, delay)

    async def _connect_once(self) -> bool:
        """Run one connection to its end; return whether it reached LIVE."""
        opts = self._options
        reached_live = False
        if self._prepare is not None:
            await self._prepare()
        request = self._handshake(self._clock.now())
        async with open_socket(request.url, opts, request.headers) as ws:
            session = self._session_factory()
            self._ws, self._session = ws, session
            self.status.connected = True
            self.status.connects += 1
            self.status.auth_rejected = False
            self._notify_status()
            session.connection_made(self._clock.now())
            await self._flush(ws, session)
            # Once LIVE, the subscription status of the session no longer changes: the
            # per-frame comparison below stops (most frames of a connection's life).
            subscriptions_settled = False
            now_of = self._clock.now
            recorder = self._recorder
            async for message in ws:
                now = now_of()
                if recorder is not None:
                    recorder.write(self.account, "trade", message, now)
                session.receive_text(message, now)
                events = session.events_received()
                # Command correlation is read from the events themselves (order ids, the
                # ErrorReply's incoming_message); drain the session's own bookkeeping so it
                # stays bounded for the life of the connection.
                session.resolutions_received()
                for expired in session.expired_commands():
                    log.info(
                        "account %s: no reply to %s within %.0f s",
                        self.account,
                        expired.kind,
                        session.pending_timeout,
                    )
                if not self.status.authenticated and session.actionable:
                    self.status.authenticated = True
                    reached_live = True
                    self.status.last_error = ""
                    self._notify_status()
                    for frame in self._on_live() if self._on_live is not None else ():
                        session.send(frame, now)
                if not subscriptions_settled:
                    self._subscriptions_changed(session)
                    subscriptions_settled = session.state is SessionState.LIVE
                out: Sequence[str] = ()
                if events:
                    out = self._on_events(events, now)
                for frame in out:
                    session.send(frame, now)
                if session.has_data_to_send:  # most frames send nothing
                    await self._flush(ws, session)
                if session.state is SessionState.AUTH_REJECTED:
                    self.status.auth_rejected = True
                    self.status.last_error = "authentication rejected by the exchange"
                    log.error(
                        "account %s: authentication rejected; retrying in %.0f s",
                        self.account,
                        opts.auth_retry_interval,
                    )
                    await ws.close()
                    break
        return reached_live

    def _subscriptions_changed(self, session: TradeSession) -> None:
        """Bring the status's unconfirmed channels and resubscribe count to the
        session's; log and notify when they changed."""
        unconfirmed = session.unconfirmed_channels
        resubscribes = sum(session.resubscribes.values())
        if (unconfirmed, resubscribes) != (
            self.status.unconfirmed_channels,
            self.status.resubscribes,
        ):
            if unconfirmed:
                log.warning(
                    "account %s: subscription not confirmed: %s (subscribed again %d x)",
                    self.account,
                    ", ".join(unconfirmed),
                    resubscribes,
                )
            self.status.unconfirmed_channels = unconfirmed
            self.status.resubscribes = resubscribes
            self._notify_status()

    async def _flush(self, ws: Socket, session: TradeSession) -> None:
        for frame in session.data_to_send():
            await ws.send(frame)

    def _set_disconnected(self) -> None:
        if self._session is not None:
            self._session.connection_lost()
        self._ws = None
        self._session = None
        self.status.connected = False
        self.status.authenticated = False
        self.status.unconfirmed_channels = ()
        self.status.resubscribes = 0
        self._notify_status()

    def _notify_status(self) -> None:
        if self._on_status is not None:
            self._on_status(self.status)


class MarketDataConnection:
    """Keeps the market-data WebSocket alive and subscribed to ``mark_price`` of every
    symbol asked for through :meth:`watch` (symbols are learned from position pulses).
    """

    def __init__(
        self,
        *,
        url: str,
        on_events: Callable[[Sequence[Event], float], None],
        clock: Clock,
        options: SocketOptions | None = None,
        recorder: Recorder | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.status = ConnectionStatus()
        self._on_events = on_events
        self._clock = clock
        self._options = options or SocketOptions()
        self._recorder = recorder
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._symbols: set[str] = set()
        self._subscribed: set[str] = set()
        self._ws: Socket | None = None
        self._stopping = asyncio.Event()

    @property
    def symbols(self) -> frozenset[str]:
        """Symbols whose mark prices are wanted."""
        return frozenset(self._symbols)

    def watch(self, symbols: set[str] | frozenset[str]) -> None:
        """Ask for mark prices of ``symbols`` too (idempotent; subscribes at once if connected)."""
        new = set(symbols) - self._symbols
        if not new:
            return
        self._symbols |= new
        ws = self._ws
        if ws is not None:
            task = asyncio.get_running_loop().create_task(self._subscribe(ws, sorted(new)))
            task.add_done_callback(_log_task_error)

    async def stop(self) -> None:
        """Close the socket and end :meth:`run`."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        """Connect, subscribe, read, reconnect until :meth:`stop`."""
        opts = self._options
        delays = backoff_mod.backoff_delays(
            initial=opts.backoff_initial, cap=opts.backoff_cap, rng=self._rng
        )
        first = True
        while not self._stopping.is_set():
            if not first:
                self.status.reconnects += 1
            first = False
            try:
                async with open_socket(self.url, opts) as ws:
                    self._ws = ws
                    self._subscribed = set()
                    self.status.connected = True
                    self.status.connects += 1
                    if self._symbols:
                        await self._subscribe(ws, sorted(self._symbols))
                    delays = backoff_mod.backoff_delays(
                        initial=opts.backoff_initial, cap=opts.backoff_cap, rng=self._rng
                    )
                    async for message in ws:
                        now = self._clock.now()
                        if self._recorder is not None:
                            self._recorder.write("", "mds", message, now)
                        events = decode_mds(message, now)
                        if events:
                            self._on_events(events, now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                if classify_failure(exc) == "fatal":
                    log.exception("market data: unexpected error in connection loop")
                else:
                    log.warning("market data: connection failed: %s", self.status.last_error)
            finally:
                self._ws = None
                self.status.connected = False
            if self._stopping.is_set():
                break
            delay = next(delays)
            await wait_until_set(self._stopping, delay)

    async def _subscribe(self, ws: Socket, symbols: list[str]) -> None:
        todo = [s for s in symbols if s not in self._subscribed]
        if not todo:
            return
        self._subscribed |= set(todo)
        with contextlib.suppress(websockets.ConnectionClosed, ConnectionError):
            await ws.send(commands.mds_subscribe("mark_price", todo))


def _log_task_error(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, websockets.ConnectionClosed | ConnectionError):
        log.warning("background send failed: %s: %s", type(exc).__name__, exc)
