"""The action book (pure, sans-I/O): decisions, exchange events and ticks in; records,
frames and events out.

The book is the protective-action core of riskwatch. It owns, for every account, the
actions between the engine's decision and their final outcome: the plan
(:mod:`riskwatch.actions.plan`), the per-trip dedup, the circuit breaker, the mode and
the kill switch, the guards at the moment of sending, the flights (one per action,
through :class:`Phase`), confirmation by replies and pulses, retries with new client
ids and escalation. Replies reach it already correlated by the sans-I/O session
(riskwatch/qfex/session.py): an ``order_response`` carries the command's
``client_order_id``, an ``ack`` or ``err`` the command's frame in ``incoming_message``.
It never touches a socket, a file, a database or the clock:
every input carries ``now``, and every call returns an :class:`Output` — audit records
to write, events to publish, counts for ``riskwatch_actions_total`` — which the shell
(:mod:`riskwatch.actions.executor` in the daemon, :mod:`riskwatch.offline.replay` and
``riskwatch test`` offline) applies. Frames leave only through :meth:`ActionBook.release`.

The shell's contract (docs/actions.md):

1. Apply an :class:`Output` in this order: publish its events and counts, then write its
   records in order, then write its frames. A record that cannot be written is
   reported at once with :meth:`ActionBook.write_failed` (whose output is applied in
   turn); the other records of the same action in that output are then skipped.
2. After the records of every output so far are written (or reported), call
   :meth:`ActionBook.release`: it returns the frames that may leave now — every guard
   holds at that moment — and marks them written. The shell writes the frames first,
   then applies the rest of that output (the ``sent`` events and records).
3. Tell the book about the account's link (:meth:`on_status`), every trade frame's
   events after the account state took them (:meth:`on_events`) and the time
   (:meth:`tick`, a few times a second).

Account state is read through :class:`AccountView` (the daemon's account cores, or the
replay's): a read of memory, never I/O.

Guards at the moment of sending (:meth:`ActionBook.release`): a frame leaves only if the
mode is armed, the kill switch is off, the account is connected, its data is fresh and
the decision is younger than ``max_decision_age``. A frame held back because its
decision grew old (a disconnect, stale data) is decided again on the account's next
fresh pulse: if the pulse shows the effect already, the action is confirmed without
sending; a ``close_position`` or ``cancel_all_orders`` is sent with that pulse as its
decision; a ``reduce_position`` or ``set_leverage``, sized and checked against the old
state, fails ``DECISION_EXPIRED`` and escalates. :meth:`ActionBook.disarm` drops every
queued frame and records that in the audit log.

Storage faults (docs/actions.md, "When the audit log cannot be written"): when an
intent cannot be written, ``close_position`` (reduce-only) and ``cancel_all_orders``,
harmless to repeat, are still sent, the intent kept in memory only; ``reduce_position``
and ``set_leverage`` are not sent. Either way a critical escalation
``AUDIT_UNWRITABLE: audit log unwritable: …`` is published and counted.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any, Final, Protocol

from riskwatch.actions import confirm, model
from riskwatch.actions import plan as planner
from riskwatch.actions.flight import Flight, Phase
from riskwatch.actions.model import ActionEvent, ActionEventKind, PlannedCommand, Refusal
from riskwatch.actions.outputs import (
    IntentRecord,
    OutcomeRecord,
    OutgoingFrame,
    Output,
    Record,
    SentRecord,
)
from riskwatch.actions.window import HOUR, BreakerWindow, lineage_of
from riskwatch.config import ActionsConfig
from riskwatch.model import (
    Ack,
    BalanceUpdate,
    ErrorReply,
    Event,
    OpenOrders,
    OrderUpdate,
    OtherReply,
    PositionUpdate,
)
from riskwatch.qfex import commands
from riskwatch.qfex.session import normalised_request
from riskwatch.records import ActionRecord
from riskwatch.refdata.model import Refdata
from riskwatch.refdata.sizing import twap_working
from riskwatch.rules.engine import ActionIntent
from riskwatch.state.account import AccountSnapshot

__all__ = ["HARMLESS_TO_REPEAT", "AccountView", "ActionBook", "rebuild"]

HARMLESS_TO_REPEAT: Final = frozenset({"close_position", "cancel_all_orders"})
"""Actions sent even when their intent cannot be written (a repeat does no harm:
``close_position`` is reduce-only, a second cancel finds nothing to cancel)."""

_ACKED: Final = frozenset({"cancel_all_orders", "set_leverage"})
_TAKEN_MAX: Final = 100_000
_AUDIT_ALARM_EVERY: Final = 60.0
_STALE_RETRY: Final = 0.5


class AccountView(Protocol):
    """What the book reads of an account's state (memory only)."""

    def snapshot(self, account: str) -> AccountSnapshot:
        """The account's current state."""
        ...

    def stale(self, account: str, now: float) -> bool:
        """True when no fresh pulse backs the account's figures at ``now``."""
        ...


class _Recorded:
    """``(action, symbol)`` pairs of one trip, from the audit log and from memory."""

    __slots__ = ("key", "stored", "taken")

    def __init__(
        self, key: str, stored: Container[tuple[str, str | None]], taken: Container[str]
    ) -> None:
        self.key = key
        self.stored = stored
        self.taken = taken

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        action, symbol = item
        return item in self.stored or lineage_of(self.key, action, symbol) in self.taken


class ActionBook:
    """Every account's protective actions (see the module docstring).

    ``reply_timeout`` and ``confirm_timeout`` are seconds to wait for a reply, then for a
    pulse showing the effect; retries back off from ``backoff_initial`` doubling to
    ``backoff_cap``; ``max_decision_age`` bounds the age of a decision whose frame
    leaves (config ``actions.max_decision_age``).
    """

    def __init__(
        self,
        config: ActionsConfig,
        view: AccountView,
        *,
        kill_switch: bool = False,
        reply_timeout: float = 5.0,
        confirm_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_cap: float = 5.0,
        max_decision_age: float | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.refdata_of: Callable[[], Refdata | None] = lambda: None
        """Current reference data for planning (lots, minimum quantities, leverage levels)."""
        self.reply_timeout = reply_timeout
        self.confirm_timeout = confirm_timeout
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.max_decision_age = (
            max_decision_age if max_decision_age is not None else config.max_decision_age.seconds
        )
        self._mode: str = config.mode
        self._kill = config.kill_switch or kill_switch
        self._flights: dict[str, dict[str, Flight]] = {}
        self._queued: dict[str, Flight] = {}  # action_id → flight in Phase.QUEUED
        self._connected: dict[str, bool] = {}
        self._breaker_open: dict[str, bool] = {}
        self._windows: dict[str, BreakerWindow] = {}
        self._taken: OrderedDict[str, None] = OrderedDict()
        self._trips: OrderedDict[str, None] = OrderedDict()
        self._last_audit_alarm = float("-inf")

    # --- mode -----------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"armed"`` or ``"dry-run"`` (the kill switch is separate)."""
        return self._mode

    @property
    def kill_switch(self) -> bool:
        """True while every action is disarmed."""
        return self._kill

    @property
    def armed(self) -> bool:
        """True when actions are really sent: mode ``armed`` and the kill switch off."""
        return self._mode == "armed" and not self._kill

    @property
    def queued(self) -> bool:
        """True while a frame waits to leave (:meth:`release` has work)."""
        return bool(self._queued)

    def watching(self, account: str) -> bool:
        """True while ``account`` has an action in flight (:meth:`on_events` has work)."""
        return bool(self._flights.get(account))

    def arm(self) -> None:
        """Switch to ``armed`` and clear the kill switch (operator action)."""
        self._mode = "armed"
        self._kill = False

    def disarm(self, now: float, actor: str) -> Output:
        """Engage the kill switch: no new action, no further attempt, and every frame not
        yet written (queued, or waiting for its next attempt) is dropped — recorded
        ``failed`` with ``KILL_SWITCH`` in the audit log. Actions already written stay
        followed until their outcome is known."""
        self._kill = True
        out = Output()
        for flights in list(self._flights.values()):
            for f in list(flights.values()):
                if f.phase in (Phase.QUEUED, Phase.BACKOFF):
                    what = "queued frame" if f.phase is Phase.QUEUED else "next attempt"
                    self._fail(
                        f, now, model.KILL_SWITCH, f"{what} dropped by disarm ({actor})", out
                    )
        return out

    def flights(self) -> list[Flight]:
        """Every action in flight, account by account."""
        return [f for flights in self._flights.values() for f in flights.values()]

    # --- circuit breaker window -------------------------------------------------------

    def needs_window(self, account: str) -> bool:
        """True until :meth:`seed_window` gave the account's last hour of audit rows."""
        return account not in self._windows

    def seed_window(self, account: str, rows: Iterable[ActionRecord], now: float) -> None:
        """Load ``account``'s audit rows of the hour before ``now`` (any superset will do)."""
        self._windows[account] = BreakerWindow.seeded(rows, now)

    def _window(self, account: str) -> BreakerWindow:
        window = self._windows.get(account)
        if window is None:  # the shell seeds it first; an empty log otherwise
            window = self._windows[account] = BreakerWindow()
        return window

    def _count(
        self, trip_key: str, action: str, symbol: str | None, account: str, at: float, kind: str
    ) -> None:
        lineage = lineage_of(trip_key, action, symbol)
        self._taken[lineage] = None
        if len(self._taken) > _TAKEN_MAX:
            self._taken.popitem(last=False)
        if kind != "refused":
            self._window(account).add(lineage, at, "acted" if kind == "acted" else "dry_run")

    # --- decisions ------------------------------------------------------------------

    def seen(self, intent: ActionIntent) -> bool:
        """True when this book already planned ``intent``'s trip (the engine offers an
        intent once per trip; the daemon may hand it over twice, mid-evaluation and
        with the decision)."""
        return (
            planner.trip_key(intent.rule, intent.account, intent.symbol, intent.trip_id)
            in self._trips
        )

    def on_intent(
        self,
        intent: ActionIntent,
        now: float,
        recorded: Container[tuple[str, str | None]] = (),
    ) -> Output:
        """Plan one intent: refusals and dry runs are recorded and published; armed
        commands are recorded and queued (they leave through :meth:`release`).

        ``recorded``: ``(action, symbol)`` pairs the audit log already holds for this
        trip (an earlier life of the daemon took them). Pairs this book already planned
        are skipped too, so an intent handed over twice is planned once.
        """
        out = Output()
        account = intent.account
        key = planner.trip_key(intent.rule, account, intent.symbol, intent.trip_id)
        if key in self._trips:
            return out
        self._trips[key] = None
        if len(self._trips) > _TAKEN_MAX:
            self._trips.popitem(last=False)
        window = self._window(account)
        plan = planner.plan(
            intent,
            self.view.snapshot(account),
            stale=self.view.stale(account, now),
            kill_switch=self._kill,
            used=window.count(now - HOUR, dry_runs=not self.armed),
            max_per_hour=self.config.max_per_account_per_hour,
            recorded=_Recorded(key, recorded, self._taken),
            refdata=self.refdata_of(),
        )
        for refusal in plan.refusals:
            self._refuse(refusal, now, out)
        if plan.breaker_opened and not self._breaker_open.get(account):
            self._breaker_open[account] = True
            first = next(r for r in plan.refusals if r.code == model.CIRCUIT_BREAKER_OPEN)
            out.events.append(self._event_of_refusal("breaker_open", first, now))
        elif not plan.breaker_opened:
            self._breaker_open[account] = False
        reason_tail = f", {intent.trigger}"
        for cmd in plan.commands:
            reason = f"rule {cmd.rule} tripped (trip {cmd.trip_id}{reason_tail})"
            self._start(cmd, intent.at, now, reason, out)
        return out

    def _refuse(self, refusal: Refusal, now: float, out: Output) -> None:
        aid = planner.action_id(refusal.trip_key, refusal.action, refusal.symbol, 1)
        self._count(
            refusal.trip_key, refusal.action, refusal.symbol, refusal.account, now, "refused"
        )
        out.events.append(self._event_of_refusal("refused", refusal, now))
        out.counts.append((refusal.action, "refused"))
        reason = f"rule {refusal.rule} tripped (trip {refusal.trip_id})"
        out.records.append(IntentRecord(refusal, aid, 1, reason, self._mode, now))
        out.records.append(
            OutcomeRecord(aid, "refused", refusal.reason, now, refusal.account, refusal.rule)
        )

    def _start(
        self, cmd: PlannedCommand, trigger_at: float, now: float, reason: str, out: Output
    ) -> None:
        armed = self._mode == "armed"
        kind = "acted" if armed else "dry_run"
        self._count(cmd.trip_key, cmd.action, cmd.symbol, cmd.account, now, kind)
        if not armed:
            out.events.append(self._event("dry_run", cmd, now))
            out.counts.append((cmd.action, "dry_run"))
            out.records.append(
                IntentRecord(cmd, cmd.action_id, cmd.attempt, reason, self._mode, now)
            )
            out.records.append(
                OutcomeRecord(
                    cmd.action_id, "dry_run", "dry-run: not sent", now, cmd.account, cmd.rule
                )
            )
            return
        out.records.append(IntentRecord(cmd, cmd.action_id, cmd.attempt, reason, self._mode, now))
        flight = Flight(
            cmd,
            None,
            first_at=now,
            decided_at=trigger_at,
            trigger_at=trigger_at,
        )
        self._flights.setdefault(cmd.account, {})[_lineage(cmd)] = flight
        self._queue(flight)

    def _queue(self, f: Flight) -> None:
        f.phase = Phase.QUEUED
        f.held = ""
        self._queued[f.cmd.action_id] = f

    # --- the shell's reports ----------------------------------------------------------

    def write_failed(self, record: Record, error: str, now: float, *, duplicate: bool) -> Output:
        """A record could not be written: ``duplicate`` when the audit log already holds
        the attempt (an earlier life of the daemon took it), else a storage fault
        (``error`` says which). Applies the storage-fault policy (module docstring)."""
        out = Output()
        if not isinstance(record, IntentRecord):
            if not duplicate:
                self._audit_alarm(now, error, out, record.account, record.rule)
            return out
        what = record.cmd_or_refusal
        flight = self._flight_of(what.account, record.action_id)
        if duplicate:
            if flight is not None:
                if flight.cmd.attempt == 1:
                    # Already taken for this trip: never sent again.
                    self._drop(flight)
                else:
                    # A retry recorded by an earlier life of the daemon: outcome unknown.
                    self._queued.pop(flight.cmd.action_id, None)
                    flight.phase = Phase.RECONCILE
                    flight.since = now
                    flight.deadline = now + self.confirm_timeout
                    flight.orders_known = True
            return out
        out.counts.append((what.action, "audit_failed"))
        if isinstance(what, Refusal) or flight is None:
            # A refusal or a dry run: nothing to send either way.
            self._audit_alarm(now, error, out, what.account, what.rule)
            return out
        flight.audited = False
        if what.action in HARMLESS_TO_REPEAT:
            detail = f"audit log unwritable: {error}; sent anyway (harmless to repeat)"
            out.counts.append((what.action, "unaudited"))
        else:
            detail = f"audit log unwritable: {error}; not sent"
            self._drop(flight)
        self._last_audit_alarm = now
        out.events.append(
            self._event("escalation", what, now, code=model.AUDIT_UNWRITABLE, detail=detail)
        )
        return out

    def send_failed(self, action_id: str, now: float) -> None:
        """A released frame could not be written (the link went down): queue it again."""
        for flights in self._flights.values():
            for f in flights.values():
                if f.cmd.action_id == action_id:
                    self._queue(f)
                    return

    def _audit_alarm(self, now: float, error: str, out: Output, account: str, rule: str) -> None:
        """A critical escalation for a record the audit log could not take, at most one a
        minute (a failing store fails every write)."""
        if now - self._last_audit_alarm < _AUDIT_ALARM_EVERY:
            return
        self._last_audit_alarm = now
        out.events.append(
            ActionEvent(
                kind="escalation",
                account=account or "-",
                rule=rule or "-",
                symbol=None,
                action="audit",
                summary="action audit log",
                trip_id=0,
                at=now,
                mode=self._mode,
                code=model.AUDIT_UNWRITABLE,
                detail=f"audit log unwritable: {error}",
            )
        )

    # --- sending --------------------------------------------------------------------

    def release(self, now: float) -> Output:
        """The frames that may leave now, every guard holding (module docstring); they
        count as written at ``now``. The output's events and records (``sent``) are to be
        applied once the frames are written."""
        out = Output()
        if not self._queued:
            return out
        for f in list(self._queued.values()):
            account = f.cmd.account
            if not self.armed:
                self._fail(f, now, model.KILL_SWITCH, "disarmed before the frame left", out)
                continue
            if not self._connected.get(account, False):
                continue
            if self.view.stale(account, now):
                f.held = "stale"
                continue
            if now - f.decided_at > self.max_decision_age:
                f.held = "expired"
                continue
            del self._queued[f.cmd.action_id]
            self._written(f, now, out)
        return out

    def _written(self, f: Flight, at: float, out: Output) -> None:
        cmd = f.cmd
        f.phase = Phase.REPLY
        f.held = ""
        f.since = at
        f.deadline = at + self.reply_timeout
        f.replied = False
        out.frames.append(OutgoingFrame(cmd.account, cmd.frame, cmd.action_id))
        if cmd.attempt == 1:
            out.counts.append((cmd.action, "sent"))
            if f.trigger_at is not None:
                out.latencies.append(max(0.0, at - f.trigger_at))
        out.events.append(self._event("sent", cmd, at))
        if f.audited:
            out.records.append(SentRecord(cmd.action_id, at, cmd.account, cmd.rule))

    def _redecide(self, account: str, now: float, out: Output) -> None:
        """A fresh pulse: decide again the frames held back (module docstring)."""
        if self.view.stale(account, now):
            return
        snapshot: AccountSnapshot | None = None
        for f in list(self._queued.values()):
            if f.cmd.account != account or not f.held:
                continue
            snapshot = snapshot or self.view.snapshot(account)
            if confirm.effect(f.cmd, snapshot, f.decided_at) is True:
                self._confirm(f, now, "effect seen before the frame left", out)
            elif f.cmd.action in HARMLESS_TO_REPEAT:
                f.decided_at = now
                f.held = ""
            else:
                self._fail(
                    f,
                    now,
                    model.DECISION_EXPIRED,
                    f"decided {now - f.decided_at:.1f} s ago on state that may have changed; "
                    "not sent",
                    out,
                )

    # --- the link -------------------------------------------------------------------

    def on_status(self, account: str, connected: bool, now: float) -> Output:
        """The account's link went up (authenticated and subscribed) or down."""
        out = Output()
        was = self._connected.get(account, False)
        self._connected[account] = connected
        flights = self._flights.get(account, {})
        if was and not connected:
            for f in flights.values():
                if f.phase in (Phase.REPLY, Phase.PULSE):
                    # docs/protocol.md §10: no replay after a reconnect; the outcome is unknown.
                    f.phase = Phase.RECONCILE
                    f.error = "connection lost with the command in flight"
        if connected and not was:
            ask = False
            for f in list(flights.values()):
                if f.phase is not Phase.RECONCILE:
                    continue
                if f.cmd.action == "reduce_position":
                    self._fail(
                        f,
                        now,
                        model.OUTCOME_UNKNOWN,
                        "TWAP outcome unknown after a disconnect or restart; not resent "
                        "(a second TWAP would reduce twice): check the exchange's TWAPs",
                        out,
                    )
                    continue
                f.since = now
                f.deadline = now + self.confirm_timeout
                f.orders_known = False
                ask = True
            if ask:
                # docs/protocol.md §10: reconcile with get_user_orders and the next pulse.
                out.frames.append(OutgoingFrame(account, commands.get_user_orders()))
        return out

    # --- confirmation ---------------------------------------------------------------

    def on_events(self, account: str, events: Sequence[Event], now: float) -> Output:
        """Read one trade frame's events (after the account state took them)."""
        out = Output()
        flights = self._flights.get(account)
        if not flights:
            return out
        pulse = False
        for ev in events:
            if isinstance(ev, PositionUpdate | BalanceUpdate):
                pulse = True
            elif isinstance(ev, OrderUpdate):
                self._on_order(flights, ev, now, out)
            elif isinstance(ev, ErrorReply):
                self._on_error(flights, ev, now, out)
            elif isinstance(ev, Ack):
                self._on_ack(flights, ev, now, out)
            elif isinstance(ev, OtherReply) and ev.name == "twap_response":
                self._on_twap(flights, ev, now, out)
            elif isinstance(ev, OpenOrders):
                for f in flights.values():
                    if f.phase is Phase.RECONCILE:
                        f.orders_known = True
        if not pulse:
            return out
        self._redecide(account, now, out)
        snapshot = self.view.snapshot(account)
        for f in list(flights.values()):
            ready = f.phase is Phase.PULSE or (f.phase is Phase.RECONCILE and f.orders_known)
            if not ready:
                continue
            verdict = confirm.effect(f.cmd, snapshot, f.since)
            if verdict is True:
                detail = "reconciled" if f.phase is Phase.RECONCILE else "effect seen in pulse"
                self._confirm(f, now, detail, out)
            elif verdict is False:
                self._retry_or_fail(f, now, out)
        return out

    def _replied(
        self,
        f: Flight,
        now: float,
        out: Output,
        error: str = "",
        retryable: bool = True,
        code: str = "",
    ) -> None:
        if f.phase not in (Phase.REPLY, Phase.PULSE):
            return
        f.phase = Phase.PULSE
        f.replied = True
        f.since = now
        f.deadline = now + self.confirm_timeout
        if error:
            f.error = error
            f.retryable = retryable
            f.reject_code = code
            if not retryable:
                # A retry would be rejected the same way (docs/protocol.md §9): the
                # operator learns the reason now, whatever the pulses show next.
                self._fail(f, now, model.REJECTED, error, out)

    def _awaiting(self, flights: dict[str, Flight]) -> list[Flight]:
        """Flights written and not yet replied to, oldest write first."""
        waiting = [
            f for f in flights.values() if f.phase in (Phase.REPLY, Phase.PULSE) and not f.replied
        ]
        waiting.sort(key=lambda f: f.since)
        return waiting

    def _on_order(
        self, flights: dict[str, Flight], ev: OrderUpdate, now: float, out: Output
    ) -> None:
        # The session filled in the client_order_id of a reply that echoed none
        # (riskwatch/qfex/session.py).
        cid = ev.client_order_id
        if not cid:
            return
        target = next(
            (f for f in flights.values()
             if f.cmd.action == "close_position" and f.cmd.client_order_id == cid),
            None,
        )  # fmt: skip
        if target is None:
            return
        if not confirm.is_terminal(ev.status, ev.quantity_remaining):
            return
        if ev.status in ("FILLED", "CANCELLED"):
            left = f" ({ev.quantity_remaining:g} left unfilled)" if ev.status == "CANCELLED" else ""
            self._replied(target, now, out, f"IOC {ev.status.lower()}{left}" if left else "")
        else:
            retry = ev.status in confirm.RETRYABLE_STATUSES
            self._replied(target, now, out, f"order_response {ev.status}", retry, ev.status)

    def _request_of(
        self, flights: dict[str, Flight], request: dict[str, Any] | str | None
    ) -> Flight | None:
        """The flight whose frame an ``ack``/``err`` answers: the session put the request
        it correlated in ``incoming_message`` (riskwatch/qfex/session.py)."""
        if not isinstance(request, dict):
            return None
        want = normalised_request(request)
        for f in self._awaiting(flights):
            if f.sent_frame is None:
                f.sent_frame = json.loads(f.cmd.frame)
            if normalised_request(f.sent_frame) == want:
                return f
        return None

    def _on_error(
        self, flights: dict[str, Flight], ev: ErrorReply, now: float, out: Output
    ) -> None:
        f = self._request_of(flights, ev.incoming_message)
        if f is None:
            return
        text = f"err {ev.error_code}" + (f": {ev.message}" if ev.message else "")
        if f.cmd.action == "set_leverage":
            text += (
                f" (QFEX rejects set_user_leverage while {f.cmd.symbol} has a "
                "position or open orders)"
            )
        retry = ev.error_code in confirm.RETRYABLE_ERRORS
        self._replied(f, now, out, text, retry, ev.error_code)

    def _on_ack(self, flights: dict[str, Flight], ev: Ack, now: float, out: Output) -> None:
        f = self._request_of(flights, ev.incoming_message)
        if f is not None and f.cmd.action in _ACKED:
            self._replied(f, now, out)

    def _on_twap(self, flights: dict[str, Flight], ev: OtherReply, now: float, out: Output) -> None:
        payload = ev.payload if isinstance(ev.payload, dict) else {}
        cid = payload.get("client_twap_id")
        for f in list(flights.values()):
            if f.cmd.action == "reduce_position" and cid and f.cmd.client_order_id == cid:
                twap_id, status = payload.get("twap_id", ""), str(payload.get("status", ""))
                if twap_working(status):
                    self._confirm(f, now, f"TWAP {twap_id} accepted ({status})", out)
                else:
                    # docs/protocol.md §5.5: only a status that says the TWAP works confirms.
                    f.reject_code = status or "NO_STATUS"
                    detail = f"TWAP {twap_id} status {status!r} does not say it is working"
                    self._fail(f, now, model.REJECTED, detail, out)
                return

    # --- time -----------------------------------------------------------------------

    def tick(self, now: float) -> Output:
        """Timeouts, backoffs and expiries; call a few times a second."""
        out = Output()
        for account in list(self._flights):
            for f in list(self._flights.get(account, {}).values()):
                self._tick_flight(f, now, out)
        return out

    def _tick_flight(self, f: Flight, now: float, out: Output) -> None:
        account = f.cmd.account
        window_end = f.first_at + self.config.retry_window.seconds
        if f.phase is Phase.REPLY and now > f.deadline:
            f.error = f"no reply within {self.reply_timeout:g} s"
            f.phase = Phase.PULSE
            f.since = now
            f.deadline = now + self.confirm_timeout
        elif f.phase is Phase.PULSE and now > f.deadline:
            if f.cmd.action == "reduce_position":
                self._fail(f, now, model.OUTCOME_UNKNOWN, f.error or "TWAP not acknowledged", out)
                return
            f.error = f.error or f"effect not seen within {self.confirm_timeout:g} s"
            self._retry_or_fail(f, now, out)
        elif f.phase is Phase.BACKOFF and now >= f.next_at:
            self._next_attempt(f, now, out)
        elif f.phase is Phase.QUEUED and now > window_end:
            if not self._connected.get(account, False):
                code, detail = model.NOT_CONNECTED, "account not connected within the retry window"
            else:
                code, detail = model.DATA_STALE, "no fresh pulse to act on within the retry window"
            self._fail(f, now, code, detail, out)
        elif f.phase is Phase.RECONCILE and self._connected.get(account, False):
            if now > f.deadline + self.confirm_timeout:
                f.orders_known = True  # no get_user_orders reply: let the pulses decide
                verdict = confirm.effect(f.cmd, self.view.snapshot(account), f.since)
                if verdict is True:
                    self._confirm(f, now, "reconciled", out)
                elif verdict is False or now > f.deadline + 3 * self.confirm_timeout:
                    self._retry_or_fail(f, now, out)

    def _retry_or_fail(self, f: Flight, now: float, out: Output) -> None:
        limit = self.config.max_attempts
        window_end = f.first_at + self.config.retry_window.seconds
        last = f.error or "effect not seen"
        if not f.retryable:
            self._fail(f, now, model.REJECTED, last, out)
        elif f.cmd.attempt >= limit or now >= window_end:
            detail = f"{f.cmd.attempt} attempt(s) without effect; last: {last}"
            self._fail(f, now, model.RETRIES_EXHAUSTED, detail, out)
        else:
            delay = min(self.backoff_cap, self.backoff_initial * 2 ** (f.cmd.attempt - 1))
            f.phase = Phase.BACKOFF
            f.next_at = now + delay

    def _next_attempt(self, f: Flight, now: float, out: Output) -> None:
        cmd = f.cmd
        account = cmd.account
        if not self.armed:
            self._fail(f, now, model.KILL_SWITCH, "disarmed before the action completed", out)
            return
        if self.view.stale(account, now):
            if now >= f.first_at + self.config.retry_window.seconds:
                self._fail(f, now, model.DATA_STALE, "no fresh pulse to act on", out)
            else:
                f.next_at = now + _STALE_RETRY
            return
        if confirm.effect(cmd, self.view.snapshot(account), f.since) is True:
            self._confirm(f, now, "effect seen before the retry", out)
            return
        nxt = planner.retry_of(cmd)
        reason = f"retry {nxt.attempt} of {cmd.action_id}"
        out.retries.append(cmd.action)
        # The next attempt is recorded before this one is closed: a kill between the two
        # writes leaves two unfinished rows (a restart keeps the newest), never none.
        out.records.append(IntentRecord(nxt, nxt.action_id, nxt.attempt, reason, self._mode, now))
        if f.audited:
            out.records.append(
                OutcomeRecord(
                    cmd.action_id,
                    "retried",
                    f.error or "effect not seen",
                    now,
                    cmd.account,
                    cmd.rule,
                )
            )
        f.cmd = nxt
        f.sent_frame = None
        f.error = ""
        f.reject_code = ""
        f.retryable = True
        f.audited = True
        f.decided_at = now
        self._queue(f)

    # --- outcomes -------------------------------------------------------------------

    def _confirm(self, f: Flight, now: float, detail: str, out: Output) -> None:
        cmd = f.cmd
        self._drop(f)
        out.events.append(self._event("confirmed", cmd, now, detail=detail))
        out.counts.append((cmd.action, "confirmed"))
        if f.audited:
            out.records.append(
                OutcomeRecord(cmd.action_id, "confirmed", detail, now, cmd.account, cmd.rule)
            )

    def _fail(self, f: Flight, now: float, code: str, detail: str, out: Output) -> None:
        cmd = f.cmd
        self._drop(f)
        out.events.append(self._event("failed", cmd, now, code=code, detail=detail))
        out.events.append(self._event("escalation", cmd, now, code=code, detail=detail))
        out.counts.append((cmd.action, "failed"))
        if code == model.REJECTED and f.reject_code:
            out.counts.append((cmd.action, confirm.result_of_rejection(f.reject_code)))
        if f.audited:
            out.records.append(
                OutcomeRecord(
                    cmd.action_id, "failed", f"{code}: {detail}", now, cmd.account, cmd.rule
                )
            )

    def _drop(self, f: Flight) -> None:
        self._queued.pop(f.cmd.action_id, None)
        flights = self._flights.get(f.cmd.account, {})
        flights.pop(_lineage(f.cmd), None)

    def _flight_of(self, account: str, action_id: str) -> Flight | None:
        for f in self._flights.get(account, {}).values():
            if f.cmd.action_id == action_id:
                return f
        return None

    # --- restart --------------------------------------------------------------------

    def resume(self, rows: Sequence[tuple[ActionRecord, float]], now: float) -> tuple[Output, int]:
        """Take over the audit log's unfinished rows after a restart (oldest first, each
        with the intent time of its action's first attempt); return the output and how
        many actions are now reconciled on their account's next connection (never
        resent blindly)."""
        out = Output()
        count = 0
        for rec, first in rows:
            if rec.mode != "armed":
                out.records.append(
                    OutcomeRecord(
                        rec.action_id, "dry_run", "closed after restart", now, rec.account, rec.rule
                    )
                )
                continue
            try:
                cmd = rebuild(rec)
            except (KeyError, TypeError, ValueError) as exc:
                detail = f"{model.OUTCOME_UNKNOWN}: unreadable audit row after restart ({exc})"
                out.records.append(
                    OutcomeRecord(rec.action_id, "failed", detail, now, rec.account, rec.rule)
                )
                continue
            flight = Flight(
                cmd,
                None,
                first_at=first,
                decided_at=first,
                trigger_at=None,
                phase=Phase.RECONCILE,
            )
            flight.error = "daemon restarted with the command unconfirmed"
            flights = self._flights.setdefault(rec.account, {})
            older = flights.get(_lineage(cmd))
            if older is not None:
                # Killed between recording a retry and closing the attempt before it
                # (rows come oldest first): the newest attempt carries on.
                detail = f"superseded by attempt {cmd.attempt} at restart"
                out.records.append(
                    OutcomeRecord(
                        older.cmd.action_id, "retried", detail, now, rec.account, rec.rule
                    )
                )
                count -= 1
            flights[_lineage(cmd)] = flight
            self._taken[_lineage(cmd)] = None
            count += 1
        self._windows.clear()  # rows closed above changed kind: the shell seeds again
        return out, count

    # --- events ---------------------------------------------------------------------

    def _event(
        self,
        kind: ActionEventKind,
        what: PlannedCommand | Refusal,
        at: float,
        *,
        code: str = "",
        detail: str = "",
    ) -> ActionEvent:
        if isinstance(what, PlannedCommand):
            attempt, cid, aid = what.attempt, what.client_order_id, what.action_id
        else:
            attempt, cid = 1, None
            aid = planner.action_id(what.trip_key, what.action, what.symbol, 1)
        return ActionEvent(
            kind=kind,
            account=what.account,
            rule=what.rule,
            symbol=what.symbol,
            action=what.action,
            summary=what.summary,
            trip_id=what.trip_id,
            at=at,
            mode=self._mode,
            attempt=attempt,
            client_order_id=cid,
            code=code,
            detail=detail,
            severity=what.severity,
            action_id=aid,
        )

    def _event_of_refusal(self, kind: ActionEventKind, refusal: Refusal, at: float) -> ActionEvent:
        return self._event(kind, refusal, at, code=refusal.code, detail=refusal.detail)


def _lineage(cmd: PlannedCommand) -> str:
    return lineage_of(cmd.trip_key, cmd.action, cmd.symbol)


def rebuild(rec: ActionRecord) -> PlannedCommand:
    """The command of an audit row (raises KeyError/ValueError on a malformed row)."""
    params = dict(rec.params)
    cmd = planner.command(
        rule=rec.rule,
        account=rec.account,
        trip_id=int(params["trip_id"]),
        scope_symbol=params.get("scope_symbol"),
        action=rec.action,
        symbol=rec.symbol,
        attempt=rec.attempt,
        params=params,
        severity=str(params.get("severity", "critical")),
    )
    if cmd.action_id != rec.action_id:
        msg = f"rebuilt action id {cmd.action_id} differs from stored {rec.action_id}"
        raise ValueError(msg)
    return cmd
