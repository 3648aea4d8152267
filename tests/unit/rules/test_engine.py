"""Rule engine: lifecycle edges through evaluate(), intents, stale data, persistence."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from riskwatch.rules.engine import (
    DATA_STALE_RULE,
    Decision,
    RulesState,
    StateRecords,
    evaluate,
    reset_latch,
)
from riskwatch.rules.lifecycle import State, TransitionReason
from riskwatch.rules.load import load_rules_text
from riskwatch.rules.model import RuleSet
from riskwatch.state.catalogue import ACCOUNT_NAMES, POSITION_NAMES
from riskwatch.state.daily import DailyConfig
from riskwatch.state.derived import Figures

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def rules(text: str) -> RuleSet:
    return load_rules_text("rules:\n" + text)


def figs(
    account: dict[str, float | None] | None = None,
    positions: Mapping[str, Mapping[str, float | None]] | None = None,
    confirmed: bool = True,
) -> Figures:
    acc: dict[str, float | None] = dict.fromkeys(ACCOUNT_NAMES)
    acc.update(account or {})
    rows: dict[str, Any] = {
        sym: {**dict.fromkeys(POSITION_NAMES), **row} for sym, row in (positions or {}).items()
    }
    return Figures(acc, rows, confirmed, T0)


def run(
    rs: RuleSet,
    st: RulesState,
    t: float,
    *,
    trigger: str = "pulse",
    stale: bool = False,
    confirmed: bool = True,
    positions: Mapping[str, Mapping[str, float | None]] | None = None,
    **account: float | None,
) -> Decision:
    f = figs(account, positions, confirmed)
    return evaluate(rs, st, f, T0 + t, stale=stale, trigger=trigger)  # type: ignore[arg-type]


def reasons(d: Decision) -> list[tuple[str, str | None, TransitionReason]]:
    return [(tr.rule, tr.symbol, tr.reason) for tr in d.transitions]


MARGIN = """
  - name: M
    when: margin_usage > 0.8
    for: 10s
    severity: critical
    summary: "margin {{ margin_usage | pct }} on {{ account }}"
"""


def test_for_interrupted_restarts_the_timer() -> None:
    """A pending alert whose condition drops is cancelled and its `for` starts over."""
    rs = rules(MARGIN)
    st = RulesState("a", rs)
    assert reasons(run(rs, st, 0, margin_usage=0.9)) == [("M", None, TransitionReason.PENDING)]
    assert reasons(run(rs, st, 5, margin_usage=0.7)) == [
        ("M", None, TransitionReason.PENDING_CANCELLED)
    ]
    assert reasons(run(rs, st, 6, margin_usage=0.9)) == [("M", None, TransitionReason.PENDING)]
    assert reasons(run(rs, st, 12, margin_usage=0.9)) == []
    d = run(rs, st, 16, margin_usage=0.91)
    assert reasons(d) == [("M", None, TransitionReason.FIRING)]
    tr = d.transitions[0]
    assert tr.summary == "margin 91.0% on a"
    assert tr.values["margin_usage"] == 0.91
    assert tr.values["value"] == 0.91
    assert tr.trip_id == 1
    assert tr.severity == "critical"
    assert [a.rule for a in d.alerts] == ["M"]
    assert d.alerts[0].state is State.FIRING


def test_hysteresis_prevents_flapping() -> None:
    """With clear_when an oscillating value fires once; without it the alert flaps."""
    rs = rules(
        """
  - name: Hyst
    when: margin_usage > 0.8
    clear_when: margin_usage < 0.7
  - name: Plain
    when: margin_usage > 0.8
"""
    )
    st = RulesState("a", rs)
    seen: list[tuple[str, str | None, TransitionReason]] = []
    for i, v in enumerate([0.81, 0.79, 0.82, 0.75, 0.85, 0.71]):
        seen += reasons(run(rs, st, i, margin_usage=v))
    hyst = [r for n, _, r in seen if n == "Hyst"]
    plain = [r for n, _, r in seen if n == "Plain"]
    assert hyst == [TransitionReason.FIRING]
    assert plain == [TransitionReason.FIRING, TransitionReason.RESOLVED] * 3
    assert reasons(run(rs, st, 10, margin_usage=0.69)) == [
        ("Hyst", None, TransitionReason.RESOLVED)
    ]


def test_keep_firing_for_resolves_on_tick() -> None:
    """A cleared alert stays firing for keep_firing_for, then a tick resolves it."""
    rs = rules("  - name: K\n    when: equity < 100\n    keep_firing_for: 10s\n")
    st = RulesState("a", rs)
    assert reasons(run(rs, st, 0, equity=50)) == [("K", None, TransitionReason.FIRING)]
    assert reasons(run(rs, st, 1, equity=150)) == []
    assert reasons(run(rs, st, 5, trigger="tick", equity=150)) == []
    assert reasons(evaluate(rs, st, None, T0 + 10.5, stale=False, trigger="tick")) == []
    assert reasons(evaluate(rs, st, None, T0 + 11, stale=False, trigger="tick")) == [
        ("K", None, TransitionReason.RESOLVED)
    ]


def test_latch_and_reset_give_one_intent_per_trip() -> None:
    """A latched rule acts once, stays firing when clear, and acts again after reset."""
    rs = rules(
        "  - name: L\n    when: equity < 100\n    latch: true\n"
        "    actions: [cancel_all_orders, {close_position: all}]\n"
    )
    st = RulesState("a", rs)
    d = run(rs, st, 0, equity=50)
    assert [(i.rule, i.trip_id, i.exchange_confirmed) for i in d.intents] == [("L", 1, True)]
    assert [str(a) for a in d.intents[0].actions] == ["cancel_all_orders", "close_position all"]
    d = run(rs, st, 1, equity=150)
    assert reasons(d) == [("L", None, TransitionReason.LATCHED)]
    assert not d.intents
    assert d.alerts[0].latched
    d = run(rs, st, 2, equity=40)
    assert not d.transitions
    assert not d.intents
    d = reset_latch(rs, st, now=T0 + 3, rule="L")
    assert reasons(d) == [("L", None, TransitionReason.LATCH_RESET)]
    assert not d.alerts
    assert d.transitions[0].record["latched"] is False
    d = run(rs, st, 4, equity=40)
    assert [(i.rule, i.trip_id) for i in d.intents] == [("L", 2)]


def test_restart_mid_for_resumes_without_firing_early() -> None:
    """A pending timer survives to_records/from_records and fires on schedule only."""
    rs = rules(MARGIN)
    st = RulesState("a", rs)
    run(rs, st, 0, margin_usage=0.9)
    saved = st.to_records()
    blob = json.loads(json.dumps([list(a) for a in saved.alerts]))
    records = StateRecords(
        alerts=tuple((r, s, rec) for r, s, rec in blob), daily=saved.daily, windows=saved.windows
    )
    st2 = RulesState.from_records("a", rs, records)
    assert [a.state for a in st2.alerts_view()] == [State.PENDING]
    assert reasons(evaluate(rs, st2, None, T0 + 30, stale=False, trigger="tick")) == []
    assert reasons(run(rs, st2, 9.9, margin_usage=0.9)) == []
    assert reasons(run(rs, st2, 10, margin_usage=0.9)) == [("M", None, TransitionReason.FIRING)]


def test_stale_freezes_states_and_fires_data_stale() -> None:
    """While stale nothing moves and DataStale fires; fresh data resolves it."""
    rs = rules(MARGIN + "  - name: A\n    when: equity < 100\n    actions: [cancel_all_orders]\n")
    st = RulesState("a", rs)
    run(rs, st, 0, margin_usage=0.9, equity=50)
    d = run(rs, st, 3, stale=True, margin_usage=0.1, equity=500, data_age=6.0)
    assert reasons(d) == [(DATA_STALE_RULE, None, TransitionReason.FIRING)]
    assert d.stale
    assert not d.intents
    assert d.transitions[0].severity == "critical"
    assert "last pulse 6s ago" in d.transitions[0].summary
    assert {a.rule: a.state for a in d.alerts} == {
        DATA_STALE_RULE: State.FIRING,
        "A": State.FIRING,
        "M": State.PENDING,
    }
    assert not run(rs, st, 20, stale=True, margin_usage=0.9).transitions
    d = run(rs, st, 21, margin_usage=0.9, equity=50)
    assert reasons(d) == [
        (DATA_STALE_RULE, None, TransitionReason.RESOLVED),
        ("M", None, TransitionReason.FIRING),
    ]


def test_position_rule_over_a_symbol_going_flat() -> None:
    """A flat row clears its alerts normally; a vanished row settles them at once."""
    rs = rules(
        """
  - name: Lev
    scope: position
    when: effective_leverage > 10
    keep_firing_for: 1m
    summary: "{{ symbol }} {{ value | num }}x"
  - name: Slow
    scope: position
    when: notional > 1000
    for: 1m
"""
    )
    st = RulesState("a", rs)
    pos = {
        "BTC-USD": {"effective_leverage": 12.0, "notional": 12000.0, "position": 1.0},
        "ETH-USD": {"effective_leverage": 11.0, "notional": 5000.0, "position": 2.0},
    }
    d = run(rs, st, 0, positions=pos, equity=1000)
    assert sorted(reasons(d)) == [
        ("Lev", "BTC-USD", TransitionReason.FIRING),
        ("Lev", "ETH-USD", TransitionReason.FIRING),
        ("Slow", "BTC-USD", TransitionReason.PENDING),
        ("Slow", "ETH-USD", TransitionReason.PENDING),
    ]
    assert {tr.summary for tr in d.transitions if tr.rule == "Lev"} == {
        "BTC-USD 12x",
        "ETH-USD 11x",
    }
    flat = {"effective_leverage": 0.0, "notional": 0.0, "position": 0.0}
    d = run(rs, st, 5, positions={"BTC-USD": flat}, equity=1000)
    # ETH-USD vanished: pending cancelled, firing resolved without keep_firing_for.
    assert sorted(reasons(d)) == [
        ("Lev", "ETH-USD", TransitionReason.RESOLVED),
        ("Slow", "BTC-USD", TransitionReason.PENDING_CANCELLED),
        ("Slow", "ETH-USD", TransitionReason.PENDING_CANCELLED),
    ]
    # BTC-USD is flat: it clears through keep_firing_for like any value.
    assert reasons(run(rs, st, 30, positions={"BTC-USD": flat}, equity=1000)) == []
    assert reasons(run(rs, st, 66, positions={"BTC-USD": flat}, equity=1000)) == [
        ("Lev", "BTC-USD", TransitionReason.RESOLVED)
    ]
    # Trip ids are never reused when a symbol comes back.
    d = run(rs, st, 70, positions=pos, equity=1000)
    assert {tr.symbol: tr.trip_id for tr in d.transitions if tr.rule == "Lev"} == {
        "BTC-USD": 2,
        "ETH-USD": 2,
    }


def test_position_rules_read_account_names_and_position_overrides() -> None:
    """At position scope account names come from the account, shared names from the row."""
    rs = rules(
        "  - name: C\n    scope: position\n    when: notional / gross_notional > 0.5"
        " and unrealised_pnl < 0\n    actions: [close_position]\n"
    )
    st = RulesState("a", rs)
    pos = {
        "A-USD": {"notional": 600.0, "unrealised_pnl": -1.0},
        "B-USD": {"notional": 400.0, "unrealised_pnl": -1.0},
    }
    d = run(rs, st, 0, positions=pos, gross_notional=1000.0, unrealised_pnl=5.0)
    assert [(i.symbol, str(i.actions[0])) for i in d.intents] == [
        ("A-USD", "close_position (this symbol)")
    ]


def test_shadow_rules_transition_but_never_act() -> None:
    """A shadow rule records transitions marked shadow and yields no intent."""
    rs = rules(
        "  - name: S\n    when: equity < 100\n    mode: shadow\n    actions: [cancel_all_orders]\n"
    )
    st = RulesState("a", rs)
    d = run(rs, st, 0, equity=1)
    assert reasons(d) == [("S", None, TransitionReason.FIRING)]
    assert d.transitions[0].shadow
    assert d.alerts[0].shadow
    assert d.intents == ()


def test_confirm_pulse_waits_for_exchange_confirmed_figures() -> None:
    """A breach seen on a mark acts only once a confirmed evaluation agrees."""
    rs = rules(
        "  - name: P\n    when: equity < 100\n    actions: [cancel_all_orders]\n"
        "  - name: Mk\n    when: equity < 100\n    confirm: mark\n"
        "    actions: [cancel_all_orders]\n"
    )
    st = RulesState("a", rs)
    d = run(rs, st, 0, trigger="mark", confirmed=False, equity=50)
    assert sorted(reasons(d)) == [
        ("Mk", None, TransitionReason.FIRING),
        ("P", None, TransitionReason.FIRING),
    ]
    assert [(i.rule, i.exchange_confirmed) for i in d.intents] == [("Mk", False)]
    assert st.to_records().alerts  # the owed action is persisted with the alert
    assert {r: rec.get("owed_trip") for r, _, rec in st.to_records().alerts} == {
        "P": 1,
        "Mk": None,
    }
    assert run(rs, st, 1, trigger="mark", confirmed=False, equity=40).intents == ()
    d = run(rs, st, 2, trigger="pulse", equity=45)
    assert [(i.rule, i.trip_id, i.exchange_confirmed) for i in d.intents] == [("P", 1, True)]
    assert run(rs, st, 3, equity=45).intents == ()


def test_owed_action_dropped_when_pulse_disagrees() -> None:
    """If the confirming pulse does not show the breach, the owed action is dropped."""
    rs = rules("  - name: P\n    when: equity < 100\n    actions: [cancel_all_orders]\n")
    st = RulesState("a", rs)
    run(rs, st, 0, trigger="mark", confirmed=False, equity=50)
    d = run(rs, st, 1, equity=500)
    assert reasons(d) == [("P", None, TransitionReason.RESOLVED)]
    assert not d.intents
    assert not st.owed
    assert run(rs, st, 2, equity=50).intents[0].trip_id == 2


def test_drawdown_window_through_the_engine() -> None:
    """drawdown(equity, 24h) uses the equity history the engine records."""
    rs = rules(
        "  - name: DD\n    when: drawdown(equity, 24h) > 0.10\n"
        '    summary: "dd {{ value | pct }}"\n'
    )
    st = RulesState("a", rs)
    assert not run(rs, st, 0, equity=1000).transitions
    assert not run(rs, st, 3600, equity=950).transitions
    d = run(rs, st, 7200, equity=890)
    assert reasons(d) == [("DD", None, TransitionReason.FIRING)]
    assert d.transitions[0].summary == "dd 11.0%"
    assert d.transitions[0].values["drawdown(equity, 1d)"] == 0.11
    # A tick records nothing: the peak stays 1000 and the latest 890.
    run(rs, st, 7300, trigger="tick", equity=2000)
    assert st.windows.query("", "max_over", "equity", 86400, T0 + 7300) == 1000.0
    # The peak falls out of the window after 24h.
    d = run(rs, st, 86400 + 10, equity=890)
    assert reasons(d) == [("DD", None, TransitionReason.RESOLVED)]


def test_pnl_today_with_daily_reset() -> None:
    """pnl_today is measured from the baseline fixed at the first observation of each day."""
    rs = rules("  - name: Loss\n    when: pnl_today < -50\n")
    st = RulesState("a", rs, DailyConfig(reset="00:00", tz="UTC", baseline="equity"))
    day = 86400.0
    assert not run(rs, st, day - 3600, equity=1000).transitions
    d = run(rs, st, day - 60, equity=940)
    assert reasons(d) == [("Loss", None, TransitionReason.FIRING)]
    assert d.transitions[0].values["pnl_today"] == -60
    d = run(rs, st, day + 1, equity=930)
    assert reasons(d) == [("Loss", None, TransitionReason.RESOLVED)]
    assert st.daily.figures().baseline == 930
    rec = st.to_records().daily
    assert rec is not None
    assert rec["baseline"] == 930


def test_missing_inputs_never_fire() -> None:
    """A rule whose inputs are missing neither fires nor resolves."""
    rs = rules("  - name: M\n    when: margin_usage > 0.8\n")
    st = RulesState("a", rs)
    assert not run(rs, st, 0).transitions
    run(rs, st, 1, margin_usage=0.9)
    assert not run(rs, st, 2).transitions


def test_rebind_keeps_states_of_remaining_rules() -> None:
    """A reload keeps the alert state of rules still present and drops removed ones."""
    rs = rules(MARGIN + "  - name: B\n    when: equity < 100\n")
    st = RulesState("a", rs)
    run(rs, st, 0, margin_usage=0.9, equity=1)
    rs2 = rules(MARGIN)
    d = run(rs2, st, 10, margin_usage=0.9)
    assert reasons(d) == [("M", None, TransitionReason.FIRING)]
    assert [a.rule for a in d.alerts] == ["M"]


def test_window_peak_survives_restart() -> None:
    """The drawdown peak comes back from the records, so a restart does not forget it."""
    rs = rules("  - name: DD\n    when: drawdown(equity, 24h) > 0.10\n")
    st = RulesState("a", rs)
    run(rs, st, 0, equity=1000)
    run(rs, st, 60, equity=950)
    saved = st.to_records()
    restored = json.loads(json.dumps({"daily": saved.daily, "windows": saved.windows}))
    st2 = RulesState.from_records("a", rs, StateRecords((), restored["daily"], restored["windows"]))
    d = run(rs, st2, 120, equity=880)
    assert reasons(d) == [("DD", None, TransitionReason.FIRING)]
    assert d.transitions[0].values["drawdown(equity, 1d)"] == 0.12


def test_rebind_drops_states_of_a_rule_whose_scope_changed() -> None:
    """A rule reloaded with another scope starts afresh instead of mixing keys."""
    rs = rules("  - name: X\n    when: equity < 100\n")
    st = RulesState("a", rs)
    run(rs, st, 0, equity=1)
    rs2 = rules("  - name: X\n    scope: position\n    when: notional > 10\n")
    d = run(rs2, st, 1, positions={"B-USD": {"notional": 20.0}}, equity=1)
    assert reasons(d) == [("X", "B-USD", TransitionReason.FIRING)]
    assert [(a.rule, a.symbol) for a in d.alerts] == [("X", "B-USD")]
