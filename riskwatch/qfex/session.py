"""Sans-I/O QFEX sessions: frames in, events and frames out, no sockets, no clock.

Modelled on websockets' ``protocol.py``: the asyncio shell (``qfex/client.py``) owns
the socket and calls, for each connection, a fresh session::

    session.connection_made(now)          # queues the auth frame
    send(session.data_to_send())          # write what the session queued
    for each text frame:
        session.receive_text(frame, now)  # decode + advance the state machine
        handle(session.events_received())
        send(session.data_to_send())
    session.connection_lost()             # on close, whatever the reason

:class:`TradeSession` states (docs/protocol.md §2–§4)::

    CONNECTING ─connection_made─▶ AUTHENTICATING ─Authenticated(ok)─▶ SUBSCRIBING
    SUBSCRIBING ─every channel confirmed (or failed)─▶ LIVE
    AUTHENTICATING ─Authenticated(not ok) | err─▶ AUTH_REJECTED   (shell closes, slow retry)
    any ─connection_lost─▶ CLOSED

On auth success one ``subscribe`` frame per channel is queued (docs/design.md#precise-points). A
channel counts as confirmed on ``{"subscribed": ch}``, or on the first data event of
that channel (a position pulse implies ``positions``), since confirmations of the
live server are not documented for every case (docs/protocol.md §4, §16 unknowns).
A channel still unconfirmed ``subscribe_timeout`` seconds after its subscribe is
subscribed again (at most ``subscribe_retries`` times) and listed by
:attr:`TradeSession.unconfirmed_channels`, which the daemon reports. Commands are
allowed (:attr:`TradeSession.actionable`) once LIVE, or once authenticated with
``positions`` and ``balances`` data flowing: a missing confirmation never locks
protection out (docs/protocol.md §4).

Command correlation follows the official CLI (docs/protocol.md §3), in every form
the documentation allows, here and only here: every frame sent is kept in a FIFO of
pending commands until a reply resolves it —

- ``order_response`` by ``client_order_id``; one whose ``client_order_id`` is empty
  (the documented ACK example) by symbol: the oldest pending ``close_position`` of
  that symbol (the CLI's oldest-pending rule); ``cancel_order``/``get_order`` by the
  id they name. A non-final status (``ACK``, ``MODIFIED``, a partial ``FILLED``) leaves
  the command pending, so that the final one finds it too.
- ``ack``/``ack_response`` and ``err``: by the echoed ``incoming_message`` compared
  with the request after normalising both (:func:`normalised_request`: key order,
  ``null`` members, ``10`` vs ``10.0``), else the oldest pending command of the echoed
  type; an ``ack`` that echoes nothing resolves the oldest command that expects an
  ack, an ``err`` that echoes nothing the *oldest* pending command (CLI failPending).
- ``all_orders_response`` the oldest ``get_user_orders``, the other replies their
  command by name, ``subscribed`` its channel.

The session then emits the reply *correlated*: an ``order_response`` that matched by
symbol carries the command's ``client_order_id``, and an ``ack`` or ``err`` carries in
``incoming_message`` the command's frame exactly as it was sent (a dict) — downstream
code (the action book) reads which of its commands a reply answers from those fields
and never correlates again. Commands unanswered after ``pending_timeout`` seconds are
dropped from the FIFO (so that a later ``err`` is not pinned on them) and reported by
:meth:`TradeSession.expired_commands`; their outcome is unknown, not failed.

The session never sends ``cancel_on_disconnect`` (docs/protocol.md §16.10): :meth:`send`
refuses it.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from riskwatch.model import (
    Ack,
    Authenticated,
    BalanceUpdate,
    ErrorReply,
    Event,
    Fill,
    OpenOrders,
    OrderUpdate,
    OtherReply,
    PositionUpdate,
    Subscribed,
)
from riskwatch.qfex import commands
from riskwatch.qfex.auth import new_nonce
from riskwatch.qfex.schemas import decode_mds, decode_trade
from riskwatch.secret import Secret

__all__ = [
    "DEFAULT_CHANNELS",
    "MdsSession",
    "PendingCommand",
    "Resolution",
    "SessionState",
    "TradeSession",
    "normalised_request",
]

DEFAULT_CHANNELS: Final = ("positions", "balances", "order_responses", "fills")
"""Trade channels riskwatch subscribes to unless told otherwise."""

DEFAULT_PENDING_TIMEOUT: Final = 10.0
"""Seconds a sent command waits for its reply before leaving the FIFO (CLI: 10 s)."""

DEFAULT_SUBSCRIBE_RETRIES: Final = 3
"""How many times an unconfirmed channel is subscribed again."""

_PULSED: Final = frozenset({"positions", "balances"})
"""Channels whose data must flow before commands are allowed without full confirmation."""

# Commands whose reply is an ack (TRADE-AA AckResponse; CLI trade_ws.go expectations).
_ACKED: Final = frozenset(
    {
        "cancel_all_orders",
        "set_user_leverage",
        "cancel_stop_order",
        "modify_stop_order",
        "cancel_on_disconnect",
    }
)
# Commands answered by a named reply key (docs/protocol.md §3, §16.8, §16.9).
_REPLY_OF: Final = {
    "user_leverage_response": "get_user_leverage",
    "available_leverage_levels_response": "get_available_leverage_levels",
    "user_trades_response": "get_user_trades",
    "user_trades": "get_user_trades",
    "twap_response": "add_twap",
    "stop_order_response": "cancel_stop_order",
}
# A data event implies its channel is subscribed.
_CHANNEL_OF: Final[dict[type[Any], str]] = {
    PositionUpdate: "positions",
    BalanceUpdate: "balances",
    OrderUpdate: "order_responses",
    Fill: "fills",
}


_PULSES: Final = frozenset({PositionUpdate, BalanceUpdate})
"""Events that only a SUBSCRIBING session has anything to do with (_CHANNEL_OF)."""

_NOT_FINAL: Final = frozenset({"ACK", "MODIFIED"})
"""``order_response`` statuses after which more follow for the same order (§7)."""


def normalised_request(value: Any) -> Any:
    """A request as the exchange may echo it, for comparison: keys sorted, ``null``
    members dropped, numbers as floats (``10`` and ``10.0`` compare equal)."""
    if isinstance(value, dict):
        return {k: normalised_request(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list | tuple):
        return [normalised_request(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _final(event: OrderUpdate) -> bool:
    if event.status in _NOT_FINAL:
        return False
    return not (event.status == "FILLED" and event.quantity_remaining > 1e-12)


class SessionState(enum.Enum):
    """Where a session is in its connection's life."""

    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    LIVE = "live"
    AUTH_REJECTED = "auth_rejected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PendingCommand:
    """A sent command awaiting its reply.

    ``frame`` is the decoded JSON we sent (it never holds a secret: HMAC auth carries
    only the signature; a JWT auth frame's token is replaced by ``"<redacted>"``).
    """

    kind: str
    frame: dict[str, Any]
    client_order_id: str | None
    sent_at: float


@dataclass(frozen=True, slots=True)
class Resolution:
    """A pending command and the reply that resolved it (``ok`` False for an err)."""

    command: PendingCommand
    reply: Event
    ok: bool


def _parse_frame(frame_text: str) -> dict[str, Any]:
    try:
        frame = json.loads(frame_text)
    except ValueError:
        msg = f"frame is not JSON: {frame_text[:80]!r}"
        raise ValueError(msg) from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        msg = f"frame is not a command object with a type: {frame_text[:80]!r}"
        raise ValueError(msg)
    return frame


def _params(frame: dict[str, Any]) -> dict[str, Any]:
    params = frame.get("params")
    return params if isinstance(params, dict) else {}


class TradeSession:
    """The trade-gateway session of one account (see the module docstring).

    Give either ``public_key`` and ``secret_key`` (HMAC auth) or ``jwt``; ``account_id``
    selects a subaccount. ``channels`` are subscribed in order, one frame each.
    ``nonce_factory`` makes the HMAC nonce (injectable for tests). Raises ValueError on
    missing or conflicting credentials or an unknown channel.
    """

    def __init__(
        self,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        jwt: str | None = None,
        account_id: str | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        pending_timeout: float = DEFAULT_PENDING_TIMEOUT,
        nonce_factory: Callable[[], str] = new_nonce,
        subscribe_timeout: float = DEFAULT_PENDING_TIMEOUT,
        subscribe_retries: int = DEFAULT_SUBSCRIBE_RETRIES,
    ) -> None:
        hmac_given = public_key is not None or secret_key is not None
        if hmac_given and jwt is not None:
            msg = "give either public_key/secret_key or jwt, not both"
            raise ValueError(msg)
        if jwt is None and (not public_key or not secret_key):
            msg = "public_key and secret_key are both required for hmac auth"
            raise ValueError(msg)
        for channel in channels:
            commands.subscribe(channel)  # raises ValueError on an unknown channel
        if len(set(channels)) != len(channels):
            msg = f"channels listed twice: {list(channels)}"
            raise ValueError(msg)
        self._public_key = public_key
        self._secret = Secret(secret_key) if secret_key is not None else None
        self._jwt = Secret(jwt) if jwt is not None else None
        self.account_id = account_id
        self.channels: tuple[str, ...] = tuple(channels)
        self.pending_timeout = pending_timeout
        self._nonce_factory = nonce_factory
        self.state = SessionState.CONNECTING
        self._events: list[Event] = []
        self._out: list[str] = []
        self._pending: deque[PendingCommand] = deque()
        self._expired: list[PendingCommand] = []
        self._resolutions: list[Resolution] = []
        self._working: deque[PendingCommand] = deque(maxlen=64)
        self._awaiting: set[str] = set()
        self.failed_channels: set[str] = set()
        self.subscribe_timeout = subscribe_timeout
        self.subscribe_retries = subscribe_retries
        self._subscribed_at: dict[str, float] = {}
        self._first_subscribed_at: dict[str, float] = {}
        self.resubscribes: dict[str, int] = {}
        self._data_seen: set[str] = set()
        self._now = 0.0
        # Position frames by their text, each with the last event decoded or re-stamped
        # from it, and each symbol's text: one entry per symbol (receive_text).
        self._pulse_by_text: dict[str | bytes, PositionUpdate] = {}
        self._pulse_text_of: dict[str, str | bytes] = {}

    def __repr__(self) -> str:
        auth = "jwt" if self._jwt is not None else f"hmac public_key={self._public_key!r}"
        return (
            f"TradeSession(state={self.state.name}, auth={auth}, "
            f"account_id={self.account_id!r}, channels={list(self.channels)})"
        )

    # --- inputs ---------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        """The socket is open: queue the auth frame (docs/protocol.md §2.1: within 60 s)."""
        if self.state is not SessionState.CONNECTING:
            msg = f"connection_made in state {self.state.name}"
            raise RuntimeError(msg)
        if self._jwt is not None:
            frame = commands.auth_jwt(self._jwt.reveal(), self.account_id)
        elif self._public_key is None or self._secret is None:  # excluded by __init__
            msg = "session has no credentials"
            raise RuntimeError(msg)
        else:
            frame = commands.auth_hmac(
                self._public_key, self._secret.reveal(), int(now), self._nonce_factory(),
                self.account_id,
            )  # fmt: skip
        self.state = SessionState.AUTHENTICATING
        self._queue(frame, now)

    def receive_text(self, data: str | bytes, now: float) -> None:
        """Decode one received frame, update the state and queue events (never raises).

        Once LIVE, a frame with the same text as its symbol's last position frame is not
        decoded again: its event is that frame's, received at ``now``. Decoding is a
        function of the text alone, and a LIVE session passes pulses through unchanged
        (:meth:`_handle`), so the events are those of a full decode. A quiet position
        sends the same text at every pulse; a decode cost about a sixth of a frame
        (docs/performance.md, "Repeated position frames"). One text is kept per symbol.
        """
        if self.state is SessionState.CLOSED:
            return
        if self._pending:  # (the calls skipped cost a tenth of a µs each per frame)
            self._expire(now)
        if self.state is SessionState.LIVE:
            repeated = self._pulse_by_text.get(data)
            if repeated is not None:
                pulse = msgspec.structs.replace(repeated, received_at=now)
                self._pulse_by_text[data] = pulse  # the event the state now holds, shared
                self._events.append(pulse)
                if now > self._now:
                    self._now = now
                return
            events = decode_trade(data, now)
            if len(events) == 1 and type(events[0]) is PositionUpdate:
                self._keep_pulse(data, events[0])
        else:
            events = decode_trade(data, now)
        for event in events:
            self._events.append(self._handle(event))
        if self.state is SessionState.SUBSCRIBING:
            self._retry_subscriptions(now)
        elif now > self._now:
            self._now = now

    def _keep_pulse(self, data: str | bytes, event: PositionUpdate) -> None:
        """Keep ``data`` as the text of ``event.symbol``'s last position frame."""
        symbol = event.symbol
        old = self._pulse_text_of.get(symbol)
        if old is not None:
            del self._pulse_by_text[old]
        self._pulse_text_of[symbol] = data
        self._pulse_by_text[data] = event

    def send(self, frame_text: str, now: float) -> None:
        """Queue a command frame (from :mod:`riskwatch.qfex.commands`) for sending.

        Allowed once authenticated (SUBSCRIBING or LIVE; the asyncio shell further
        waits for :attr:`actionable`). Raises RuntimeError in other states,
        ValueError for a frame that is not a command object or that is
        ``cancel_on_disconnect`` (never sent by riskwatch, docs/protocol.md §16.10).
        """
        if self.state not in (SessionState.SUBSCRIBING, SessionState.LIVE):
            msg = f"cannot send a command in state {self.state.name}"
            raise RuntimeError(msg)
        frame = _parse_frame(frame_text)
        if frame["type"] == "cancel_on_disconnect":
            msg = "cancel_on_disconnect is never sent: it may cancel every order of the account"
            raise ValueError(msg)
        self._expire(now)
        self._queue(frame_text, now, frame)

    def connection_lost(self) -> None:
        """The socket is gone: every pending command's outcome is now unknown."""
        self.state = SessionState.CLOSED
        self._expired.extend(self._pending)
        self._pending.clear()
        self._awaiting.clear()

    # --- outputs --------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        """Return and forget the events decoded since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        """Return and forget the frames to write, in order."""
        out, self._out = self._out, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return frames."""
        return bool(self._out)

    def resolutions_received(self) -> list[Resolution]:
        """Return and forget the (command, reply) pairs matched since the last call."""
        out, self._resolutions = self._resolutions, []
        return out

    def expired_commands(self) -> list[PendingCommand]:
        """Return and forget commands that timed out or were cut by connection_lost."""
        out, self._expired = self._expired, []
        return out

    @property
    def pending(self) -> tuple[PendingCommand, ...]:
        """Commands sent and not yet answered, oldest first."""
        return tuple(self._pending)

    @property
    def actionable(self) -> bool:
        """True when protective commands may go out: LIVE, or authenticated with
        ``positions`` and ``balances`` data flowing (docs/protocol.md §4)."""
        if self.state is SessionState.LIVE:
            return True
        return self.state is SessionState.SUBSCRIBING and _PULSED <= self._data_seen

    @property
    def unconfirmed_channels(self) -> tuple[str, ...]:
        """Channels neither confirmed nor seen in data ``subscribe_timeout`` seconds after
        their first subscribe (as of the last frame received), in subscription order."""
        if not self._awaiting:  # every channel confirmed: the case of every frame once LIVE
            return ()
        late = self._now - self.subscribe_timeout
        return tuple(
            ch
            for ch in self.channels
            if ch in self._awaiting and self._first_subscribed_at.get(ch, self._now) <= late
        )

    # --- internals ------------------------------------------------------------------

    def _queue(self, frame_text: str, now: float, frame: dict[str, Any] | None = None) -> None:
        parsed = frame if frame is not None else _parse_frame(frame_text)
        params = _params(parsed)
        if parsed["type"] == "auth" and "jwt" in params:
            parsed = {**parsed, "params": {**params, "jwt": "<redacted>"}}
        cid = params.get("client_order_id")
        self._pending.append(
            PendingCommand(
                kind=parsed["type"],
                frame=parsed,
                client_order_id=cid if isinstance(cid, str) else None,
                sent_at=now,
            )
        )
        self._out.append(frame_text)

    def _expire(self, now: float) -> None:
        limit = now - self.pending_timeout
        while self._pending and self._pending[0].sent_at < limit:
            self._expired.append(self._pending.popleft())

    def _resolve(self, match: Callable[[PendingCommand], bool], reply: Event, ok: bool) -> bool:
        for cmd in self._pending:
            if match(cmd):
                self._pending.remove(cmd)
                self._resolutions.append(Resolution(command=cmd, reply=reply, ok=ok))
                return True
        return False

    def _handle(self, event: Event) -> Event:
        """Advance state and correlation for one event; return the event to emit."""
        if type(event) in _PULSES and self.state is SessionState.LIVE:
            # The pulses, most of the traffic, change no correlation; once LIVE, no
            # channel state either: nothing below applies to them.
            return event
        emitted: Event = event
        if isinstance(event, Authenticated):
            self._on_auth(event)
        elif isinstance(event, Subscribed):
            kind = "subscribe" if event.subscribed else "unsubscribe"
            self._resolve(
                lambda c: c.kind == kind and _params(c.frame).get("channels") == [event.channel],
                event,
                ok=True,
            )
            if event.subscribed:
                self._channel_done(event.channel)
        elif isinstance(event, ErrorReply):
            return self._on_error(event)
        elif isinstance(event, OrderUpdate):
            emitted = self._on_order(event)
        elif isinstance(event, Ack):
            emitted = self._on_ack(event)
        elif isinstance(event, OpenOrders):
            self._resolve(lambda c: c.kind == "get_user_orders", event, ok=True)
        elif isinstance(event, OtherReply):
            wanted = _REPLY_OF.get(event.name)
            if wanted is not None:
                self._resolve(lambda c: c.kind == wanted, event, ok=True)
        channel = _CHANNEL_OF.get(type(event))
        if channel is not None and self.state is SessionState.SUBSCRIBING:
            self._data_seen.add(channel)
            self._channel_done(channel)
        return emitted

    def _on_auth(self, event: Authenticated) -> None:
        self._resolve(lambda c: c.kind == "auth", event, ok=event.ok)
        if not event.ok:
            if self.state is not SessionState.CLOSED:
                self.state = SessionState.AUTH_REJECTED
            return
        if self.state is SessionState.AUTHENTICATING:
            self._start_subscribing(event.received_at)

    def _start_subscribing(self, now: float) -> None:
        self.state = SessionState.SUBSCRIBING
        self._awaiting = set(self.channels)
        for channel in self.channels:
            self._subscribed_at[channel] = now
            self._first_subscribed_at[channel] = now
            self._queue(commands.subscribe(channel), now)
        if not self._awaiting:
            self.state = SessionState.LIVE

    def _retry_subscriptions(self, now: float) -> None:
        """Subscribe again to channels whose confirmation is overdue (bounded)."""
        self._now = max(self._now, now)
        if self.state is not SessionState.SUBSCRIBING:
            return
        for channel in self.channels:
            if channel not in self._awaiting:
                continue
            if now - self._subscribed_at.get(channel, now) < self.subscribe_timeout:
                continue
            if self.resubscribes.get(channel, 0) >= self.subscribe_retries:
                continue
            self.resubscribes[channel] = self.resubscribes.get(channel, 0) + 1
            self._subscribed_at[channel] = now
            self._queue(commands.subscribe(channel), now)

    def _channel_done(self, channel: str) -> None:
        self._awaiting.discard(channel)
        if self.state is SessionState.SUBSCRIBING and not self._awaiting:
            self.state = SessionState.LIVE

    def _on_order(self, event: OrderUpdate) -> OrderUpdate:
        cid = event.client_order_id

        def by_id(c: PendingCommand) -> bool:
            if cid and c.client_order_id == cid:
                return True
            if c.kind in ("cancel_order", "get_order"):
                params = _params(c.frame)
                id_type = params.get("cancel_order_id_type", "order_id")
                wanted = cid if id_type == "client_order_id" else event.order_id
                return bool(wanted) and params.get("order_id") == wanted
            return False

        def close_of(c: PendingCommand) -> bool:
            return c.kind == "close_position" and _params(c.frame).get("symbol") == event.symbol

        target = next((c for c in self._pending if by_id(c)), None)
        resolved = target is None
        if target is None and not cid:
            # The documented ACK echoes "" (docs/protocol.md §3): the oldest pending
            # close_position of the symbol, or the oldest whose order still works.
            target = next((c for c in self._pending if close_of(c)), None)
            resolved = target is None
            if target is None:
                target = next((c for c in self._working if close_of(c)), None)
            if target is not None and target.client_order_id:
                event = msgspec.structs.replace(event, client_order_id=target.client_order_id)
        if target is None:
            return event
        if not resolved:
            self._pending.remove(target)
            self._resolutions.append(Resolution(command=target, reply=event, ok=True))
            if target.kind == "close_position":
                self._working.append(target)
        if _final(event) and target in self._working:
            self._working.remove(target)
        return event

    def _echo_target(self, echoed: dict[str, Any] | None) -> PendingCommand | None:
        """The pending command an echo names: equal once normalised, else the oldest
        pending one of the echoed type."""
        if echoed is None:
            return None
        want = normalised_request(echoed)
        target = next((c for c in self._pending if normalised_request(c.frame) == want), None)
        if target is None and isinstance(echoed.get("type"), str):
            target = next((c for c in self._pending if c.kind == echoed["type"]), None)
        return target

    def _on_ack(self, event: Ack) -> Ack:
        target = self._echo_target(event.incoming_message)
        if target is None:
            target = next((c for c in self._pending if c.kind in _ACKED), None)
        if target is None:
            return event
        self._pending.remove(target)
        event = msgspec.structs.replace(event, incoming_message=target.frame)
        self._resolutions.append(Resolution(command=target, reply=event, ok=True))
        return event

    def _on_error(self, event: ErrorReply) -> Event:
        echoed = event.incoming_message
        target: PendingCommand | None = None
        if isinstance(echoed, dict):
            target = self._echo_target(echoed)
        elif self._pending:
            # CLI failPending: an err that echoes nothing belongs to the oldest request.
            target = self._pending[0]
        if target is not None:
            self._pending.remove(target)
            event = msgspec.structs.replace(event, incoming_message=target.frame)
            self._resolutions.append(Resolution(command=target, reply=event, ok=False))
        if self.state is SessionState.AUTHENTICATING:
            if event.error_code == "AlreadyAuthenticated":
                self._start_subscribing(event.received_at)
            else:
                # docs/protocol.md §2.1: an err before auth succeeds is an auth failure (3P).
                self.state = SessionState.AUTH_REJECTED
        elif target is not None and target.kind == "subscribe":
            for channel in _params(target.frame).get("channels", []):
                self.failed_channels.add(channel)
                self._channel_done(channel)
        return event


class MdsSession:
    """The market-data session: subscribes ``mark_price`` for symbols and decodes.

    No auth (docs/protocol.md §12). :meth:`connection_made` queues one ``mark_price``
    subscribe frame listing every watched symbol (one frame per channel); :meth:`watch`
    adds symbols and, when connected, queues a frame for just the new ones.
    Subscription confirmations are undocumented, so the session is LIVE once the
    frame is queued.
    """

    CHANNEL: Final = "mark_price"

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._symbols: list[str] = []
        for symbol in symbols:
            if symbol not in self._symbols:
                self._symbols.append(symbol)
        self.state = SessionState.CONNECTING
        self._events: list[Event] = []
        self._out: list[str] = []

    def __repr__(self) -> str:
        return f"MdsSession(state={self.state.name}, symbols={self._symbols})"

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols whose mark prices are wanted, in the order first asked for."""
        return tuple(self._symbols)

    def connection_made(self, now: float) -> None:
        """The socket is open: queue the subscribe frame (if any symbol is watched)."""
        self.state = SessionState.LIVE
        if self._symbols:
            self._out.append(commands.mds_subscribe(self.CHANNEL, self._symbols))

    def watch(self, symbols: Iterable[str]) -> None:
        """Add symbols; when connected, queue one subscribe frame for the new ones."""
        new = [s for s in dict.fromkeys(symbols) if s not in self._symbols]
        if not new:
            return
        self._symbols.extend(new)
        if self.state is SessionState.LIVE:
            self._out.append(commands.mds_subscribe(self.CHANNEL, new))

    def receive_text(self, data: str | bytes, now: float) -> None:
        """Decode one frame and queue its events (never raises)."""
        if self.state is SessionState.CLOSED:
            return
        self._events.extend(decode_mds(data, now))

    def events_received(self) -> list[Event]:
        """Return and forget the events decoded since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        """Return and forget the frames to write, in order."""
        out, self._out = self._out, []
        return out

    def connection_lost(self) -> None:
        """The socket is gone; a new session (or connection_made) resubscribes."""
        self.state = SessionState.CLOSED
