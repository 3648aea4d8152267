"""The engine's fast paths change nothing: it matches lifecycle.step applied naively."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.rules.engine import RulesState, evaluate
from riskwatch.rules.lifecycle import INACTIVE, LifecycleParams, TransitionReason, step
from riskwatch.rules.load import load_rules_text
from riskwatch.state.catalogue import ACCOUNT_NAMES
from riskwatch.state.derived import Figures

RULES = load_rules_text(
    """rules:
  - name: H
    when: margin_usage > 0.8
    clear_when: margin_usage < 0.7
    for: 3s
    keep_firing_for: 2s
"""
)
PARAMS = LifecycleParams(for_seconds=3.0, keep_firing_for=2.0, has_clear_when=True)

values = st.lists(
    st.tuples(
        st.floats(min_value=0.1, max_value=5.0),
        st.one_of(st.none(), st.floats(min_value=0.5, max_value=1.0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_engine_matches_naive_lifecycle(series: list[tuple[float, float | None]]) -> None:
    """For any series of gaps and values the engine yields the naive transitions."""
    state = RulesState("a", RULES)
    ref = INACTIVE
    now = 1_000.0
    for gap, value in series:
        now += gap
        account: dict[str, float | None] = dict.fromkeys(ACCOUNT_NAMES)
        account["margin_usage"] = value
        decision = evaluate(
            RULES, state, Figures(account, {}, True, now), now, stale=False, trigger="pulse"
        )
        holds = None if value is None else value > 0.8
        clears = None if value is None else value < 0.7
        ref, tr = step(ref, holds, clears, now, PARAMS)
        expected: list[TransitionReason] = [] if tr is None else [tr.reason]
        assert [t.reason for t in decision.transitions] == expected
        assert state.state_of("H").state is ref.state
        assert state.state_of("H").trip_id == ref.trip_id
