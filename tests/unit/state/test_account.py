"""Tests of riskwatch.state.account: the snapshot reducer."""

from __future__ import annotations

import math

import pytest

from riskwatch.model import (
    Ack,
    Fill,
    OpenOrders,
)
from riskwatch.state.account import (
    Mark,
    estimated_equity,
    initial,
    open_order_count,
    reduce,
    sum_totals,
)
from tests.support.factories import (
    balance_update,
    mark_price,
    order_update,
    position_update,
    snapshot_of,
)


def test_initial_snapshot_is_empty() -> None:
    """The initial snapshot has no balance, positions, marks or pulse times."""
    s = initial("desk-a")
    assert s.account == "desk-a"
    assert s.balance is None
    assert dict(s.positions) == {}
    assert dict(s.marks) == {}
    assert s.last_pulse_at is None
    assert estimated_equity(s) is None


def test_position_pulse_sets_state_and_pulse_mark() -> None:
    """A non-flat pulse stores the position, its implied mark (source pulse) and pulse time."""
    s = snapshot_of(position_update(qty=10.0, avg=200.0, upnl=-100.0, at=5.0))
    st = s.positions["AAPL-USD"]
    assert st.pulse.position == 10.0
    assert s.marks["AAPL-USD"] == Mark(190.0, "pulse", 5.0)
    assert st.unrealised_pnl == -100.0
    assert st.notional == pytest.approx(1900.0)
    assert st.initial_margin == pytest.approx(95.0)
    assert st.maintenance_margin == pytest.approx(1900.0 / 30)
    assert s.last_pulse_at == 5.0
    assert s.totals.positions == 1


def test_reduce_does_not_mutate_input() -> None:
    """Reducing returns a new snapshot and leaves the old one as it was."""
    s0 = snapshot_of(position_update(at=1.0))
    s1 = reduce(s0, mark_price(190.0, at=2.0)).snapshot
    assert s0.marks["AAPL-USD"].price == 200.0
    assert s1.marks["AAPL-USD"].price == 190.0
    assert s0.totals.unrealised_pnl == 0.0
    assert s1.totals.unrealised_pnl == pytest.approx(-100.0)


def test_mark_between_pulses_then_pulse_is_authoritative() -> None:
    """An MDS mark moves the symbol's figures; the next pulse replaces them with the exchange's."""
    s = snapshot_of(position_update(at=1.0), balance_update(at=1.0), mark_price(190.0, at=1.5))
    st = s.positions["AAPL-USD"]
    assert st.marked_by_mds
    assert s.marks["AAPL-USD"] == Mark(190.0, "mds", 1.5)
    assert st.unrealised_pnl == pytest.approx(10 * (190.0 - 200.0))
    assert s.totals.mds_marked == 1
    assert s.last_mark_at == 1.5
    assert s.last_pulse_at == 1.0
    # The exchange priced it at 189.5 in the pulse: its figure wins.
    s = snapshot_of(position_update(upnl=-105.0, at=2.0), start=s)
    st = s.positions["AAPL-USD"]
    assert not st.marked_by_mds
    assert st.unrealised_pnl == -105.0
    assert s.marks["AAPL-USD"] == Mark(189.5, "pulse", 2.0)
    assert s.totals.mds_marked == 0


def test_flat_pulse_keeps_the_last_mark() -> None:
    """A flat pulse implies no mark, so the symbol's last mark is kept."""
    s = snapshot_of(mark_price(150.0, at=1.0), position_update(qty=0.0, avg=0.0, at=2.0))
    assert s.marks["AAPL-USD"] == Mark(150.0, "mds", 1.0)
    assert s.positions["AAPL-USD"].notional == 0.0
    assert s.totals.positions == 0


def test_estimated_equity_between_pulses() -> None:
    """Equity moves with the unrealised PnL change since the balance pulse."""
    s = snapshot_of(position_update(at=1.0), balance_update(deposit=1000.0, at=1.0))
    assert estimated_equity(s) == 1000.0
    s = snapshot_of(mark_price(190.0, at=1.5), start=s)
    assert estimated_equity(s) == pytest.approx(900.0)
    # A position pulse after the balance one moves it too (no snap back to the balance's).
    s = snapshot_of(position_update(upnl=-200.0, at=2.0), start=s)
    assert estimated_equity(s) == pytest.approx(800.0)


def test_equity_drift_at_balance_pulse() -> None:
    """Drift is the equity estimated just before a balance pulse minus the one it reports."""
    s = snapshot_of(position_update(at=1.0), balance_update(at=1.0))
    assert s.equity_drift is None
    s = snapshot_of(mark_price(190.0, at=1.5), start=s)
    # riskwatch estimates 900; the exchange reports 1000 - 110 = 890.
    s = snapshot_of(balance_update(upnl=-110.0, at=2.0), start=s)
    assert s.equity_drift == pytest.approx(10.0)
    assert s.last_balance_at == 2.0
    # The new balance is the anchor: no further adjustment until marks move.
    assert estimated_equity(s) == pytest.approx(890.0)
    s = snapshot_of(balance_update(upnl=-110.0, at=3.0), start=s)
    assert s.equity_drift == pytest.approx(0.0)


def test_totals_incremental_match_recomputation() -> None:
    """Incrementally kept totals equal a full recomputation after many events."""
    s = initial("desk-a")
    symbols = [f"S{i}-USD" for i in range(5)]
    t = 1.0
    for step in range(50):
        sym = symbols[step % 5]
        t += 0.1
        ev = (
            position_update(
                symbol=sym, qty=float(step % 7 - 3), avg=100.0, upnl=float(step % 3), at=t
            )
            if step % 2
            else mark_price(100.0 + step % 4, at=t, symbol=sym)
        )
        s = reduce(s, ev).snapshot
    fresh = sum_totals(s.positions)
    for a, b in zip(s.totals, fresh, strict=True):
        assert a == pytest.approx(b, abs=1e-9)


def test_irrelevant_events_return_the_same_snapshot() -> None:
    """Acks and fills do not change state and return the very same snapshot."""
    s = snapshot_of(position_update())
    ack = Ack(incoming_message=None, received_at=2.0)
    fill = Fill("t1", "o1", "", "AAPL-USD", "BUY", 200.0, 1.0, None, 0.1, 0.0, None, 2.0)
    assert reduce(s, ack).snapshot is s
    assert reduce(s, fill).snapshot is s


def test_order_events_adjust_open_order_count() -> None:
    """Order events move the pulse's open-order count until the next pulse resets it."""
    s = snapshot_of(position_update(open_orders=2, at=1.0))
    assert open_order_count(s, "AAPL-USD") == 2
    s = snapshot_of(order_update("o1", "ACK"), start=s)
    assert "o1" in s.open_orders
    assert open_order_count(s, "AAPL-USD") == 3
    s = snapshot_of(order_update("o1", "FILLED", remaining=0.5), start=s)
    assert open_order_count(s, "AAPL-USD") == 3
    s = snapshot_of(order_update("o1", "FILLED", remaining=0.0), start=s)
    assert "o1" not in s.open_orders
    assert open_order_count(s, "AAPL-USD") == 2
    s = snapshot_of(order_update("o2", "ACK"), position_update(open_orders=3, at=2.0), start=s)
    assert dict(s.order_delta) == {}
    assert open_order_count(s, "AAPL-USD") == 3


def test_refused_commands_change_nothing() -> None:
    """A rejected new order and a rejected modify leave the open set unchanged."""
    s = snapshot_of(order_update("o1", "ACK"))
    same = reduce(s, order_update("o2", "REJECTED_WOULD_BREACH_MAX_NOTIONAL"))
    assert same.snapshot is s
    same = reduce(s, order_update("o1", "CANNOT_MODIFY_PARTIAL_FILL"))
    assert same.snapshot is s
    assert "o1" in same.snapshot.open_orders
    gone = snapshot_of(order_update("o1", "CANCELLED"), start=s)
    assert dict(gone.open_orders) == {}
    assert reduce(gone, order_update("o9", "CANCELLED")).snapshot is gone


def test_open_orders_listing_replaces_the_set() -> None:
    """A get_user_orders reply replaces known orders and resets per-symbol counts."""
    s = snapshot_of(position_update(open_orders=4, at=1.0), order_update("old", "ACK"))
    listing = OpenOrders(
        orders=(
            order_update("a", "ACK"),
            order_update("b", "ACK", symbol="TSLA-USD"),
            order_update("c", "CANCELLED"),
        ),
        received_at=2.0,
    )
    s = snapshot_of(listing, start=s)
    assert set(s.open_orders) == {"a", "b"}
    assert open_order_count(s, "AAPL-USD") == 1
    assert open_order_count(s, "TSLA-USD") == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (position_update(upnl=math.nan), "non_finite"),
        (position_update(avg=math.inf), "non_finite"),
        (position_update(leverage=-20.0), "negative_rate"),
        (position_update(qty=10.0, avg=0.0, upnl=0.0), "non_positive_price"),
        (position_update(qty=10.0, avg=200.0, upnl=-2500.0), "non_positive_mark"),
        (balance_update(deposit=-1.0), "negative_deposit"),
        (balance_update(position_margin=-1.0), "negative_margin"),
        (balance_update(upnl=math.inf), "non_finite"),
        (mark_price(0.0, at=2.0), "non_positive_mark"),
        (mark_price(math.nan, at=2.0), "non_finite"),
        (order_update("o1", "ACK", remaining=math.nan), "non_finite"),
    ],
)
def test_impossible_frames_are_flagged_counted_and_not_applied(event: object, reason: str) -> None:
    """An impossible frame is flagged with its reason, counted, and leaves the state as it was."""
    s = snapshot_of(position_update(at=1.0), balance_update(at=1.0))
    result = reduce(s, event)  # type: ignore[arg-type]
    assert result.flag == reason
    after = result.snapshot
    assert after.flagged[reason] == 1
    assert after.positions == s.positions
    assert after.marks == s.marks
    assert after.balance is s.balance
    assert after.open_orders == s.open_orders
    assert after.last_pulse_at == s.last_pulse_at


def test_mark_jump_is_held_then_confirmed() -> None:
    """A 50 % jump is held; a second observation near it confirms and applies it."""
    s = snapshot_of(position_update(at=1.0), balance_update(at=1.0))
    held = reduce(s, mark_price(320.0, at=2.0))
    assert held.flag == "mark_jump"
    s = held.snapshot
    assert s.flagged["mark_jump"] == 1
    assert s.marks["AAPL-USD"].price == 200.0
    assert "AAPL-USD" in s.unconfirmed
    confirmed = reduce(s, mark_price(318.0, at=3.0))
    assert confirmed.flag is None
    s = confirmed.snapshot
    assert s.marks["AAPL-USD"] == Mark(318.0, "mds", 3.0)
    assert dict(s.unconfirmed) == {}
    assert s.positions["AAPL-USD"].unrealised_pnl == pytest.approx(10 * 118.0)


def test_mark_jump_not_confirmed_is_dropped() -> None:
    """A held jump followed by a mark near the old one is dropped, and that mark applies."""
    s = snapshot_of(position_update(at=1.0))
    s = reduce(s, mark_price(50.0, at=2.0)).snapshot
    result = reduce(s, mark_price(201.0, at=3.0))
    assert result.flag is None
    assert result.snapshot.marks["AAPL-USD"].price == 201.0
    assert dict(result.snapshot.unconfirmed) == {}


def test_jump_in_the_other_direction_is_held_again() -> None:
    """A second jump far from the held one replaces it as the unconfirmed frame."""
    s = snapshot_of(position_update(at=1.0))
    s = reduce(s, mark_price(320.0, at=2.0)).snapshot
    result = reduce(s, mark_price(90.0, at=3.0))
    assert result.flag == "mark_jump"
    assert result.snapshot.unconfirmed["AAPL-USD"].received_at == 3.0
    assert result.snapshot.marks["AAPL-USD"].price == 200.0


def test_held_position_pulse_confirmed_by_mark_applies_both() -> None:
    """A pulse implying a jump is held; a confirming MDS mark applies the pulse, then the mark."""
    s = snapshot_of(position_update(qty=10.0, at=1.0))
    # Position doubled and the implied mark is 330.
    held = reduce(s, position_update(qty=20.0, avg=200.0, upnl=2600.0, at=2.0))
    assert held.flag == "mark_jump"
    assert held.snapshot.positions["AAPL-USD"].pulse.position == 10.0
    assert held.snapshot.last_pulse_at == 1.0
    s = snapshot_of(mark_price(325.0, at=2.5), start=held.snapshot)
    assert s.positions["AAPL-USD"].pulse.position == 20.0
    assert s.marks["AAPL-USD"] == Mark(325.0, "mds", 2.5)
    assert s.last_pulse_at == 2.0
    assert s.positions["AAPL-USD"].unrealised_pnl == pytest.approx(20 * 125.0)


def test_no_jump_check_against_an_old_mark() -> None:
    """A large move after more than a minute without a mark is applied at once."""
    s = snapshot_of(position_update(at=1.0))
    result = reduce(s, mark_price(400.0, at=62.0))
    assert result.flag is None
    assert result.snapshot.marks["AAPL-USD"].price == 400.0


def test_held_frame_expires() -> None:
    """A held jump older than the window no longer confirms anything."""
    s = snapshot_of(mark_price(100.0, at=1.0))
    s = reduce(s, mark_price(200.0, at=2.0)).snapshot
    s = snapshot_of(
        mark_price(100.0, at=50.0), start=s
    )  # refreshes the accepted mark, drops the held one
    s = reduce(s, mark_price(200.0, at=51.0)).snapshot
    result = reduce(s, mark_price(205.0, at=200.0))
    assert result.flag is None
    assert dict(result.snapshot.unconfirmed) == {}
    assert result.snapshot.marks["AAPL-USD"].price == 205.0
