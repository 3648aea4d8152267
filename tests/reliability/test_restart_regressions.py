"""Regressions found by the kill loop: a restart must finish a trip's actions, never repeat them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from riskwatch.actions import confirm
from riskwatch.actions import plan as planner
from riskwatch.actions.executor import ActionExecutor
from riskwatch.actions.flight import Flight, Phase
from riskwatch.clock import ManualClock
from riskwatch.config import ActionsConfig
from riskwatch.metrics import Metrics
from riskwatch.rules.engine import Decision, RulesState, StateRecords, evaluate
from riskwatch.rules.load import load_rules_text
from riskwatch.rules.model import RuleSet
from riskwatch.state.account import initial
from riskwatch.state.catalogue import ACCOUNT_NAMES
from riskwatch.state.derived import Figures
from riskwatch.store import Store

T0 = 1_767_225_600.0

FLATTEN = """
rules:
  - name: L
    when: equity < 100
    latch: true
    severity: critical
    actions: [cancel_all_orders, {close_position: all}]
  - name: S
    when: equity < 100
    mode: shadow
    severity: critical
    actions: [cancel_all_orders]
  - name: N
    when: equity < 100
    severity: warning
"""


def _eval(rs: RuleSet, st: RulesState, t: float, equity: float, confirmed: bool = True) -> Decision:
    acc: dict[str, float | None] = dict.fromkeys(ACCOUNT_NAMES)
    acc["equity"] = equity
    return evaluate(
        rs, st, Figures(acc, {}, confirmed, T0 + t), T0 + t, stale=False, trigger="pulse"
    )


def _saved_without_owed(st: RulesState) -> StateRecords:
    """The records as the state database holds them after the FIRING save (no owed key)."""
    saved = st.to_records()
    alerts: list[Any] = json.loads(json.dumps([list(a) for a in saved.alerts]))
    for _rule, _sym, record in alerts:
        record.pop("owed_trip", None)
    return StateRecords(tuple((r, s, rec) for r, s, rec in alerts), saved.daily, saved.windows)


def test_restored_firing_trip_offers_its_intent_again_once() -> None:
    """A FIRING action rule restored from the database re-offers its trip's intent once."""
    rs = load_rules_text(FLATTEN)
    st = RulesState("a", rs)
    first = _eval(rs, st, 0, equity=50)
    assert [(i.rule, i.trip_id) for i in first.intents] == [("L", 1)]
    # Killed after the FIRING save, before the executor recorded every command.
    st2 = RulesState.from_records("a", rs, _saved_without_owed(st))
    assert not _eval(rs, st2, 1, equity=50, confirmed=False).intents  # waits for a pulse
    again = _eval(rs, st2, 2, equity=50)
    assert [(i.rule, i.trip_id) for i in again.intents] == [("L", 1)]  # same trip: same ids
    assert not again.transitions
    assert not _eval(rs, st2, 3, equity=50).intents  # offered once only


def test_restored_trip_is_not_offered_when_the_condition_no_longer_holds() -> None:
    """A restored trip whose condition cleared (latch reported) is never offered again."""
    rs = load_rules_text(FLATTEN)
    st = RulesState("a", rs)
    _eval(rs, st, 0, equity=50)
    _eval(rs, st, 1, equity=500)  # LATCHED: the condition cleared, the trip is over
    st2 = RulesState.from_records("a", rs, _saved_without_owed(st))
    assert not _eval(rs, st2, 2, equity=50).intents
    st3 = RulesState.from_records("a", rs, _saved_without_owed(st))
    assert not _eval(rs, st3, 2, equity=500).intents


class _Killed(BaseException):
    """Stands for SIGKILL at one exact write."""


def test_kill_between_the_two_writes_of_a_retry_loses_no_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the two writes of a retry, the restart still owns an unfinished attempt."""
    monkeypatch.setattr(confirm, "effect", lambda *_a, **_k: False)  # the position is still open
    store = Store.open(tmp_path / "state.db")

    def executor() -> ActionExecutor:
        return ActionExecutor(
            ActionsConfig(mode="armed"),
            store=store,
            metrics=Metrics(CollectorRegistry(), version="test"),
            clock=ManualClock(T0),
            snapshot_of=initial,
            is_stale=lambda _a, _t: False,
            send=lambda _a, _f: T0,
        )

    first = executor()
    cmd = planner.command(
        rule="L", account="a", trip_id=1, scope_symbol=None, action="close_position",
        symbol="AAPL-USD", attempt=1, params={"target": "all", "position": 250.0},
    )  # fmt: skip
    store.record_intent(
        action_id=cmd.action_id, trip_key=cmd.trip_key, rule=cmd.rule, account="a",
        symbol=cmd.symbol, action=cmd.action, params=cmd.params, client_order_id=None,
        reason="test", mode="armed", now=T0,
    )  # fmt: skip
    store.mark_sent(cmd.action_id, T0)
    flight = Flight(
        cmd, json.loads(cmd.frame), first_at=T0, decided_at=T0, trigger_at=None,
        phase=Phase.BACKOFF, next_at=T0 + 1,
    )  # fmt: skip
    first.book._flights["a"] = {"x": flight}
    writes = {"n": 0}
    real_intent, real_outcome = store.record_intent, store.record_outcome

    def counted(real: Any) -> Any:
        def write(*args: Any, **kwargs: Any) -> Any:
            writes["n"] += 1
            if writes["n"] == 2:
                raise _Killed
            return real(*args, **kwargs)

        return write

    monkeypatch.setattr(store, "record_intent", counted(real_intent))
    monkeypatch.setattr(store, "record_outcome", counted(real_outcome))
    with pytest.raises(_Killed):
        first.tick(T0 + 1)
    monkeypatch.setattr(store, "record_intent", real_intent)
    monkeypatch.setattr(store, "record_outcome", real_outcome)
    second = executor()
    assert second.resume(T0 + 2) == 1
    rows = {r.attempt: r.status for r in store.actions(account="a")}
    assert rows == {1: "retried", 2: "intent"}
    (flight2,) = second.book.flights()
    assert flight2.cmd.attempt == 2
    assert flight2.phase is Phase.RECONCILE
    store.close()
