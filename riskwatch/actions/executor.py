"""The action executor: the asyncio shell around the action book.

Everything that decides lives in the pure :class:`~riskwatch.actions.book.ActionBook`
(plan, dedup, breaker, kill switch, guards at the moment of sending, flights,
confirmation, retries, escalation, the storage-fault policy). This shell feeds it the
daemon's inputs — decisions and intents, trade events, link status, the time — and
carries out what it returns: publishes events and counts metrics first, then writes
audit records (``Store.record_intent`` is committed before the frame it covers is
written), then writes frames through ``send(account, frame)`` (which returns the write
time, or raises ``ConnectionError`` when the account is not connected). It also keeps
the kill switch's file (``.disarmed`` beside the state database, so that a disarm
survives a restart) and logs what happened.

A record that cannot be written is reported to the book (``write_failed``), which
decides (docs/actions.md): a duplicate intent is not sent again; an intent the store
cannot take is sent anyway for ``close_position`` and ``cancel_all_orders`` and not
for the others, with a critical escalation either way.

"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from riskwatch.actions import model
from riskwatch.actions import plan as planner
from riskwatch.actions.audit import StoreWriter, first_intent_at, window_rows
from riskwatch.actions.book import ActionBook
from riskwatch.actions.model import ActionEvent, ActionListener
from riskwatch.actions.outputs import IntentRecord, Output, Record
from riskwatch.clock import Clock
from riskwatch.config import ActionsConfig
from riskwatch.errors import StateStoreError
from riskwatch.ha.gate import LeaderGate
from riskwatch.metrics import Metrics
from riskwatch.model import Event
from riskwatch.records import ActionRecord
from riskwatch.rules.engine import ActionIntent, Decision
from riskwatch.rules.lifecycle import TransitionReason
from riskwatch.state.account import AccountSnapshot
from riskwatch.store import DuplicateActionError, Store
from riskwatch.store.writer import OutcomeLog

__all__ = ["ActionExecutor", "scratch_store"]

log = logging.getLogger(__name__)

_RECENT: Final = 20

Sender = Callable[[str, str], float]

_LEVELS: Final = {
    "dry_run": logging.WARNING,
    "sent": logging.WARNING,
    "confirmed": logging.WARNING,
    "refused": logging.WARNING,
    "failed": logging.CRITICAL,
    "escalation": logging.CRITICAL,
    "breaker_open": logging.CRITICAL,
}


class _View:
    """The daemon's account state, as the book reads it."""

    __slots__ = ("_is_stale", "_snapshot_of")

    def __init__(
        self,
        snapshot_of: Callable[[str], AccountSnapshot],
        is_stale: Callable[[str, float], bool],
    ) -> None:
        self._snapshot_of = snapshot_of
        self._is_stale = is_stale

    def snapshot(self, account: str) -> AccountSnapshot:
        return self._snapshot_of(account)

    def stale(self, account: str, now: float) -> bool:
        return self._is_stale(account, now)


class ActionExecutor:
    """Runs protective actions for every account (see the module docstring).

    ``snapshot_of(account)`` and ``is_stale(account, now)`` read the daemon's account
    state; ``store`` is the state database (the audit log). ``outcomes`` takes sends
    and outcomes off the reaction path (the daemon's writer thread); ``on_store_error``
    hears of every record the store could not take, as ``(op, message)`` (the
    daemon counts it, fails ``/readyz`` and notifies: daemon/storage.py).
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
        outcomes: OutcomeLog | None = None,
        on_store_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._send = send
        self._writer = StoreWriter(store, outcomes)
        self.on_store_error = on_store_error
        self._kill_file = Path(str(store.path) + ".disarmed")
        self.book = ActionBook(
            config,
            _View(snapshot_of, is_stale),
            kill_switch=self._kill_file.exists(),
            reply_timeout=reply_timeout,
            confirm_timeout=confirm_timeout,
            backoff_initial=backoff_initial,
            backoff_cap=backoff_cap,
        )
        self.listeners: list[ActionListener] = []
        # High availability (riskwatch/ha/gate.py): on a follower, leader-only actions
        # are set aside for a take-over. None: this process is the only one.
        self.gate: LeaderGate | None = None
        self.on_tick: Callable[[float], None] | None = None
        """Called with the timer's ``now`` before a tick of a book with actions in
        flight (``run --record``: riskwatch/qfex/recorder.py); a tick of an empty book
        changes nothing and is not reported."""
        self._receiving: str | None = None

    # --- timing knobs (tests shorten them) ----------------------------------------------

    @property
    def reply_timeout(self) -> float:
        """Seconds to wait for a command's reply."""
        return self.book.reply_timeout

    @reply_timeout.setter
    def reply_timeout(self, value: float) -> None:
        self.book.reply_timeout = value

    @property
    def confirm_timeout(self) -> float:
        """Seconds to wait for a pulse showing the effect."""
        return self.book.confirm_timeout

    @confirm_timeout.setter
    def confirm_timeout(self, value: float) -> None:
        self.book.confirm_timeout = value

    @property
    def backoff_initial(self) -> float:
        """First retry delay (doubling up to the cap)."""
        return self.book.backoff_initial

    @backoff_initial.setter
    def backoff_initial(self, value: float) -> None:
        self.book.backoff_initial = value

    # --- mode -----------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"armed"`` or ``"dry-run"`` (the kill switch is separate: :attr:`kill_switch`)."""
        return self.book.mode

    @property
    def kill_switch(self) -> bool:
        """True while every action is disarmed."""
        return self.book.kill_switch

    @property
    def armed(self) -> bool:
        """True when actions are really sent: mode ``armed`` and the kill switch off."""
        return self.book.armed

    def announce(self) -> str:
        """The start-up line stating the mode (logged at WARNING when armed)."""
        if self.kill_switch:
            text = "actions DISARMED by the kill switch: nothing will be sent"
        elif self.mode == "armed":
            text = "actions ARMED: protective commands will be sent to the exchange"
        else:
            text = "actions in DRY-RUN mode: actions are logged and notified, never sent"
        log.log(logging.WARNING if self.armed else logging.INFO, "%s", text)
        return text

    def arm(self, actor: str) -> dict[str, Any]:
        """Switch to ``armed`` and clear the kill switch (operator action)."""
        self.book.arm()
        with contextlib.suppress(FileNotFoundError):
            self._kill_file.unlink()
        log.warning("actions ARMED by %s", actor)
        return self.status()

    def disarm(self, actor: str) -> dict[str, Any]:
        """Engage the kill switch (operator action): no new action, no further attempt,
        every queued frame dropped (and recorded so)."""
        now = self.clock.now()
        out = self.book.disarm(now, actor)
        log.warning("actions DISARMED (kill switch) by %s", actor)
        self._apply(out)
        try:
            self._kill_file.write_text(
                json.dumps({"by": actor, "at": now}) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            log.error("kill switch engaged but not persisted to %s: %s", self._kill_file, exc)
        return self.status()

    def status(self) -> dict[str, Any]:
        """``{"mode", "armed", "kill_switch", "in_flight"}`` for the API."""
        return {
            "mode": self.mode,
            "armed": self.armed,
            "kill_switch": self.kill_switch,
            "in_flight": [
                {
                    "account": f.cmd.account,
                    "rule": f.cmd.rule,
                    "action": f.cmd.summary,
                    "attempt": f.cmd.attempt,
                    "phase": f.phase.value,
                    "held": f.held or None,
                    "client_order_id": f.cmd.client_order_id,
                    "last_error": f.error,
                }
                for f in self.book.flights()
            ],
        }

    def recent(self, limit: int = _RECENT) -> list[dict[str, Any]]:
        """The audit log's latest rows, newest first, as JSON-able dicts."""
        return [_row(r) for r in self.store.actions(limit=limit)]

    # --- inputs ---------------------------------------------------------------------

    def on_decision(self, decision: Decision) -> None:
        """Plan and run the intents of an engine decision (a ``decision_listeners``
        entry); intents already taken by :meth:`on_intent` are skipped by the book."""
        if self.gate is not None:
            for t in decision.transitions:
                if t.reason in (TransitionReason.RESOLVED, TransitionReason.LATCH_RESET):
                    self.gate.resolved(t.rule, t.account, t.symbol)
        for intent in decision.intents:
            if not self.book.seen(intent):
                self.handle_intent(intent, self.clock.now())

    def on_intent(self, intent: ActionIntent) -> None:
        """Plan and run one intent as the engine makes it (``AccountCore.on_intent``)."""
        if not self.book.seen(intent):
            self.handle_intent(intent, self.clock.now())

    def handle_intent(self, intent: ActionIntent, now: float) -> None:
        """Plan one intent, record it, then send (armed) or close it as ``dry_run``."""
        if self.gate is not None:
            admitted = self.gate.admit(intent)
            if admitted is None:
                return
            intent = admitted
        account = intent.account
        self._seed(account, now)
        key = planner.trip_key(intent.rule, account, intent.symbol, intent.trip_id)
        try:
            recorded = {(r.action, r.symbol) for r in self.store.actions_for_trip(key)}
        except StateStoreError as exc:
            log.error("audit log unreadable for trip %s, deduplicating in memory: %s", key, exc)
            recorded = set()
        self._apply(self.book.on_intent(intent, now, recorded))
        self._release()

    def frame_started(self, account: str) -> None:
        """A trade frame of ``account`` is being handled: frames released now are returned
        by the :meth:`on_events` call that follows, and written on the same loop turn."""
        self._receiving = account

    def on_events(self, account: str, events: Sequence[Event], now: float) -> list[str]:
        """Read one frame's events (after the account state took them); return frames
        to write now. ``now`` is the frame's receive time."""
        self._receiving = None
        if self.gate is not None:
            self.gate.observe(account, events, now)
        if self.book.watching(account):
            out = self.book.on_events(account, events, now)
            if out:
                self._apply(out)
        return self._release(account)

    def on_status(self, account: str, connected: bool, now: float) -> None:
        """The account's link went up (authenticated and subscribed) or down."""
        if connected:
            self._seed(account, now)  # before any frame can trip a rule
        self._apply(self.book.on_status(account, connected, now))
        self._release()

    def take_over(self, now: float) -> int:
        """This replica became the leader: plan the leader-only actions a follower set
        aside that are still wanted (riskwatch/ha/gate.py); return how many intents."""
        if self.gate is None:
            return 0
        intents = self.gate.take_over(now)
        for intent in intents:
            log.warning(
                "leader: taking over %s of rule %s on %s",
                ", ".join(a.kind for a in intent.actions),
                intent.rule,
                intent.account,
                extra={"account": intent.account, "rule": intent.rule, "role": "leader"},
            )
            self.handle_intent(intent, now)
        return len(intents)

    def tick(self, now: float) -> None:
        """Timeouts, backoffs and queued sends; call a few times a second."""
        out = self.book.tick(now)
        if out:
            self._apply(out)
        self._release()

    async def run(self, interval: float = 0.1) -> None:
        """Call :meth:`tick` every ``interval`` seconds until cancelled."""
        while True:
            try:
                now = self.clock.now()
                if self.on_tick is not None and self.book.flights():
                    self.on_tick(now)
                self.tick(now)
            except Exception:  # a bug here must not end the timer
                log.exception("action executor tick failed")
            await asyncio.sleep(interval)

    def resume(self, now: float) -> int:
        """Take over the audit log's unfinished actions after a restart; return how many.

        They are reconciled on the account's next connection, never resent blindly.
        """
        rows = [(rec, first_intent_at(self.store, rec)) for rec in self.store.unfinished_actions()]
        out, count = self.book.resume(rows, now)
        self._apply(out)
        for f in self.book.flights():
            log.warning(
                "action %s of rule %s on %s (attempt %d) was unconfirmed at restart: "
                "reconciling, not resending",
                f.cmd.summary,
                f.cmd.rule,
                f.cmd.account,
                f.cmd.attempt,
            )
        return count

    # --- carrying out the book's outputs ------------------------------------------------

    def _seed(self, account: str, now: float) -> None:
        if not self.book.needs_window(account):
            return
        try:
            rows = window_rows(self.store, account, now)
        except StateStoreError as exc:
            log.error(
                "audit log unreadable: circuit breaker of %s counts from now: %s", account, exc
            )
            rows = []
        self.book.seed_window(account, rows, now)

    def _apply(self, out: Output) -> None:
        """Events and metrics, then records, then frames (module docstring)."""
        self._publish(out)
        if out.records:
            self._write(out.records)
        for frame in out.frames:
            with contextlib.suppress(ConnectionError):
                self._send(frame.account, frame.frame)

    def _write(self, records: Sequence[Record]) -> None:
        skipped: set[str] = set()
        for rec in records:
            if rec.action_id in skipped:
                continue
            try:
                self._writer.write(rec)
            except DuplicateActionError as exc:
                log.info("action already recorded (%s): not sent again", exc)
                skipped.add(rec.action_id)
                self._apply(self.book.write_failed(rec, str(exc), self.clock.now(), duplicate=True))
                continue
            except (StateStoreError, sqlite3.Error, OSError) as exc:
                log.critical(
                    "audit log unwritable (%s of %s): %s", type(rec).__name__, rec.action_id, exc
                )
                if self.on_store_error is not None:
                    op = "intent" if isinstance(rec, IntentRecord) else "outcome"
                    self.on_store_error(op, str(exc))
                skipped.add(rec.action_id)
                self._apply(
                    self.book.write_failed(rec, str(exc), self.clock.now(), duplicate=False)
                )
                continue

    def _release(self, receiving: str | None = None) -> list[str]:
        """Write the frames the book releases now; those of ``receiving`` (the account
        whose frame is being handled) are returned instead, for the caller to write.
        The bookkeeping follows once the frames are written."""
        if self._receiving is not None or not self.book.queued:
            return []  # nothing waits, or released by the on_events call ending this frame
        out = self.book.release(self.clock.now())
        if not out.frames:
            return []
        mine: list[str] = []
        for frame in out.frames:
            if frame.account == receiving:
                mine.append(frame.frame)
                continue
            try:
                self._send(frame.account, frame.frame)
            except ConnectionError:
                if frame.action_id is not None:
                    self.book.send_failed(frame.action_id, self.clock.now())
        if mine:
            # Bookkeeping (metrics, log, events, mark_sent) once the frames are written:
            # the caller writes them when this returns (docs/performance.md).
            try:
                asyncio.get_running_loop().call_soon(self._after_send, out)
            except RuntimeError:
                self._after_send(out)
        else:
            self._after_send(out)
        return mine

    def _after_send(self, out: Output) -> None:
        self._apply(
            Output(
                events=out.events, counts=out.counts, latencies=out.latencies, records=out.records
            )
        )

    def _publish(self, out: Output) -> None:
        actions = self.metrics.actions
        for action, result in out.counts:
            actions.labels(action, result).inc()
        for action in out.retries:
            self.metrics.action_retries.labels(action).inc()
        for latency in out.latencies:
            self.metrics.pulse_to_action_seconds.observe(latency)
        for event in out.events:
            _log_event(event)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # a listener's bug must not stop an action
                    log.exception("action listener failed")


def _log_event(event: ActionEvent) -> None:
    level = _LEVELS.get(event.kind, logging.WARNING)
    extra = {
        "account": event.account,
        "rule": event.rule,
        "symbol": event.symbol,
        "action_id": event.action_id,
        "trip_id": event.trip_id,
    }
    if event.kind == "sent":
        log.log(
            level,
            "SENT %s (rule %s, %s, attempt %d, client_order_id %s)",
            event.summary,
            event.rule,
            event.account,
            event.attempt,
            event.client_order_id or "-",
            extra=extra,
        )
    elif event.kind == "escalation":
        log.log(level, "ESCALATION %s", event.text, extra=extra)
    else:
        log.log(level, "%s", event.text, extra=extra)


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
