"""AccountCore: events fold into state, then the rule engine runs on each changed frame."""

from __future__ import annotations

from datetime import time

from msgspec.structs import replace

from riskwatch.model import Ack, BalanceUpdate, MarkPrice, OrderUpdate, PositionUpdate
from riskwatch.pipeline import AccountCore, trigger_of
from riskwatch.rules.engine import DATA_STALE_RULE
from riskwatch.rules.lifecycle import State, TransitionReason
from riskwatch.rules.load import load_rules_text
from riskwatch.state.daily import DailyConfig
from tests.support.factories import balance_update, mark_price, position_update

T0 = 1_767_225_600.0

RULES = load_rules_text(
    """rules:
  - name: ShortSqueeze
    scope: position
    when: effective_leverage > 8
    actions: [close_position]
    summary: "{{ symbol }} at {{ value | num }}x"
  - name: MarginHigh
    when: margin_usage > 1.5
"""
)


def balance(t: float, deposit: float = 10_000.0) -> BalanceUpdate:
    """The account's balance pulse at ``t``: 2 500 USD of position margin."""
    return balance_update(deposit, position_margin=2_500.0, at=t)


def short_btc(t: float) -> PositionUpdate:
    """A 1 BTC short at 50 000, 20×."""
    return position_update(
        "BTC-USD", -1.0, 50_000.0, at=t, margin_alloc=2_500.0, maintenance_margin_rate=0.0333
    )


def mark(t: float, price: float) -> MarkPrice:
    """A BTC mark price at ``t``."""
    return mark_price(price, t, "BTC-USD")


def test_trigger_kind_from_events() -> None:
    """Pulses win over order events, which win over marks."""
    order = OrderUpdate("o1", "", "BTC-USD", "ACK", "BUY", "LIMIT", "GTC", 1, 1, 1, None, T0)
    assert trigger_of([mark(T0, 1.0), short_btc(T0)]) == "pulse"
    assert trigger_of([mark(T0, 1.0), order]) == "order"
    assert trigger_of([mark(T0, 1.0)]) == "mark"
    assert trigger_of([]) == "tick"


def test_pulse_evaluates_rules_and_mark_breach_waits_for_pulse() -> None:
    """A mark-only breach notifies at once; the action comes with the agreeing pulse."""
    core = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    result = core.handle([balance(T0), short_btc(T0)], T0)
    assert result.changed
    assert result.decision is not None
    assert result.decision.trigger == "pulse"
    assert result.decision.transitions == ()
    result = core.handle([mark(T0 + 1, 55_000.0)], T0 + 1)
    d = result.decision
    assert d is not None
    assert d.trigger == "mark"
    assert [(t.rule, t.symbol, t.reason) for t in d.transitions] == [
        ("ShortSqueeze", "BTC-USD", TransitionReason.FIRING)
    ]
    assert d.transitions[0].summary == "BTC-USD at 11x"
    assert d.intents == ()
    # The exchange's own pulse agrees: the owed action goes out, exchange-confirmed.
    pulse = replace(short_btc(T0 + 2), unrealised_pnl=-5_000.0)
    bal = replace(balance(T0 + 2), unrealised_pnl=-5_000.0)
    d2 = core.handle([bal, pulse], T0 + 2).decision
    assert d2 is not None
    assert [(i.rule, i.symbol, i.trip_id, i.exchange_confirmed) for i in d2.intents] == [
        ("ShortSqueeze", "BTC-USD", 1, True)
    ]
    assert [a["rule"] for a in core.describe(T0 + 2)["alerts"]] == ["ShortSqueeze"]


def test_events_that_change_nothing_are_not_evaluated() -> None:
    """An ack does not move the state, so no decision is made."""
    core = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    result = core.handle([Ack(None, T0)], T0)
    assert not result.changed
    assert result.decision is None


def test_tick_fires_and_resolves_data_stale() -> None:
    """Ticks past stale_after fire DataStale; the next pulse resolves it."""
    core = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    assert core.tick(T0).transitions == ()
    d = core.tick(T0 + 6)
    assert [(t.rule, t.reason) for t in d.transitions] == [
        (DATA_STALE_RULE, TransitionReason.FIRING)
    ]
    assert "no data" in d.transitions[0].summary
    core.handle([balance(T0 + 7), short_btc(T0 + 7)], T0 + 7)
    assert core.alerts() == ()
    d = core.tick(T0 + 13)
    assert [(t.rule, t.reason) for t in d.transitions] == [
        (DATA_STALE_RULE, TransitionReason.FIRING)
    ]
    assert core.alerts()[0].state is State.FIRING
    fresh = core.handle([balance(T0 + 14)], T0 + 14).decision
    assert fresh is not None
    assert [(t.rule, t.reason) for t in fresh.transitions] == [
        (DATA_STALE_RULE, TransitionReason.RESOLVED)
    ]


def test_records_round_trip_keeps_alerts_and_baseline() -> None:
    """A restored core keeps firing alerts, trip ids and the daily baseline."""
    core = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    core.handle([balance(T0), short_btc(T0)], T0)
    core.handle([mark(T0 + 1, 55_000.0)], T0 + 1)
    saved = core.records()
    again = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    again.restore(saved)
    assert [(a.rule, a.symbol, a.trip_id) for a in again.alerts()] == [
        ("ShortSqueeze", "BTC-USD", 1)
    ]
    assert again.pnl_baseline == 10_000.0


def test_core_uses_the_config_daily_section_as_given() -> None:
    """The config's daily section is the tracker's day definition (one DailyConfig)."""
    section = DailyConfig(reset="17:00", tz="America/New_York")
    core = AccountCore("acc", stale_after=5.0, daily=section)
    assert core.daily is section
    assert (core.daily.reset_time, core.daily.tz, core.daily.baseline) == (
        time(17, 0),
        "America/New_York",
        "equity",
    )
    assert AccountCore("acc", stale_after=5.0).daily == DailyConfig()


def test_core_without_rules_keeps_its_old_behaviour() -> None:
    """With no rules the core still folds events, flags, and reports figures."""
    core = AccountCore("desk-a", stale_after=5.0)
    result = core.handle([balance(T0), short_btc(T0)], T0)
    assert result.changed
    assert result.flags == ()
    figures = core.figures_at(T0)
    assert figures is not None
    assert figures.account["equity"] == 10_000.0
    assert not core.is_stale(T0 + 5)
    assert core.is_stale(T0 + 5.1)
