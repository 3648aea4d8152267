"""The action book, driven directly: guards at the moment of sending, disarm, the
storage-fault policy, reply correlation in the documented forms, retries."""

from __future__ import annotations

import json
from typing import Any

from riskwatch.actions import confirm, model
from riskwatch.actions.book import ActionBook
from riskwatch.actions.confirm import result_of_rejection
from riskwatch.actions.flight import Phase
from riskwatch.actions.notices import to_notice
from riskwatch.actions.outputs import IntentRecord, OutcomeRecord, Output, SentRecord
from riskwatch.config import ActionsConfig
from riskwatch.durations import Duration
from riskwatch.model import Event
from riskwatch.pipeline import AccountCore
from riskwatch.qfex.session import TradeSession, normalised_request
from riskwatch.rules.engine import ActionIntent
from riskwatch.rules.model import Action
from riskwatch.state.account import AccountSnapshot

T0 = 1_767_225_600.0
ACC = "desk-a"
SYM = "AAPL-USD"


class CoreView:
    """A real account core as the book's view, fed through a live session (which
    correlates replies with the commands written through :meth:`write`)."""

    def __init__(self) -> None:
        self.core = AccountCore(ACC, stale_after=5.0)
        self.session = TradeSession(public_key="pk", secret_key="sk")
        self.session.connection_made(T0)
        self.session.receive_text('{"authenticated": true}', T0)
        for channel in self.session.channels:
            self.session.receive_text(json.dumps({"subscribed": channel}), T0)
        self.session.data_to_send()
        self.session.events_received()

    def snapshot(self, account: str) -> AccountSnapshot:
        return self.core.snapshot

    def stale(self, account: str, now: float) -> bool:
        return self.core.is_stale(now)

    def write(self, out: Output, now: float) -> Output:
        for frame in out.frames:
            self.session.send(frame.frame, now)
        self.session.data_to_send()
        return out

    def frame(self, doc: dict[str, Any], now: float) -> list[Event]:
        self.session.receive_text(json.dumps(doc), now)
        events = self.session.events_received()
        self.core.handle(events, now)
        return events

    def pulse(self, position: float, now: float, open_orders: int = 0) -> list[Event]:
        events = self.frame(
            {
                "position_response": {
                    "id": "p", "symbol": SYM, "position": position, "margin_alloc": 0.0,
                    "realised_pnl": 0.0, "unrealised_pnl": -50.0 if position else 0.0,
                    "net_funding": 0.0, "open_orders": float(open_orders),
                    "open_quantity": 0, "leverage": 10.0, "initial_margin": 0.1,
                    "maintenance_margin": 0.05, "average_price": 200.0 if position else 0.0,
                }
            },
            now,
        )  # fmt: skip
        return events + self.frame(
            {
                "balance_response": {
                    "id": "b", "user_id": "u", "deposit": 10_000.0, "realised_pnl": 0.0,
                    "order_margin": 0.0, "position_margin": 100.0, "unrealised_pnl": 0.0,
                    "net_funding": 0.0, "available_balance": 9_000.0,
                }
            },
            now,
        )  # fmt: skip


def _intent(*actions: Action, at: float = T0, trip: int = 1) -> ActionIntent:
    return ActionIntent(
        rule="R", account=ACC, symbol=SYM, actions=actions, trip_id=trip, confirm="pulse",
        exchange_confirmed=True, severity="critical", at=at, trigger="pulse",
    )  # fmt: skip


def _book(view: CoreView, **config: Any) -> ActionBook:
    cfg = ActionsConfig(mode="armed", **config)
    book = ActionBook(cfg, view, reply_timeout=1.0, confirm_timeout=1.0, backoff_initial=0.1)
    book.seed_window(ACC, [], T0)
    return book


def _ready(position: float = 250.0, open_orders: int = 0) -> tuple[CoreView, ActionBook]:
    view = CoreView()
    view.pulse(position, T0, open_orders)
    book = _book(view)
    book.on_status(ACC, True, T0)
    return view, book


CLOSE = Action("close_position")
CANCEL = Action("cancel_all_orders")
REDUCE = Action("reduce_position", fraction=0.5, over=60.0)


def _frames(out: Output) -> list[dict[str, Any]]:
    return [json.loads(f.frame) for f in out.frames]


def test_a_fresh_decision_is_recorded_before_its_frame_leaves() -> None:
    """on_intent records the intent; release writes the frame and records it sent."""
    _, book = _ready()
    planned = book.on_intent(_intent(CLOSE), T0)
    assert not planned.frames
    assert [type(r) for r in planned.records] == [IntentRecord]
    sent = book.release(T0 + 0.001)
    assert [f["type"] for f in _frames(sent)] == ["close_position"]
    assert [type(r) for r in sent.records] == [SentRecord]
    assert [e.kind for e in sent.events] == ["sent"]
    assert sent.counts == [("close_position", "sent")]
    (latency,) = sent.latencies
    assert abs(latency - 0.001) < 1e-6
    assert not book.release(T0 + 0.002).frames  # once


def test_an_intent_handed_over_twice_is_planned_once() -> None:
    """The daemon hands an intent mid-evaluation and again with its decision."""
    _, book = _ready()
    intent = _intent(CLOSE)
    assert book.on_intent(intent, T0).records
    assert book.seen(intent)
    assert not book.on_intent(intent, T0)


def test_no_frame_leaves_on_stale_data_and_the_next_fresh_pulse_decides() -> None:
    """Stale at the moment of sending: held; a fresh pulse with the position still open sends."""
    view, book = _ready()
    book.on_intent(_intent(CLOSE), T0)
    later = T0 + 6.0  # stale_after is 5 s
    assert not book.release(later).frames
    (flight,) = book.flights()
    assert flight.phase is Phase.QUEUED
    assert flight.held == "stale"
    events = view.pulse(250.0, later + 1)
    book.on_events(ACC, events, later + 1)
    assert [f["type"] for f in _frames(book.release(later + 1))] == ["close_position"]


def test_an_old_decision_is_confirmed_without_sending_when_the_pulse_shows_the_effect() -> None:
    """After a disconnect the position was closed by someone else: nothing is sent."""
    view, book = _ready()
    book.on_status(ACC, False, T0)
    book.on_intent(_intent(CLOSE), T0)
    assert not book.release(T0).frames  # not connected
    book.on_status(ACC, True, T0 + 8)
    assert not book.release(T0 + 8).frames  # decided 8 s ago: held
    out = book.on_events(ACC, view.pulse(0.0, T0 + 8.5), T0 + 8.5)
    assert [e.kind for e in out.events] == ["confirmed"]
    assert "before the frame left" in out.events[0].detail
    assert not book.release(T0 + 8.5).frames
    assert not book.flights()


def test_an_old_reduce_is_not_sent_on_a_new_pulse() -> None:
    """A TWAP sized on old state fails DECISION_EXPIRED instead of leaving late."""
    view, book = _ready()
    book.on_status(ACC, False, T0)
    book.on_intent(_intent(REDUCE), T0)
    book.on_status(ACC, True, T0 + 8)
    assert not book.release(T0 + 8).frames
    out = book.on_events(ACC, view.pulse(250.0, T0 + 8.5), T0 + 8.5)
    assert [e.code for e in out.events if e.kind == "escalation"] == [model.DECISION_EXPIRED]
    assert not book.release(T0 + 8.5).frames


def test_disarm_drops_every_queued_frame_and_records_it() -> None:
    """A command queued during a disconnect never leaves after disarm."""
    _, book = _ready()
    book.on_status(ACC, False, T0)
    book.on_intent(_intent(CANCEL, CLOSE), T0)
    out = book.disarm(T0 + 1, "api (127.0.0.1)")
    outcomes = [r for r in out.records if isinstance(r, OutcomeRecord)]
    assert len(outcomes) == 2
    assert all(r.status == "failed" and r.detail.startswith("KILL_SWITCH: queued frame dropped")
               for r in outcomes)  # fmt: skip
    book.on_status(ACC, True, T0 + 1.5)
    assert not book.release(T0 + 1.5).frames
    assert not book.flights()


def test_disarmed_at_the_moment_of_sending_fails_the_action() -> None:
    """Even without disarm()'s sweep, release refuses to send while disarmed."""
    _, book = _ready()
    book.on_intent(_intent(CLOSE), T0)
    book._kill = True
    out = book.release(T0)
    assert not out.frames
    assert [e.code for e in out.events if e.kind == "failed"] == [model.KILL_SWITCH]


def test_audit_failure_sends_close_and_cancel_but_not_reduce() -> None:
    """The storage-fault policy: harmless actions leave, the others do not; both escalate."""
    _, book = _ready()
    planned = book.on_intent(_intent(CANCEL, CLOSE), T0)
    outs = [book.write_failed(r, "disk I/O error", T0, duplicate=False) for r in planned.records]
    texts = [e.detail for o in outs for e in o.events]
    assert all(e.kind == "escalation" and e.code == model.AUDIT_UNWRITABLE
               for o in outs for e in o.events)  # fmt: skip
    assert texts == ["audit log unwritable: disk I/O error; sent anyway (harmless to repeat)"] * 2
    assert ("close_position", "audit_failed") in outs[1].counts
    assert ("close_position", "unaudited") in outs[1].counts
    sent = book.release(T0)
    assert sorted(f["type"] for f in _frames(sent)) == ["cancel_all_orders", "close_position"]
    assert not sent.records  # no row to mark sent

    notice = to_notice(outs[1].events[0])
    assert notice is not None
    assert notice.kind == "audit"
    assert notice.always

    _, book = _ready()
    planned = book.on_intent(_intent(REDUCE), T0)
    (rec,) = planned.records
    out = book.write_failed(rec, "database is locked", T0, duplicate=False)
    assert out.events[0].detail == "audit log unwritable: database is locked; not sent"
    assert not book.release(T0).frames
    assert not book.flights()


def test_a_duplicate_intent_is_never_sent() -> None:
    """An earlier life of the daemon recorded this attempt: it does not leave again."""
    _, book = _ready()
    (rec,) = book.on_intent(_intent(CLOSE), T0).records
    book.write_failed(rec, "already recorded", T0, duplicate=True)
    assert not book.release(T0).frames


def _sent(view: CoreView, book: ActionBook, *actions: Action) -> list[dict[str, Any]]:
    book.on_intent(_intent(*actions), T0)
    return _frames(view.write(book.release(T0), T0))


def test_close_reply_without_client_order_id_is_matched_by_symbol() -> None:
    """The documented ACK carries client_order_id "": a rejection still reaches the flight."""
    view, book = _ready()
    _sent(view, book, CLOSE)
    reply = {
        "order_response": {
            "order_id": "o1", "client_order_id": "", "symbol": SYM, "status": "BAD_SYMBOL",
            "side": "SELL", "order_type": "MARKET", "time_in_force": "IOC",
            "quantity": 250.0, "quantity_remaining": 250.0, "price": 0.0,
        }
    }  # fmt: skip
    events = view.frame(reply, T0 + 0.1)
    out = book.on_events(ACC, events, T0 + 0.1)  # not retryable: fails at the reply
    failed = [e for e in out.events if e.kind == "escalation"]
    assert failed[0].code == model.REJECTED
    assert failed[0].detail == "order_response BAD_SYMBOL"
    assert ("close_position", "rejected_bad_symbol") in out.counts
    assert not book.flights()


def test_err_with_a_reserialised_echo_is_matched_and_not_retried() -> None:
    """err PermissionDenied echoing the request with nulls added: one send, no retry."""
    view, book = _ready(position=0.0, open_orders=1)
    (frame,) = _sent(view, book, CANCEL)
    view.session.send('{"type": "get_user_orders", "params": {}}', T0)  # another pending
    echo = {"params": {**frame["params"], "symbol": None}, "type": frame["type"]}
    err = {"err": {"error_code": "PermissionDenied", "message": "no", "incoming_message": echo}}
    out = book.on_events(ACC, view.frame(err, T0 + 0.1), T0 + 0.1)
    (esc,) = [e for e in out.events if e.kind == "escalation"]
    assert esc.detail == "err PermissionDenied: no"
    assert ("cancel_all_orders", "rejected_permissiondenied") in out.counts
    assert not book.tick(T0 + 10).frames
    assert not book.release(T0 + 10).frames


def test_an_echo_of_another_type_is_not_pinned_on_a_flight() -> None:
    """An err answering some other command leaves the action waiting for its own reply."""
    view, book = _ready(position=0.0, open_orders=1)
    _sent(view, book, CANCEL)
    view.session.send('{"type": "get_user_orders", "params": {}}', T0)
    echo = {"type": "get_user_orders", "params": {}}
    err = {"err": {"error_code": "ServerError", "message": None, "incoming_message": echo}}
    book.on_events(ACC, view.frame(err, T0 + 0.1), T0 + 0.1)
    (flight,) = book.flights()
    assert flight.phase is Phase.REPLY
    assert not flight.error


def test_set_leverage_ack_with_a_reserialised_echo_is_matched() -> None:
    """An ack echoing set_user_leverage with 10.0 for 10 and added nulls answers it."""
    view, book = _ready(position=0.0)
    (frame,) = _sent(view, book, Action("set_leverage", leverage=10))
    echo = {"type": frame["type"], "params": {**frame["params"], "leverage": 10.0, "x": None}}
    book.on_events(ACC, view.frame({"ack": {"incoming_message": echo}}, T0 + 0.1), T0 + 0.1)
    (flight,) = book.flights()
    assert flight.phase is Phase.PULSE
    assert flight.replied


def test_normalised_compares_as_the_exchange_reserialises() -> None:
    """Key order, added nulls and 10 vs 10.0 do not matter."""
    sent = {"type": "set_user_leverage", "params": {"symbol": SYM, "leverage": 10}}
    echo = {
        "params": {"leverage": 10.0, "symbol": SYM, "account_id": None},
        "type": "set_user_leverage",
    }
    assert normalised_request(sent) == normalised_request(echo)
    assert result_of_rejection("NOT_A_CODE") == "rejected_other"


def test_partial_fill_retries_with_a_new_client_order_id() -> None:
    """A position still open after the reply: the next attempt has new ids and a new record."""
    view, book = _ready()
    (first,) = _sent(view, book, CLOSE)
    book.on_events(ACC, view.pulse(100.0, T0 + 0.2), T0 + 0.2)  # no reply yet: waits
    book.tick(T0 + 1.5)  # no reply within 1 s → waits for a pulse
    book.on_events(ACC, view.pulse(100.0, T0 + 1.6), T0 + 1.6)  # effect not seen → backoff
    out = book.tick(T0 + 1.8)
    kinds = [(type(r).__name__, getattr(r, "status", "")) for r in out.records]
    assert kinds == [("IntentRecord", ""), ("OutcomeRecord", "retried")]
    assert out.retries == ["close_position"]
    (second,) = _frames(book.release(T0 + 1.8))
    assert second["params"]["client_order_id"] != first["params"]["client_order_id"]


def test_breaker_refuses_beyond_the_hourly_limit() -> None:
    """The per-account limit counts actions of the last hour; one breaker_open event."""
    view = CoreView()
    view.pulse(250.0, T0)
    book = ActionBook(ActionsConfig(mode="armed", max_per_account_per_hour=1), view)
    book.seed_window(ACC, [], T0)
    book.on_intent(_intent(CLOSE, trip=1), T0)
    out = book.on_intent(_intent(CLOSE, trip=2), T0 + 1)
    assert [e.kind for e in out.events] == ["refused", "breaker_open"]
    assert out.events[0].code == model.CIRCUIT_BREAKER_OPEN


def test_max_decision_age_comes_from_the_config() -> None:
    """actions.max_decision_age bounds the age of a decision whose frame leaves."""
    view = CoreView()
    book = ActionBook(ActionsConfig(mode="armed", max_decision_age=Duration(2_000)), view)
    assert book.max_decision_age == 2.0


def test_cancel_is_judged_on_a_whole_pulse_only() -> None:
    """A pulse's first position frame alone does not confirm a cancel: its balance
    frame, which closes the pulse, must have come too (a later symbol may hold orders)."""
    view, book = _ready(position=0.0, open_orders=1)
    _sent(view, book, CANCEL)
    (flight,) = book.flights()
    events = view.pulse(0.0, T0 + 1)
    position_frame, balance_frame = events[:1], events[1:]
    before_balance = view.core.snapshot._replace(last_balance_at=T0)
    assert position_frame
    assert balance_frame
    assert confirm.effect(flight.cmd, before_balance, T0 + 0.5) is None
    assert confirm.effect(flight.cmd, view.core.snapshot, T0 + 0.5) is True


def test_a_later_record_that_fails_escalates_once_a_minute() -> None:
    """A sent time or an outcome the store cannot take: one escalation naming the account,
    then silence for a minute (a failing store fails every write)."""
    _, book = _ready()
    book.on_intent(_intent(CLOSE), T0)
    (sent,) = [r for r in book.release(T0).records if isinstance(r, SentRecord)]
    first = book.write_failed(sent, "disk I/O error", T0, duplicate=False)
    (event,) = first.events
    assert (event.kind, event.code, event.account) == ("escalation", model.AUDIT_UNWRITABLE, ACC)
    assert event.detail == "audit log unwritable: disk I/O error"
    assert not book.write_failed(sent, "disk I/O error", T0 + 30, duplicate=False).events
    assert book.write_failed(sent, "disk I/O error", T0 + 61, duplicate=False).events
