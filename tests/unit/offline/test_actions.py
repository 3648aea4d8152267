"""The action book's offline shell: session correlation, reconnects in the stream, the
audit log in memory."""

from __future__ import annotations

import json

from riskwatch.actions.flight import Phase
from riskwatch.actions.memlog import MemoryAuditLog
from riskwatch.actions.model import Refusal
from riskwatch.actions.outputs import IntentRecord, OutcomeRecord, SentRecord
from riskwatch.config import ActionsConfig
from riskwatch.offline.actions import OfflineActions
from riskwatch.pipeline import AccountCore
from riskwatch.rules.engine import ActionIntent
from riskwatch.rules.model import Action

T0 = 1_767_225_600.0
ACC = "desk-a"
SYM = "AAPL-USD"


def _position(size: float) -> str:
    return json.dumps(
        {
            "position_response": {
                "id": "p", "symbol": SYM, "position": size, "margin_alloc": 0.0,
                "realised_pnl": 0.0, "unrealised_pnl": -50.0, "net_funding": 0.0,
                "open_orders": 0.0, "open_quantity": 0, "leverage": 10.0,
                "initial_margin": 0.1, "maintenance_margin": 0.05, "average_price": 200.0,
            }
        }
    )  # fmt: skip


def _balance() -> str:
    return json.dumps(
        {
            "balance_response": {
                "id": "b", "user_id": "u", "deposit": 10_000.0, "realised_pnl": 0.0,
                "order_margin": 0.0, "position_margin": 100.0, "unrealised_pnl": 0.0,
                "net_funding": 0.0, "available_balance": 9_000.0,
            }
        }
    )  # fmt: skip


def _feed(shell: OfflineActions, core: AccountCore, text: str, now: float) -> None:
    events = shell.receive(ACC, text, now)
    core.handle(events, now)
    shell.events(ACC, events, now)


def _armed() -> tuple[OfflineActions, AccountCore]:
    core = AccountCore(ACC, stale_after=5.0)
    shell = OfflineActions(ActionsConfig(mode="armed"), {ACC: core})
    _feed(shell, core, '{"authenticated": true}', T0)
    _feed(shell, core, _position(250.0), T0)
    _feed(shell, core, _balance(), T0)
    return shell, core


def _close(shell: OfflineActions, now: float) -> None:
    intent = ActionIntent(
        rule="R", account=ACC, symbol=SYM, actions=(Action("close_position"),), trip_id=1,
        confirm="pulse", exchange_confirmed=True, severity="critical", at=now, trigger="pulse",
    )  # fmt: skip
    out = shell.book.on_intent(intent, now)
    shell._apply(out, now)
    shell._release(now)


def test_a_released_command_is_kept_and_audited() -> None:
    """The frame the book releases is kept with its time; the log holds intent then sent."""
    shell, _ = _armed()
    _close(shell, T0 + 0.1)
    ((at, frame),) = shell.frames
    assert at == T0 + 0.1
    assert json.loads(frame.frame)["type"] == "close_position"
    (row,) = shell.log.rows
    assert (row.action, row.status, row.sent_at) == ("close_position", "sent", T0 + 0.1)


def test_a_reconnect_in_the_stream_reconciles_the_command_in_flight() -> None:
    """A second authenticated frame is a new connection: the command's outcome is unknown,
    get_user_orders is asked, and the next flat pulse confirms it."""
    shell, core = _armed()
    _close(shell, T0 + 0.1)
    _feed(shell, core, '{"authenticated": true}', T0 + 1.0)
    (flight,) = shell.book.flights()
    assert flight.phase is Phase.RECONCILE
    assert json.loads(shell.frames[-1][1].frame)["type"] == "get_user_orders"
    _feed(shell, core, json.dumps({"all_orders_response": {"orders": []}}), T0 + 1.1)
    _feed(shell, core, _position(0.0), T0 + 1.2)
    _feed(shell, core, _balance(), T0 + 1.2)
    assert not shell.book.flights()
    assert shell.log.rows[0].status == "confirmed"
    assert shell.log.rows[0].detail == "reconciled"


def test_memory_log_refuses_a_second_intent_of_one_attempt() -> None:
    """The same (trip, action, symbol, attempt) twice: the second write is refused."""
    log = MemoryAuditLog()
    refusal = Refusal(
        trip_key="R|a||1", trip_id=1, rule="R", account="a", symbol=None,
        action="cancel_all_orders", code="KILL_SWITCH", detail="actions are disarmed",
    )  # fmt: skip
    first = IntentRecord(refusal, "act-1", 1, "r", "armed", T0)
    assert log.write(first)
    assert not log.write(IntentRecord(refusal, "act-2", 1, "r", "armed", T0))
    assert log.write(OutcomeRecord("act-1", "refused", refusal.reason, T0))
    assert not log.write(SentRecord("act-unknown", T0))
    (row,) = log.rows
    assert (row.status, row.code) == ("refused", "KILL_SWITCH")


def test_a_disconnect_holds_commands_until_the_next_connection() -> None:
    """After a recorded disconnect the book sends nothing; the next connection's first
    frame lets the held command leave, into the new connection's session."""
    shell, core = _armed()
    shell.disconnected(ACC, T0 + 0.05)
    _close(shell, T0 + 0.1)
    assert shell.frames == []
    _feed(shell, core, '{"authenticated": true}', T0 + 1.0)
    ((at, frame),) = shell.frames
    assert at == T0 + 1.0
    assert json.loads(frame.frame)["type"] == "close_position"
    (row,) = shell.log.rows
    assert (row.status, row.sent_at) == ("sent", T0 + 1.0)


def test_a_disconnect_with_the_command_in_flight_reconciles_it() -> None:
    """A disconnect line ends the connection at its own time: the command in flight is
    reconciled on the next connection, as after a new authenticated frame."""
    shell, core = _armed()
    _close(shell, T0 + 0.1)
    shell.disconnected(ACC, T0 + 0.5)
    (flight,) = shell.book.flights()
    assert flight.phase is Phase.RECONCILE
    _feed(shell, core, '{"authenticated": true}', T0 + 1.0)
    assert json.loads(shell.frames[-1][1].frame)["type"] == "get_user_orders"
    assert shell.frames[-1][0] == T0 + 1.0
