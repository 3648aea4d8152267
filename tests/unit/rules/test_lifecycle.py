"""Tests for riskwatch.rules.lifecycle."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from riskwatch.rules.lifecycle import (
    INACTIVE,
    AlertState,
    LifecycleParams,
    State,
    Transition,
    TransitionReason,
    reset_latch,
    step,
    tick,
)

T0 = 1_700_000_000.0


def _run(
    params: LifecycleParams,
    evals: Sequence[tuple[float, bool | None, bool | None]],
    state: AlertState = INACTIVE,
) -> tuple[AlertState, list[Transition]]:
    out: list[Transition] = []
    for t, holds, clears in evals:
        state, tr = step(state, holds, clears, T0 + t, params)
        if tr is not None:
            out.append(tr)
    return state, out


def test_for_zero_fires_immediately() -> None:
    """With for=0 the first holding evaluation fires, with no pending step."""
    s, tr = step(INACTIVE, True, None, T0, LifecycleParams())
    assert s.state is State.FIRING
    assert tr == Transition(TransitionReason.FIRING, State.INACTIVE, State.FIRING, T0, 1)
    assert s.trip_id == 1
    assert s.fired_at == T0
    assert s.active_since == T0


def test_for_runs_then_fires() -> None:
    """The alert is pending until `for` has elapsed while holding, then fires."""
    p = LifecycleParams(for_seconds=10)
    s, trs = _run(p, [(0, True, None), (5, True, None), (9.9, True, None), (10, True, None)])
    assert [t.reason for t in trs] == [TransitionReason.PENDING, TransitionReason.FIRING]
    assert trs[1].at == T0 + 10
    assert s.state is State.FIRING
    assert s.active_since == T0


def test_for_interrupted_restarts_timer() -> None:
    """A false evaluation cancels pending; `for` counts again from the next hold."""
    p = LifecycleParams(for_seconds=10)
    s, trs = _run(p, [(0, True, None), (8, False, None), (9, True, None), (18, True, None)])
    assert [t.reason for t in trs] == [
        TransitionReason.PENDING,
        TransitionReason.PENDING_CANCELLED,
        TransitionReason.PENDING,
    ]
    assert s.state is State.PENDING
    assert s.active_since == T0 + 9
    s, tr = step(s, True, None, T0 + 19, p)
    assert tr is not None
    assert tr.reason is TransitionReason.FIRING


def test_resolve_without_clear_when() -> None:
    """Without clear_when the alert resolves when `when` stops holding."""
    p = LifecycleParams()
    s, trs = _run(p, [(0, True, None), (1, False, None)])
    assert [t.reason for t in trs] == [TransitionReason.FIRING, TransitionReason.RESOLVED]
    assert s.state is State.INACTIVE
    assert s.resolved_at == T0 + 1
    assert s.active_since is None
    assert s.trip_id == 1


def test_hysteresis_prevents_flapping() -> None:
    """A value oscillating around the firing threshold fires once and stays firing."""
    values = [0.81, 0.79, 0.805, 0.78, 0.82, 0.75, 0.81, 0.79]
    hyst = LifecycleParams(has_clear_when=True)
    evals = [(float(i), v > 0.80, v < 0.70) for i, v in enumerate(values)]
    s, trs = _run(hyst, evals)
    assert [t.reason for t in trs] == [TransitionReason.FIRING]
    assert s.state is State.FIRING
    s, trs = _run(hyst, [(20, False, True)], s)
    assert [t.reason for t in trs] == [TransitionReason.RESOLVED]

    plain = LifecycleParams()
    _, flaps = _run(plain, [(float(i), v > 0.80, None) for i, v in enumerate(values)])
    assert sum(t.reason is TransitionReason.FIRING for t in flaps) == 4


def test_when_wins_over_overlapping_clear_when() -> None:
    """When both `when` and `clear_when` hold, the alert stays firing."""
    p = LifecycleParams(has_clear_when=True)
    s, trs = _run(p, [(0, True, True), (1, True, True)])
    assert s.state is State.FIRING
    assert [t.reason for t in trs] == [TransitionReason.FIRING]


def test_keep_firing_for() -> None:
    """The alert stays firing keep_firing_for after the clear, and the timer restarts."""
    p = LifecycleParams(keep_firing_for=30)
    s, trs = _run(p, [(0, True, None), (10, False, None), (20, True, None), (25, False, None)])
    assert [t.reason for t in trs] == [TransitionReason.FIRING]
    assert s.clear_since == T0 + 25
    s, trs = _run(p, [(54, False, None)], s)
    assert trs == []
    s, trs = _run(p, [(55, False, None)], s)
    assert [t.reason for t in trs] == [TransitionReason.RESOLVED]


def test_keep_firing_for_resets_in_hysteresis_band() -> None:
    """Going back into the band (neither when nor clear_when) restarts the clear timer."""
    p = LifecycleParams(keep_firing_for=10, has_clear_when=True)
    s, _ = _run(p, [(0, True, False), (1, False, True), (5, False, False), (6, False, True)])
    assert s.clear_since == T0 + 6
    s, trs = _run(p, [(15, False, True), (16, False, True)], s)
    assert [t.reason for t in trs] == [TransitionReason.RESOLVED]
    assert trs[0].at == T0 + 16


def test_tick_fires_when_for_elapses_without_new_data() -> None:
    """tick fires a pending alert whose last evaluation held once `for` has elapsed."""
    p = LifecycleParams(for_seconds=5)
    s, _ = step(INACTIVE, True, None, T0, p)
    s2, tr = tick(s, T0 + 4.9, p)
    assert tr is None
    assert s2 is s
    s, tr = tick(s, T0 + 5, p)
    assert tr is not None
    assert tr.reason is TransitionReason.FIRING
    assert s.fired_at == T0 + 5


def test_tick_resolves_after_keep_firing_for() -> None:
    """tick resolves a firing alert whose last evaluation cleared once keep_firing_for elapses."""
    p = LifecycleParams(keep_firing_for=5)
    s, _ = _run(p, [(0, True, None), (1, False, None)])
    s, tr = tick(s, T0 + 5.9, p)
    assert tr is None
    s, tr = tick(s, T0 + 6, p)
    assert tr is not None
    assert tr.reason is TransitionReason.RESOLVED


def test_missing_data_keeps_state() -> None:
    """Missing data never starts pending, never resolves and blocks tick."""
    p = LifecycleParams(for_seconds=5)
    s, tr = step(INACTIVE, None, None, T0, p)
    assert s.state is State.INACTIVE
    assert tr is None

    s, _ = step(INACTIVE, True, None, T0, p)
    s, tr = step(s, None, None, T0 + 10, p)
    assert s.state is State.PENDING
    assert tr is None
    assert tick(s, T0 + 20, p)[1] is None
    s, tr = step(s, True, None, T0 + 21, p)  # data back and holding: for already elapsed
    assert tr is not None
    assert tr.reason is TransitionReason.FIRING

    s, tr = step(s, None, None, T0 + 30, p)
    assert s.state is State.FIRING
    assert tr is None

    hyst = LifecycleParams(has_clear_when=True)
    s, _ = step(INACTIVE, True, None, T0, hyst)
    s, tr = step(s, False, None, T0 + 1, hyst)  # clear_when's inputs missing
    assert s.state is State.FIRING
    assert tr is None
    assert s.clear_since is None


def test_trip_id_increments_once_per_firing() -> None:
    """trip_id grows by one per firing, not per evaluation."""
    p = LifecycleParams()
    evals = [(0, True, None), (1, True, None), (2, True, None), (3, False, None)]
    evals += [(4, True, None), (5, True, None), (6, False, None), (7, True, None)]
    s, trs = _run(p, evals)
    assert s.trip_id == 3
    assert [t.trip_id for t in trs if t.reason is TransitionReason.FIRING] == [1, 2, 3]


def test_latch_holds_until_reset() -> None:
    """A latched alert stays firing, reports LATCHED once, and resets to inactive."""
    p = LifecycleParams(latch=True)
    s, trs = _run(p, [(0, True, None), (1, False, None), (2, False, None), (3, True, None)])
    assert [t.reason for t in trs] == [TransitionReason.FIRING, TransitionReason.LATCHED]
    assert s.state is State.FIRING
    assert s.latched
    assert s.trip_id == 1
    assert tick(s, T0 + 1000, p)[1] is None

    s, tr = reset_latch(s, T0 + 10)
    assert tr == Transition(TransitionReason.LATCH_RESET, State.FIRING, State.INACTIVE, T0 + 10, 1)
    assert not s.latched
    assert s.resolved_at == T0 + 10
    s, trs = _run(p, [(11, True, None)], s)
    assert [(t.reason, t.trip_id) for t in trs] == [(TransitionReason.FIRING, 2)]


def test_reset_latch_ignores_unlatched() -> None:
    """reset_latch leaves a non-latched or inactive alert unchanged."""
    s, _ = step(INACTIVE, True, None, T0, LifecycleParams())
    assert reset_latch(s, T0 + 1) == (s, None)
    assert reset_latch(INACTIVE, T0) == (INACTIVE, None)


def test_restart_mid_for_resumes() -> None:
    """A restored pending alert keeps its start: it neither restarts nor fires early."""
    p = LifecycleParams(for_seconds=60)
    s, _ = _run(p, [(0, True, None), (30, True, None)])
    record = json.loads(json.dumps(s.to_record()))
    back = AlertState.from_record(record)
    assert back.state is State.PENDING
    assert back.active_since == T0
    assert back.holding is None
    assert tick(back, T0 + 100, p)[1] is None  # no fresh evaluation yet: no early fire
    s2, tr = step(back, True, None, T0 + 45, p)
    assert tr is None
    s2, tr = step(s2, True, None, T0 + 60, p)
    assert tr is not None
    assert tr.reason is TransitionReason.FIRING
    assert tr.trip_id == 1


def test_record_round_trip_keeps_trip_and_latch() -> None:
    """A firing latched state survives to_record/from_record."""
    s, _ = _run(LifecycleParams(latch=True), [(0, True, None), (1, True, None)])
    back = AlertState.from_record(s.to_record())
    assert back.state is State.FIRING
    assert back.latched
    assert back.trip_id == 1
    assert back.fired_at == T0
    assert back.last_held_at == T0 + 1


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"version": 9}, "version"),
        ({"version": 1, "state": "exploded", "trip_id": 0}, "'exploded'"),
        ({"version": 1, "state": "inactive", "trip_id": -1}, "-1"),
        ({"version": 1, "state": "firing", "trip_id": 1}, "active_since"),
        ({"version": 1, "state": "inactive", "trip_id": 0, "latched": "yes"}, "'yes'"),
        ({"version": 1, "state": "inactive", "trip_id": 0, "fired_at": "x"}, "fired_at"),
    ],
)
def test_bad_record(record: dict[str, object], match: str) -> None:
    """Malformed records are rejected naming the value."""
    with pytest.raises(ValueError, match=match):
        AlertState.from_record(record)


def test_bad_params() -> None:
    """Negative durations are rejected."""
    with pytest.raises(ValueError, match="for_seconds"):
        LifecycleParams(for_seconds=-1)
    with pytest.raises(ValueError, match="keep_firing_for"):
        LifecycleParams(keep_firing_for=float("inf"))


def test_state_values_are_gauge_values() -> None:
    """State values match the alert_state gauge and reasons are lowercase labels."""
    assert [int(s) for s in State] == [0, 1, 2]
    assert all(r.value == r.name.lower() for r in TransitionReason)
