"""The action book's offline shell: what ``riskwatch replay`` and ``riskwatch test`` run.

The same :class:`~riskwatch.actions.book.ActionBook` as the daemon, over the offline
account cores, with the audit log in memory
(:class:`~riskwatch.actions.memlog.MemoryAuditLog`) and no exchange: the frames the book
releases are kept (and counted as written at that moment), and the exchange's answers
are whatever frames the caller feeds in next — a recording's, or a test's. Trade frames
go through the same sans-I/O session as the daemon's (:meth:`OfflineActions.receive`),
which the released frames are handed to as well, so that replies are correlated with
commands exactly as they are live (riskwatch/qfex/session.py). The end of a connection
is told with :meth:`disconnected` (a recording's disconnect line); a new
``authenticated`` frame in the stream while the old connection is still up is a new
connection all the same: the old one's commands lose their replies.

The caller drives it in the daemon's order: :meth:`receive` for each trade frame (which
also marks the account connected), :meth:`decided` for every decision, :meth:`events`
for every trade frame's events after its core took them, :meth:`tick` with the rule
ticks. Each of them releases what may leave at that time, as the daemon's executor does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from riskwatch.actions.book import ActionBook
from riskwatch.actions.memlog import MemoryAuditLog
from riskwatch.actions.model import ActionEvent
from riskwatch.actions.outputs import IntentRecord, OutgoingFrame, Output
from riskwatch.config import ActionsConfig
from riskwatch.model import Authenticated, Event
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.session import SessionState, TradeSession
from riskwatch.rules.engine import Decision
from riskwatch.state.account import AccountSnapshot

__all__ = ["SHOWN", "OfflineActions"]

SHOWN = frozenset({"sent", "dry_run", "refused", "confirmed", "failed", "breaker_open"})
"""Book events printed in a timeline (an ``escalation`` repeats its ``failed``)."""


class _CoresView:
    __slots__ = ("cores",)

    def __init__(self, cores: Mapping[str, AccountCore]) -> None:
        self.cores = cores

    def snapshot(self, account: str) -> AccountSnapshot:
        return self.cores[account].snapshot

    def stale(self, account: str, now: float) -> bool:
        return self.cores[account].is_stale(now)


@dataclass(slots=True)
class OfflineActions:
    """The book, its audit log in memory, and what it did (module docstring)."""

    config: ActionsConfig
    cores: Mapping[str, AccountCore]
    log: MemoryAuditLog = field(default_factory=MemoryAuditLog)
    events_seen: list[ActionEvent] = field(default_factory=list)
    frames: list[tuple[float, OutgoingFrame]] = field(default_factory=list)
    book: ActionBook = field(init=False)
    _up: set[str] = field(default_factory=set)
    _sessions: dict[str, TradeSession] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.book = ActionBook(self.config, _CoresView(self.cores))

    def receive(self, account: str, data: str | bytes, now: float) -> list[Event]:
        """Decode one trade frame of ``account`` through its session; return its events."""
        session = self._sessions.get(account)
        if session is None or session.state in (SessionState.CLOSED, SessionState.AUTH_REJECTED):
            session = self._open(account, now)
        was_authenticated = session.state is not SessionState.AUTHENTICATING
        session.receive_text(data, now)
        events = session.events_received()
        if was_authenticated and any(isinstance(e, Authenticated) and e.ok for e in events):
            # A reconnect in the stream: the previous connection and its commands are gone.
            session.connection_lost()
            self._apply(self.book.on_status(account, False, now), now)
            self._up.discard(account)
            session = self._open(account, now)
            session.receive_text(data, now)
            events = session.events_received()
        session.data_to_send()
        session.resolutions_received()
        session.expired_commands()
        self.connected(account, now)
        return events

    def _open(self, account: str, now: float) -> TradeSession:
        # Offline: nothing is signed or sent, the session only correlates.
        session = TradeSession(public_key="offline", secret_key="offline")  # noqa: S106
        session.connection_made(now)
        self._sessions[account] = session
        return session

    def connected(self, account: str, now: float) -> None:
        """The account's link is up (its first trade frame), once."""
        if account in self._up:
            return
        self._up.add(account)
        self.book.seed_window(account, [], now)
        self._apply(self.book.on_status(account, True, now), now)

    def disconnected(self, account: str, now: float) -> None:
        """The account's link went down: its session's commands lose their replies, and
        the book holds its frames until the next connection (its first frame)."""
        session = self._sessions.get(account)
        if session is not None:
            session.connection_lost()
        self._up.discard(account)
        self._apply(self.book.on_status(account, False, now), now)
        self._release(now)

    def decided(self, decision: Decision | None, now: float) -> None:
        """Plan the intents of a decision, then release."""
        if decision is not None:
            for intent in decision.intents:
                if intent.account not in self._up:
                    self.book.seed_window(intent.account, [], now)
                self._apply(self.book.on_intent(intent, now), now)
        self._release(now)

    def events(self, account: str, events: Sequence[Event], now: float) -> None:
        """One trade frame's events, after the account's core took them."""
        self._apply(self.book.on_events(account, events, now), now)
        self._release(now)

    def tick(self, now: float) -> None:
        """Timeouts, backoffs and expiries at ``now``."""
        self._apply(self.book.tick(now), now)
        self._release(now)

    def _release(self, now: float) -> None:
        self._apply(self.book.release(now), now)

    def _apply(self, out: Output, now: float) -> None:
        self.events_seen.extend(out.events)
        skipped: set[str] = set()
        for rec in out.records:
            if rec.action_id in skipped:
                continue
            if not self.log.write(rec) and isinstance(rec, IntentRecord):
                skipped.add(rec.action_id)
                more = self.book.write_failed(rec, "already recorded", now, duplicate=True)
                self._apply(more, now)
        self.frames.extend((now, f) for f in out.frames)
        for f in out.frames:
            session = self._sessions.get(f.account)
            if session is not None and session.state in (
                SessionState.SUBSCRIBING,
                SessionState.LIVE,
            ):
                session.send(f.frame, now)
                session.data_to_send()
