"""AccountCore burst deferral and quiet ticks (core.py; docs/performance.md)."""

from __future__ import annotations

from riskwatch.model import BalanceUpdate, PositionUpdate
from riskwatch.pipeline import EAGER_AFTER, QUIET_TICK_INTERVAL, AccountCore
from riskwatch.rules.lifecycle import State
from riskwatch.rules.load import load_rules_text
from tests.support.factories import balance_update, position_update

T0 = 1_767_225_600.0

RULES = load_rules_text(
    """rules:
  - name: Levered
    when: account_leverage > 4
  - name: LeveredFor
    when: account_leverage > 4
    for: 2s
"""
)


def balance(t: float) -> BalanceUpdate:
    """The account's balance pulse at ``t``: 10 000 USD, 1 000 of position margin."""
    return balance_update(10_000.0, position_margin=1_000.0, at=t)


def position(t: float, symbol: str, qty: float) -> PositionUpdate:
    """A 10× position of ``qty`` at 100 pulsed at ``t``."""
    return position_update(
        symbol,
        qty,
        100.0,
        at=t,
        leverage=10.0,
        margin_alloc=10.0 * abs(qty),
        initial_margin_rate=0.1,
        maintenance_margin_rate=0.05,
    )


def core() -> AccountCore:
    c = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    c.handle([balance(T0)], T0)
    return c


def states(c: AccountCore) -> dict[str, State]:
    return {a.rule: a.state for a in c.alerts()}


def test_position_only_frames_defer_and_the_balance_evaluates_once() -> None:
    """Position frames are deferred; the balance frame evaluates the whole pulse once."""
    c = core()
    t = T0 + 1
    for sym in ("A-USD", "B-USD", "C-USD"):
        r = c.handle([position(t, sym, 200.0)], t)
        assert r.decision is None
        assert r.deferred
        assert r.changed
    assert c.deferred
    r = c.handle([balance(t)], t)
    assert r.decision is not None
    assert r.decision.trigger == "pulse"
    assert not c.deferred
    # 3 × 200 × 100 = 60 000 notional on 10 000 equity: the whole pulse was seen at once.
    assert states(c)["Levered"] is State.FIRING


def test_flush_evaluates_deferred_frames_and_only_once() -> None:
    """flush() evaluates a burst that no balance closed, then has nothing left to do."""
    c = core()
    t = T0 + 1
    c.handle([position(t, "A-USD", 500.0)], t)
    decision = c.flush(t)
    assert decision is not None
    assert decision.trigger == "pulse"
    assert states(c)["Levered"] is State.FIRING
    assert c.flush(t) is None


def test_eager_after_unterminated_bursts_then_back_to_deferring() -> None:
    """After EAGER_AFTER unterminated bursts positions evaluate at once, until a balance."""
    c = core()
    t = T0
    for _ in range(EAGER_AFTER):
        t += 1
        assert c.handle([position(t, "A-USD", 1.0 + t - T0)], t).decision is None
        assert c.flush(t) is not None
    t += 1
    eager = c.handle([position(t, "A-USD", 50.0)], t)
    assert eager.decision is not None
    assert not eager.deferred
    t += 1
    assert c.handle([balance(t)], t).decision is not None  # a second later: no burst
    t += 1
    assert c.handle([position(t, "A-USD", 60.0)], t).decision is not None  # still eager
    assert c.handle([balance(t + 0.01)], t + 0.01).decision is not None  # closes a burst
    t += 1
    assert c.handle([position(t, "A-USD", 70.0)], t).deferred  # deferring again


def test_tick_flushes_a_deferred_burst() -> None:
    """A tick evaluates deferred frames with their own pulse trigger."""
    c = core()
    c.handle([position(T0 + 1, "A-USD", 500.0)], T0 + 1)
    decision = c.tick(T0 + 1.25)
    assert decision.trigger == "pulse"
    assert c.last_decision is decision


def test_quiet_tick_skips_the_evaluation() -> None:
    """A tick on a quiet account within QUIET_TICK_INTERVAL evaluates nothing."""
    c = core()
    c.handle([position(T0 + 1, "A-USD", 1.0)], T0 + 1)
    evaluated = c.handle([balance(T0 + 1)], T0 + 1).decision
    assert evaluated is not None
    quiet = c.tick(T0 + 1 + QUIET_TICK_INTERVAL / 2)
    assert c.last_decision is evaluated  # nothing was evaluated
    assert quiet.trigger == "tick"
    assert not quiet.transitions
    later = c.tick(T0 + 1 + QUIET_TICK_INTERVAL + 0.01)
    assert c.last_decision is later


def test_pending_for_still_fires_on_time_with_ticks() -> None:
    """A pending rule with ``for`` is not quiet: the tick at its deadline fires it."""
    c = core()
    t = T0 + 1
    c.handle([position(t, "A-USD", 500.0)], t)
    c.handle([balance(t)], t)
    assert states(c)["LeveredFor"] is State.PENDING
    c.tick(t + 1.0)
    assert states(c)["LeveredFor"] is State.PENDING
    decision = c.tick(t + 2.01)
    assert states(c)["LeveredFor"] is State.FIRING
    assert any(tr.rule == "LeveredFor" for tr in decision.transitions)


def test_figures_are_reused_with_data_age_at_now() -> None:
    """figures_at reuses an unchanged account's figures and recomputes data_age."""
    c = core()
    c.handle([position(T0 + 1, "A-USD", 5.0)], T0 + 1)
    c.handle([balance(T0 + 1)], T0 + 1)
    first = c.figures_at(T0 + 2)
    second = c.figures_at(T0 + 3)
    assert first is not None
    assert second is not None
    assert second.positions is first.positions
    assert first.account["data_age"] == 1.0
    assert second.account["data_age"] == 2.0
    c.handle([position(T0 + 4, "A-USD", 6.0)], T0 + 4)
    third = c.figures_at(T0 + 4)
    assert third is not None
    assert third.positions is not first.positions
    assert third.positions["A-USD"]["position"] == 6.0


def test_tick_due_says_whether_the_tick_evaluates() -> None:
    """tick_due(now) is False exactly when tick(now) evaluates nothing: on a fresh core,
    a deferred burst, a quiet account within QUIET_TICK_INTERVAL or past it, a pending
    ``for`` and a change of staleness (daemon/ticks.py skips the accounts it says False of)."""
    fresh = AccountCore("desk-a", stale_after=5.0, rules=RULES)
    assert fresh.tick_due(T0)

    def check(c: AccountCore, now: float, due: bool) -> None:
        assert c.tick_due(now) is due
        before = c.last_decision
        decision = c.tick(now)
        assert (c.last_decision is decision and decision is not before) is due

    c = core()
    t = T0 + 1
    c.handle([position(t, "A-USD", 1.0)], t)
    assert c.tick_due(t)  # deferred
    c.handle([balance(t)], t)
    check(c, t + QUIET_TICK_INTERVAL / 2, False)  # quiet
    check(c, t + QUIET_TICK_INTERVAL + 0.01, True)  # quiet, but not evaluated for a while
    check(c, t + 1.25, False)
    check(c, t + 4.5, True)
    check(c, t + 5.05, True)  # within the interval, but the data went stale: DataStale
    c.handle([position(t + 6, "A-USD", 500.0), balance(t + 6)], t + 6)
    assert states(c)["LeveredFor"] is State.PENDING
    check(c, t + 6.25, True)  # a pending ``for`` is not quiet
