"""The action executor: dry-run or armed, audit-then-send, confirm, retry, escalate.

The daemon hands it every engine decision (:meth:`ActionExecutor.on_decision`), every
trade frame's events after the account state took them (:meth:`on_events`, which
returns the frames to write at once), the link status of each account
(:meth:`on_status`) and a timer (:meth:`tick`). It needs a ``send(account, frame)``
callable that writes a frame and returns the write time (raising ``ConnectionError``
when the account is not connected).

Contract, per action (docs/rules.md, §7, §10; docs/design.md item 11):

1. The plan (:mod:`riskwatch.actions.plan`) decides commands and refusals.
2. Each command's intent is committed to the audit log (``Store.record_intent``,
   fsync'd) *before* its frame is written. A duplicate (same trip, action, symbol,
   attempt) is never sent again.
3. ``dry-run``: the row is closed ``dry_run`` at once, counted, and a "would have"
   event goes out; nothing is sent. ``armed``: the frame is written, counted
   ``sent`` and ``pulse_to_action_seconds`` observed (from the receive time of the
   deciding frame to the write).
4. Confirmation: the command's replies (``order_response`` by ``client_order_id``,
   ``ack``, ``err``, ``twap_response``) then the first pulse received after the reply
   must show the effect (:func:`riskwatch.actions.confirm.effect`). A partial fill,
   a retryable rejection or no visible effect leads to a new attempt (new
   ``client_order_id``) after a backoff, at most ``max_attempts`` within
   ``retry_window``; then ``failed`` and an ``escalation`` event.
5. A disconnect makes the outcome of any command in flight unknown: on reconnect,
   ``get_user_orders`` is asked and the next pulse decides (confirmed, or a new
   attempt). A restart does the same with the audit log's unfinished rows. A
   ``reduce_position`` TWAP of unknown outcome is never resent (a second TWAP would
   reduce twice): it fails with ``OUTCOME_UNKNOWN`` and escalates.
6. The kill switch (config, :meth:`disarm`, persisted in a ``.disarmed`` file beside
   the state database so that it survives a restart) refuses every new action and
   every further attempt.

Test-only fault points: with ``RISKWATCH_FAULT_POINT=after_intent`` the process kills
itself (SIGKILL) right after the first intent is committed and before its frame is
written; with ``after_send``, shortly after the first frame was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from riskwatch.actions import confirm, model
from riskwatch.actions import plan as planner
from riskwatch.actions.model import (
    ActionEvent,
    ActionEventKind,
    ActionListener,
    PlannedCommand,
    Refusal,
)
from riskwatch.clock import Clock
from riskwatch.config import ActionsConfig
from riskwatch.logformat import command_fields
from riskwatch.metrics import Metrics
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
from riskwatch.rules.engine import ActionIntent, Decision
from riskwatch.state.account import AccountSnapshot
from riskwatch.store import ActionRecord, DuplicateActionError, Store

__all__ = ["FAULT_ENV", "ActionExecutor", "scratch_store"]

log = logging.getLogger(__name__)

FAULT_ENV: Final = "RISKWATCH_FAULT_POINT"
HOUR: Final = 3600.0
_ACKED: Final = frozenset({"cancel_all_orders", "set_leverage"})
_RECENT: Final = 20
_EARLY_MAX: Final = 1000
_ACTED, _REFUSED, _DRY_RUN = "acted", "refused", "dry_run"  # kinds in the breaker window

Sender = Callable[[str, str], float]


@dataclass(slots=True, eq=False)
class _Flight:
    """One armed action between its first send and its final outcome."""

    cmd: PlannedCommand
    sent_frame: dict[str, Any]
    first_at: float
    trigger_at: float | None
    phase: str = "queued"  # queued | reply | pulse | backoff | reconcile
    since: float = 0.0
    deadline: float = 0.0
    next_at: float = 0.0
    error: str = ""
    retryable: bool = True
    orders_known: bool = False


class ActionExecutor:
    """Runs protective actions for every account (see the module docstring).

    ``snapshot_of(account)`` and ``is_stale(account, now)`` read the daemon's account
    state; ``store`` is the state database (the audit log). ``reply_timeout`` and
    ``confirm_timeout`` are seconds to wait for a reply, then for a pulse showing
    the effect; retries back off from ``backoff_initial`` doubling to ``backoff_cap``.
    """

    def __init__(
        self,
        config: ActionsConfig,
        *,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        snapshot_of: Callable[[str], AccountSnapshot],
        is_stale: Callable[[str, float], bool],
        send: Sender,
        reply_timeout: float = 5.0,
        confirm_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_cap: float = 5.0,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._snapshot_of = snapshot_of
        self._is_stale = is_stale
        self._send = send
        self.reply_timeout = reply_timeout
        self.confirm_timeout = confirm_timeout
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.listeners: list[ActionListener] = []
        self.latencies: deque[float] = deque(maxlen=100_000)
        self._mode = config.mode
        self._kill_file = Path(str(store.path) + ".disarmed")
        self._kill = config.kill_switch or self._kill_file.exists()
        self._flights: dict[str, dict[str, _Flight]] = {}
        self._outbox: dict[str, list[_Flight]] = {}
        self._receiving: str | None = None
        self._connected: dict[str, bool] = {}
        self._breaker_open: dict[str, bool] = {}
        # The circuit breaker's hour per account, kept in memory (seeded once from the
        # audit log): counting it in SQLite on every trip cost ~0.2 ms on the path from
        # the breaching frame to the command (README.md, "Performance").
        self._window: dict[str, _Window] = {}
        self._early: list[ActionIntent] = []  # taken by on_intent, until on_decision
        self._fault = os.environ.get(FAULT_ENV, "")

    # --- mode -----------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"armed"`` or ``"dry-run"`` (the kill switch is separate: :attr:`kill_switch`)."""
        return self._mode

    @property
    def kill_switch(self) -> bool:
        """True while every action is disarmed."""
        return self._kill

    @property
    def armed(self) -> bool:
        """True when actions are really sent: mode ``armed`` and the kill switch off."""
        return self._mode == "armed" and not self._kill

    def announce(self) -> str:
        """The start-up line stating the mode (logged at WARNING when armed)."""
        if self._kill:
            text = "actions DISARMED by the kill switch: nothing will be sent"
        elif self._mode == "armed":
            text = "actions ARMED: protective commands will be sent to the exchange"
        else:
            text = "actions in DRY-RUN mode: actions are logged and notified, never sent"
        log.log(logging.WARNING if self.armed else logging.INFO, "%s", text)
        return text

    def arm(self, actor: str) -> dict[str, Any]:
        """Switch to ``armed`` and clear the kill switch (operator action)."""
        self._mode = "armed"
        self._kill = False
        with contextlib.suppress(FileNotFoundError):
            self._kill_file.unlink()
        log.warning("actions ARMED by %s", actor)
        return self.status()

    def disarm(self, actor: str) -> dict[str, Any]:
        """Engage the kill switch (operator action): no new action, no further attempt."""
        self._kill = True
        try:
            self._kill_file.write_text(
                json.dumps({"by": actor, "at": self.clock.now()}) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            log.error("kill switch engaged but not persisted to %s: %s", self._kill_file, exc)
        log.warning("actions DISARMED (kill switch) by %s", actor)
        return self.status()

    def status(self) -> dict[str, Any]:
        """``{"mode", "armed", "kill_switch", "in_flight"}`` for the API."""
        return {
            "mode": self._mode,
            "armed": self.armed,
            "kill_switch": self._kill,
            "in_flight": [
                {
                    "account": f.cmd.account,
                    "rule": f.cmd.rule,
                    "action": f.cmd.summary,
                    "attempt": f.cmd.attempt,
                    "phase": f.phase,
                    "client_order_id": f.cmd.client_order_id,
                    "last_error": f.error,
                }
                for flights in self._flights.values()
                for f in flights.values()
            ],
        }

    def recent(self, limit: int = _RECENT) -> list[dict[str, Any]]:
        """The audit log's latest rows, newest first, as JSON-able dicts."""
        return [_row(r) for r in self.store.actions(limit=limit)]

    # --- inputs ---------------------------------------------------------------------

    def on_decision(self, decision: Decision) -> None:
        """Plan and run the intents of an engine decision (a ``decision_listeners`` entry),
        except those already taken by :meth:`on_intent` during the evaluation."""
        early, self._early = self._early, []
        for intent in decision.intents:
            if not any(intent is e for e in early):
                self.handle_intent(intent, self.clock.now())

    def on_intent(self, intent: ActionIntent) -> None:
        """Plan and run one intent as the engine makes it (``AccountCore.on_intent``);
        the :meth:`on_decision` call for the decision that lists it skips it."""
        self._early.append(intent)
        if len(self._early) > _EARLY_MAX:  # a decision never handed over: forget it
            del self._early[0]
        self.handle_intent(intent, self.clock.now())

    def frame_started(self, account: str) -> None:
        """A trade frame of ``account`` is being handled: frames planned now are returned
        by the :meth:`on_events` call that follows, and written on the same loop turn."""
        self._receiving = account

    def on_events(self, account: str, events: Sequence[Event], now: float) -> list[str]:
        """Read one frame's events (after the account state took them); return frames
        to write now. ``now`` is the frame's receive time."""
        self._receiving = None
        frames: list[str] = []
        outbox = self._outbox.pop(account, ())
        if outbox:
            at = self.clock.now()
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            for flight in outbox:
                frames.append(flight.cmd.frame)
                flight.phase = "reply"
                if loop is None:
                    self._written(flight, at)
                else:
                    # Bookkeeping (metrics, log, events) once the frames are written:
                    # the caller writes them when this returns (README.md, "Performance").
                    loop.call_soon(self._written, flight, at)
        if self._flights.get(account):
            self._observe(account, events, now)
        return frames

    def on_status(self, account: str, connected: bool, now: float) -> None:
        """The account's link went up (authenticated and subscribed) or down."""
        was = self._connected.get(account, False)
        self._connected[account] = connected
        if connected and account not in self._window:
            self._seed_window(account, now)  # before any frame can trip a rule
        flights = self._flights.get(account, {})
        if was and not connected:
            for f in flights.values():
                if f.phase in ("reply", "pulse"):
                    # docs/protocol.md §10: no replay after a reconnect; the outcome is unknown.
                    f.phase = "reconcile"
                    f.error = "connection lost with the command in flight"
        if connected and not was:
            self._reconnected(account, now)

    def tick(self, now: float) -> None:
        """Timeouts, backoffs and queued sends; call a few times a second."""
        for account in list(self._flights):
            for f in list(self._flights.get(account, {}).values()):
                self._tick_flight(f, now)

    async def run(self, interval: float = 0.1) -> None:
        """Call :meth:`tick` every ``interval`` seconds until cancelled."""
        while True:
            try:
                self.tick(self.clock.now())
            except Exception:  # a bug here must not end the timer
                log.exception("action executor tick failed")
            await asyncio.sleep(interval)

    def resume(self, now: float) -> int:
        """Take over the audit log's unfinished actions after a restart; return how many.

        They are reconciled on the account's next connection, never resent blindly.
        """
        count = 0
        for rec in self.store.unfinished_actions():
            if rec.mode != "armed":
                self.store.record_outcome(rec.action_id, "dry_run", "closed after restart", now)
                continue
            try:
                cmd = _rebuild(rec)
            except (KeyError, TypeError, ValueError) as exc:
                detail = f"{model.OUTCOME_UNKNOWN}: unreadable audit row after restart ({exc})"
                self.store.record_outcome(rec.action_id, "failed", detail, now)
                continue
            first = min(
                (
                    r.intent_at
                    for r in self.store.actions_for_trip(rec.trip_key)
                    if r.action == rec.action and r.symbol == rec.symbol
                ),
                default=rec.intent_at,
            )
            flight = _Flight(cmd, json.loads(cmd.frame), first_at=first, trigger_at=None)
            flight.phase = "reconcile"
            flight.error = "daemon restarted with the command unconfirmed"
            flights = self._flights.setdefault(rec.account, {})
            older = flights.get(_lineage(cmd))
            if older is not None:
                # Killed between recording a retry and closing the attempt before it
                # (rows come oldest first): the newest attempt carries on.
                detail = f"superseded by attempt {cmd.attempt} at restart"
                self.store.record_outcome(older.cmd.action_id, "retried", detail, now)
                count -= 1
            flights[_lineage(cmd)] = flight
            count += 1
            log.warning(
                "action %s of rule %s on %s (attempt %d) was unconfirmed at restart: "
                "reconciling, not resending",
                cmd.summary,
                cmd.rule,
                cmd.account,
                cmd.attempt,
            )
        self._window.clear()  # rows closed above changed kind: re-seed when needed
        return count

    # --- planning -------------------------------------------------------------------

    def handle_intent(self, intent: ActionIntent, now: float) -> None:
        """Plan one intent, record it, then send (armed) or close it as ``dry_run``."""
        account = intent.account
        snapshot = self._snapshot_of(account)
        key = planner.trip_key(intent.rule, account, intent.symbol, intent.trip_id)
        recorded = {(r.action, r.symbol) for r in self.store.actions_for_trip(key)}
        used = self._used(account, now, dry_runs=not self.armed)
        plan = planner.plan(
            intent,
            snapshot,
            stale=self._is_stale(account, now),
            kill_switch=self._kill,
            used=used,
            max_per_hour=self.config.max_per_account_per_hour,
            recorded=recorded,
        )
        for refusal in plan.refusals:
            self._refuse(refusal, now)
        if plan.breaker_opened and not self._breaker_open.get(account):
            self._breaker_open[account] = True
            first = next(r for r in plan.refusals if r.code == model.CIRCUIT_BREAKER_OPEN)
            log.critical("account %s: circuit breaker open: %s", account, first.reason)
            self._emit(
                "breaker_open",
                first.account,
                first.rule,
                first.symbol,
                first.action,
                first.summary,
                first.trip_id,
                now,
                code=first.code,
                detail=first.detail,
            )
        elif not plan.breaker_opened:
            self._breaker_open[account] = False
        for cmd in plan.commands:
            self._start(cmd, intent, now)

    def _refuse(self, refusal: Refusal, now: float) -> None:
        aid = planner.action_id(refusal.trip_key, refusal.action, refusal.symbol, 1)
        try:
            self.store.record_intent(
                action_id=aid,
                trip_key=refusal.trip_key,
                rule=refusal.rule,
                account=refusal.account,
                symbol=refusal.symbol,
                action=refusal.action,
                params={**refusal.params, "trip_id": refusal.trip_id},
                client_order_id=None,
                reason=f"rule {refusal.rule} tripped (trip {refusal.trip_id})",
                mode=self._mode,
                now=now,
            )
        except DuplicateActionError:
            return
        self._counted(
            refusal.account, refusal.trip_key, refusal.action, refusal.symbol, now, _REFUSED
        )
        self.store.record_outcome(aid, "refused", refusal.reason, now)
        self.metrics.actions.labels(refusal.action, "refused").inc()
        log.warning(
            "action %s of rule %s on %s refused: %s",
            refusal.summary,
            refusal.rule,
            refusal.account,
            refusal.reason,
        )
        self._emit(
            "refused",
            refusal.account,
            refusal.rule,
            refusal.symbol,
            refusal.action,
            refusal.summary,
            refusal.trip_id,
            now,
            code=refusal.code,
            detail=refusal.detail,
            severity=refusal.severity,
        )

    def _record(self, cmd: PlannedCommand, now: float, reason: str) -> bool:
        """Commit the intent; False when this (trip, action, symbol, attempt) exists."""
        try:
            self.store.record_intent(
                action_id=cmd.action_id,
                trip_key=cmd.trip_key,
                rule=cmd.rule,
                account=cmd.account,
                symbol=cmd.symbol,
                action=cmd.action,
                attempt=cmd.attempt,
                params=cmd.params,
                client_order_id=cmd.client_order_id,
                reason=reason,
                mode=self._mode,
                now=now,
            )
        except DuplicateActionError as exc:
            log.info("action %s already recorded (%s): not sent again", cmd.summary, exc)
            return False
        kind = _ACTED if self._mode == "armed" else _DRY_RUN
        self._counted(cmd.account, cmd.trip_key, cmd.action, cmd.symbol, now, kind)
        return True

    # --- circuit breaker window -------------------------------------------------------

    def _seed_window(self, account: str, now: float) -> _Window:
        """Load ``account``'s audit rows of the last hour into the in-memory window."""
        since = now - HOUR
        limit = 256
        while True:
            rows = self.store.actions(limit=limit, account=account)
            # Newest first: done when the log is exhausted or reaches past the hour
            # (a minute of margin for a wall clock that stepped back).
            if len(rows) < limit or rows[-1].intent_at < since - 60.0:
                break
            limit *= 4
        window = _Window()
        for r in sorted(rows, key=lambda r: r.intent_at):
            if r.intent_at >= since:
                kind = r.status if r.status in (_REFUSED, _DRY_RUN) else _ACTED
                window.add(_lineage_of(r.trip_key, r.action, r.symbol), r.intent_at, kind)
        self._window[account] = window
        return window

    def _counted(
        self, account: str, trip_key: str, action: str, symbol: str | None, at: float, kind: str
    ) -> None:
        window = self._window.get(account)
        if window is None:
            return  # seeded from the audit log (which holds this row) when first needed
        window.add(_lineage_of(trip_key, action, symbol), at, kind)

    def _used(self, account: str, now: float, *, dry_runs: bool) -> int:
        """Actions of ``account`` in the last hour, as ``Store.actions_in_window`` counts
        them: attempts of one (trip, action, symbol) once; refusals never; dry runs only
        when ``dry_runs`` (i.e. while not armed)."""
        window = self._window.get(account)
        if window is None:
            window = self._seed_window(account, now)
        return window.count(now - HOUR, dry_runs=dry_runs)

    def _start(self, cmd: PlannedCommand, intent: ActionIntent, now: float) -> None:
        reason = f"rule {cmd.rule} tripped (trip {cmd.trip_id}, {intent.trigger})"
        if not self._record(cmd, now, reason):
            return
        if self._fault == "after_intent":
            os.kill(os.getpid(), signal.SIGKILL)
        if self._mode != "armed":
            self.store.record_outcome(cmd.action_id, "dry_run", "dry-run: not sent", now)
            self.metrics.actions.labels(cmd.action, "dry_run").inc()
            log.warning(
                "DRY-RUN would have %s (rule %s, %s)",
                cmd.summary,
                cmd.rule,
                cmd.account,
                extra=command_fields(cmd),
            )
            self._event("dry_run", cmd, now)
            return
        flight = _Flight(cmd, json.loads(cmd.frame), first_at=now, trigger_at=intent.at)
        self._flights.setdefault(cmd.account, {})[_lineage(cmd)] = flight
        self.metrics.actions.labels(cmd.action, "sent").inc()
        self._dispatch(flight, now)

    # --- sending --------------------------------------------------------------------

    def _dispatch(self, flight: _Flight, now: float) -> None:
        account = flight.cmd.account
        flight.phase = "queued"
        if account == self._receiving:
            flight.phase = "reply"
            self._outbox.setdefault(account, []).append(flight)
            return
        if not self._connected.get(account, False):
            return  # written when the account is connected again (tick / on_status)
        try:
            written = self._send(account, flight.cmd.frame)
        except ConnectionError:
            return
        self._written(flight, written)

    def _written(self, flight: _Flight, at: float) -> None:
        cmd = flight.cmd
        flight.phase = "reply"
        flight.since = at
        flight.deadline = at + self.reply_timeout
        if cmd.attempt == 1 and flight.trigger_at is not None:
            latency = max(0.0, at - flight.trigger_at)
            self.metrics.pulse_to_action_seconds.observe(latency)
            self.latencies.append(latency)
        log.warning(
            "SENT %s (rule %s, %s, attempt %d, client_order_id %s)",
            cmd.summary,
            cmd.rule,
            cmd.account,
            cmd.attempt,
            cmd.client_order_id or "-",
            extra=command_fields(cmd),
        )
        self._event("sent", cmd, at)
        try:
            asyncio.get_running_loop().call_soon(self._mark_sent, cmd.action_id)
        except RuntimeError:
            self._mark_sent(cmd.action_id)

    def _mark_sent(self, action_id: str) -> None:
        self.store.mark_sent(action_id, self.clock.now())
        if self._fault == "after_send":
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGKILL)

    def _reconnected(self, account: str, now: float) -> None:
        flights = self._flights.get(account, {})
        ask = False
        for f in list(flights.values()):
            if f.phase == "queued":
                self._dispatch(f, now)
            elif f.phase == "reconcile":
                if f.cmd.action == "reduce_position":
                    self._fail(
                        f,
                        now,
                        model.OUTCOME_UNKNOWN,
                        "TWAP outcome unknown after a disconnect or restart; not resent "
                        "(a second TWAP would reduce twice): check the exchange's TWAPs",
                    )
                    continue
                f.since = now
                f.deadline = now + self.confirm_timeout
                f.orders_known = False
                ask = True
        if ask:
            # docs/protocol.md §10: reconcile with get_user_orders and the next pulse.
            with contextlib.suppress(ConnectionError):
                self._send(account, commands.get_user_orders())

    # --- confirmation ---------------------------------------------------------------

    def _observe(self, account: str, events: Sequence[Event], now: float) -> None:
        flights = self._flights[account]
        pulse = False
        for ev in events:
            if isinstance(ev, PositionUpdate | BalanceUpdate):
                pulse = True
            elif isinstance(ev, OrderUpdate):
                self._on_order(flights, ev, now)
            elif isinstance(ev, ErrorReply):
                self._on_error(flights, ev, now)
            elif isinstance(ev, Ack):
                self._on_ack(flights, ev, now)
            elif isinstance(ev, OtherReply) and ev.name == "twap_response":
                self._on_twap(flights, ev, now)
            elif isinstance(ev, OpenOrders):
                for f in flights.values():
                    if f.phase == "reconcile":
                        f.orders_known = True
        if pulse:
            snapshot = self._snapshot_of(account)
            for f in list(flights.values()):
                ready = f.phase == "pulse" or (f.phase == "reconcile" and f.orders_known)
                if not ready:
                    continue
                verdict = confirm.effect(f.cmd, snapshot, f.since)
                if verdict is True:
                    detail = "reconciled" if f.phase == "reconcile" else "effect seen in pulse"
                    self._confirm(f, now, detail)
                elif verdict is False:
                    self._retry_or_fail(f, now)

    def _replied(self, f: _Flight, now: float, error: str = "", retryable: bool = True) -> None:
        if f.phase not in ("reply", "pulse"):
            return
        f.phase = "pulse"
        f.since = now
        f.deadline = now + self.confirm_timeout
        if error:
            f.error = error
            f.retryable = retryable

    def _on_order(self, flights: dict[str, _Flight], ev: OrderUpdate, now: float) -> None:
        if not ev.client_order_id:
            return
        for f in flights.values():
            if f.cmd.client_order_id == ev.client_order_id and f.cmd.action == "close_position":
                if not confirm.is_terminal(ev.status, ev.quantity_remaining):
                    return
                if ev.status in ("FILLED", "CANCELLED"):
                    left = (
                        f" ({ev.quantity_remaining:g} left unfilled)"
                        if ev.status == "CANCELLED"
                        else ""
                    )
                    self._replied(f, now, f"IOC {ev.status.lower()}{left}" if left else "")
                else:
                    retry = ev.status in confirm.RETRYABLE_STATUSES
                    self._replied(f, now, f"order_response {ev.status}", retry)
                return

    def _on_error(self, flights: dict[str, _Flight], ev: ErrorReply, now: float) -> None:
        echoed = ev.incoming_message
        if not isinstance(echoed, dict):
            return
        for f in flights.values():
            if f.sent_frame == echoed and f.phase in ("reply", "pulse"):
                text = f"err {ev.error_code}" + (f": {ev.message}" if ev.message else "")
                if f.cmd.action == "set_leverage":
                    text += (
                        f" (QFEX rejects set_user_leverage while {f.cmd.symbol} has a "
                        "position or open orders)"
                    )
                self._replied(f, now, text, ev.error_code in confirm.RETRYABLE_ERRORS)
                return

    def _on_ack(self, flights: dict[str, _Flight], ev: Ack, now: float) -> None:
        echoed = ev.incoming_message
        waiting = [f for f in flights.values() if f.cmd.action in _ACKED and f.phase == "reply"]
        for f in waiting:
            if echoed is None or f.sent_frame == echoed:
                self._replied(f, now)
                return

    def _on_twap(self, flights: dict[str, _Flight], ev: OtherReply, now: float) -> None:
        payload = ev.payload if isinstance(ev.payload, dict) else {}
        cid = payload.get("client_twap_id")
        for f in list(flights.values()):
            if f.cmd.action == "reduce_position" and cid and f.cmd.client_order_id == cid:
                self._confirm(f, now, f"TWAP {payload.get('twap_id', '')} accepted")
                return

    def _tick_flight(self, f: _Flight, now: float) -> None:
        if f.phase == "reply" and now > f.deadline:
            f.error = f"no reply within {self.reply_timeout:g} s"
            f.phase = "pulse"
            f.since = now
            f.deadline = now + self.confirm_timeout
        elif f.phase == "pulse" and now > f.deadline:
            if f.cmd.action == "reduce_position":
                self._fail(f, now, model.OUTCOME_UNKNOWN, f.error or "TWAP not acknowledged")
                return
            f.error = f.error or f"effect not seen within {self.confirm_timeout:g} s"
            self._retry_or_fail(f, now)
        elif f.phase == "backoff" and now >= f.next_at:
            self._next_attempt(f, now)
        elif f.phase == "queued":
            if now > f.first_at + self.config.retry_window.seconds:
                code = model.NOT_CONNECTED
                self._fail(f, now, code, "account not connected within the retry window")
            elif self._connected.get(f.cmd.account, False):
                self._dispatch(f, now)
        elif f.phase == "reconcile" and self._connected.get(f.cmd.account, False):
            if now > f.deadline + self.confirm_timeout:
                f.orders_known = True  # no get_user_orders reply: let the pulses decide
                snapshot = self._snapshot_of(f.cmd.account)
                verdict = confirm.effect(f.cmd, snapshot, f.since)
                if verdict is True:
                    self._confirm(f, now, "reconciled")
                elif verdict is False or now > f.deadline + 3 * self.confirm_timeout:
                    self._retry_or_fail(f, now)

    def _retry_or_fail(self, f: _Flight, now: float) -> None:
        limit = self.config.max_attempts
        window_end = f.first_at + self.config.retry_window.seconds
        last = f.error or "effect not seen"
        if not f.retryable:
            self._fail(f, now, model.REJECTED, last)
        elif f.cmd.attempt >= limit or now >= window_end:
            detail = f"{f.cmd.attempt} attempt(s) without effect; last: {last}"
            self._fail(f, now, model.RETRIES_EXHAUSTED, detail)
        else:
            delay = min(self.backoff_cap, self.backoff_initial * 2 ** (f.cmd.attempt - 1))
            f.phase = "backoff"
            f.next_at = now + delay

    def _next_attempt(self, f: _Flight, now: float) -> None:
        cmd = f.cmd
        account = cmd.account
        if not self.armed:
            self._fail(f, now, model.KILL_SWITCH, "disarmed before the action completed")
            return
        if self._is_stale(account, now):
            if now >= f.first_at + self.config.retry_window.seconds:
                self._fail(f, now, model.DATA_STALE, "no fresh pulse to act on")
            else:
                f.next_at = now + 0.5
            return
        snapshot = self._snapshot_of(account)
        if confirm.effect(cmd, snapshot, f.since) is True:
            self._confirm(f, now, "effect seen before the retry")
            return
        nxt = planner.retry_of(cmd)
        fresh = self._record(nxt, now, f"retry {nxt.attempt} of {cmd.action_id}")
        # Close this attempt only once the next one is recorded: a kill between the two
        # writes leaves two unfinished rows (resume() keeps the newest), never none (which
        # would lose the action for good).
        self.store.record_outcome(cmd.action_id, "retried", f.error or "effect not seen", now)
        f.cmd = nxt
        f.sent_frame = json.loads(nxt.frame)
        f.error = ""
        f.retryable = True
        if not fresh:
            # Recorded by an earlier life of the daemon: its outcome is unknown.
            f.phase = "reconcile"
            f.since = now
            f.deadline = now + self.confirm_timeout
            f.orders_known = True
            return
        self.metrics.action_retries.labels(cmd.action).inc()
        self._dispatch(f, now)

    # --- outcomes -------------------------------------------------------------------

    def _confirm(self, f: _Flight, now: float, detail: str) -> None:
        cmd = f.cmd
        self._drop(f)
        self.store.record_outcome(cmd.action_id, "confirmed", detail, now)
        self.metrics.actions.labels(cmd.action, "confirmed").inc()
        log.warning(
            "CONFIRMED %s (rule %s, %s, attempt %d): %s",
            cmd.summary,
            cmd.rule,
            cmd.account,
            cmd.attempt,
            detail,
            extra=command_fields(cmd),
        )
        self._event("confirmed", cmd, now, detail=detail)

    def _fail(self, f: _Flight, now: float, code: str, detail: str) -> None:
        cmd = f.cmd
        self._drop(f)
        self.store.record_outcome(cmd.action_id, "failed", f"{code}: {detail}", now)
        self.metrics.actions.labels(cmd.action, "failed").inc()
        log.critical(
            "FAILED %s (rule %s, %s, attempt %d): %s: %s",
            cmd.summary,
            cmd.rule,
            cmd.account,
            cmd.attempt,
            code,
            detail,
            extra=command_fields(cmd),
        )
        self._event("failed", cmd, now, code=code, detail=detail)
        self._event("escalation", cmd, now, code=code, detail=detail)

    def _drop(self, f: _Flight) -> None:
        flights = self._flights.get(f.cmd.account, {})
        flights.pop(_lineage(f.cmd), None)

    def _event(
        self,
        kind: ActionEventKind,
        cmd: PlannedCommand,
        at: float,
        *,
        code: str = "",
        detail: str = "",
    ) -> None:
        self._emit(
            kind,
            cmd.account,
            cmd.rule,
            cmd.symbol,
            cmd.action,
            cmd.summary,
            cmd.trip_id,
            at,
            attempt=cmd.attempt,
            client_order_id=cmd.client_order_id,
            code=code,
            detail=detail,
            severity=cmd.severity,
        )

    def _emit(
        self,
        kind: ActionEventKind,
        account: str,
        rule: str,
        symbol: str | None,
        action: str,
        summary: str,
        trip_id: int,
        at: float,
        *,
        attempt: int = 1,
        client_order_id: str | None = None,
        code: str = "",
        detail: str = "",
        severity: str = "critical",
    ) -> None:
        event = ActionEvent(
            kind=kind,
            account=account,
            rule=rule,
            symbol=symbol,
            action=action,
            summary=summary,
            trip_id=trip_id,
            at=at,
            mode=self._mode,
            attempt=attempt,
            client_order_id=client_order_id,
            code=code,
            detail=detail,
            severity=severity,
        )
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop an action
                log.exception("action listener failed")


class _Window:
    """One account's actions of the last hour for the circuit breaker, in memory.

    Per lineage (trip, action, symbol) the time of its latest counted row, one map for
    actions taken and one for dry runs (refusals never count); a queue in time order
    expires them. Counting while armed is O(1) amortised (a trip's path).
    """

    __slots__ = ("acted", "dry", "queue")

    def __init__(self) -> None:
        self.acted: dict[str, float] = {}
        self.dry: dict[str, float] = {}
        self.queue: deque[tuple[float, str, str]] = deque()

    def add(self, lineage: str, at: float, kind: str) -> None:
        if kind == _REFUSED:
            return
        latest = self.acted if kind == _ACTED else self.dry
        latest[lineage] = max(at, latest.get(lineage, at))
        self.queue.append((at, lineage, kind))

    def count(self, since: float, *, dry_runs: bool) -> int:
        queue = self.queue
        while queue and queue[0][0] < since:
            _, lineage, kind = queue.popleft()
            latest = self.acted if kind == _ACTED else self.dry
            if latest.get(lineage, since) < since:
                del latest[lineage]
        # A row added out of time order (the wall clock stepped back) expires only once
        # the queue reaches it: until then it is counted, i.e. the breaker errs on the
        # side of counting one action too many, never one too few.
        if not dry_runs:
            return len(self.acted)
        return len(self.acted.keys() | self.dry.keys())


def _lineage(cmd: PlannedCommand) -> str:
    return _lineage_of(cmd.trip_key, cmd.action, cmd.symbol)


def _lineage_of(trip_key: str, action: str, symbol: str | None) -> str:
    return f"{trip_key}\x1f{action}\x1f{symbol or ''}"


def _rebuild(rec: ActionRecord) -> PlannedCommand:
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


def _row(rec: ActionRecord) -> dict[str, Any]:
    """An audit row for ``/api/actions``: the record plus ``outcome`` and ``summary``."""
    doc = rec.to_dict()
    doc["summary"] = model.describe(rec.action, rec.symbol, rec.params)
    doc["outcome"] = rec.status if rec.finished else "pending"
    return doc


def scratch_store() -> Store:
    """A state database in a fresh temporary folder, for a daemon built without one.

    The audit log then lasts as long as the process: exactly-once holds within it,
    not across restarts (``riskwatch run`` always opens the configured database).
    """
    folder = Path(tempfile.mkdtemp(prefix="riskwatch-actions-"))
    log.warning("no state database given: action audit log kept in %s", folder)
    return Store.open(folder / "state.db")
