"""Repeat position frames held by the core and folded in at the next read of its snapshot
(riskwatch/pipeline.py ``AccountCore.snapshot``; riskwatch/state/account.py ``repeats``).

The contract: whatever the frames and wherever a reader looks, the core's snapshot is
the one that reducing every event on arrival gives.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.model import Event
from riskwatch.pipeline import AccountCore
from riskwatch.state import account as account_state
from tests.support.factories import balance_update, mark_price, order_update, position_update

SYMBOLS = ("A-USD", "B-USD", "C-USD")

# One frame: what it carries, for which symbol, and the figure it moves.
frame_kind = st.sampled_from(
    ["repeat", "repeat", "repeat", "move", "flat", "mark", "order", "balance", "bad", "read"]
)
frame = st.tuples(frame_kind, st.sampled_from(SYMBOLS), st.sampled_from([1.0, 2.0, -3.0]))


def events_of(kind: str, sym: str, figure: float, at: float, qty: dict[str, float]) -> list[Event]:
    """The events of one frame; ``qty`` is each symbol's last pulsed position (updated)."""
    if kind == "repeat":
        return [position_update(sym, qty[sym], 100.0, qty[sym] * 0.5, at=at)]
    if kind == "move":
        qty[sym] = qty[sym] + figure
        return [position_update(sym, qty[sym], 100.0, qty[sym] * figure, at=at)]
    if kind == "flat":
        qty[sym] = 0.0
        return [position_update(sym, 0.0, 100.0, 0.0, at=at)]
    if kind == "mark":
        return [mark_price(100.0 + figure, at=at, symbol=sym)]
    if kind == "order":
        return [order_update(f"o-{sym}", "ACK", symbol=sym, at=at)]
    if kind == "balance":
        return [balance_update(10_000.0 + figure, at=at)]
    # "bad": a position whose figures fail the plausibility checks (flagged, not applied)
    return [position_update(sym, qty[sym] or 1.0, -100.0, 0.0, at=at)]


@settings(max_examples=300, deadline=None)
@given(st.lists(frame, min_size=1, max_size=60))
def test_the_snapshot_is_that_of_reducing_every_frame_on_arrival(
    frames: list[tuple[str, str, float]],
) -> None:
    core = AccountCore("acc", stale_after=60.0)
    reference = account_state.initial("acc")
    qty = dict.fromkeys(SYMBOLS, 5.0)
    at = 1.0
    for sym in SYMBOLS:  # every symbol pulsed once, then the balance that closes it
        first = position_update(sym, qty[sym], 100.0, qty[sym] * 0.5, at=at)
        core.handle([first], at)
        reference = account_state.reduce(reference, first).snapshot
    for kind, sym, figure in frames:
        at += 0.01
        if kind == "read":
            assert core.snapshot == reference
            continue
        events = events_of(kind, sym, figure, at, qty)
        result = core.handle(events, at)
        flags = []
        for ev in events:
            reduced = account_state.reduce(reference, ev)
            reference = reduced.snapshot
            if reduced.flag is not None:
                flags.append(reduced.flag)
        assert list(result.flags) == flags
    assert core.snapshot == reference


def test_a_repeat_is_held_deferred_and_folded_in_at_the_next_read() -> None:
    core = AccountCore("acc", stale_after=60.0)
    core.handle([position_update("A-USD", 5.0, 100.0, 2.5, at=1.0)], 1.0)
    core.handle([balance_update(10_000.0, at=1.0)], 1.0)
    before = core.snapshot
    result = core.handle([position_update("A-USD", 5.0, 100.0, 2.5, at=2.0)], 2.0)
    assert result.deferred
    assert result.changed
    assert result.decision is None
    assert core.deferred
    assert core.position_symbols == before.positions.keys()
    after = core.snapshot  # folded in here
    assert after is not before
    assert after.positions["A-USD"].pulse.received_at == 2.0
    assert after.marks["A-USD"].at == 2.0
    assert after.last_pulse_at == 2.0
    assert after.totals == before.totals
    assert core.snapshot is after  # nothing left to fold
    # The balance that closes the burst evaluates it.
    closed = core.handle([balance_update(10_000.0, at=2.0)], 2.0)
    assert closed.decision is not None
    assert not core.deferred


def test_repeat_positions_folds_a_burst_as_one_by_one() -> None:
    s = account_state.initial("acc")
    for sym in SYMBOLS:
        s = account_state.reduce(s, position_update(sym, 5.0, 100.0, 2.5, at=1.0)).snapshot
    burst = [position_update(sym, 5.0, 100.0, 2.5, at=2.0 + i) for i, sym in enumerate(SYMBOLS)]
    burst.append(position_update("A-USD", 5.0, 100.0, 2.5, at=9.0))  # a symbol twice
    one_by_one = s
    for ev in burst:
        assert account_state.repeats(one_by_one, ev)
        one_by_one = account_state.reduce(one_by_one, ev).snapshot
    assert account_state.repeat_positions(s, burst) == one_by_one
