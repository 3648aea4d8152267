"""Tests of riskwatch.state.derived: every figure with worked numbers."""

from __future__ import annotations

import math

import pytest

from riskwatch.state.account import AccountSnapshot, initial
from riskwatch.state.catalogue import ACCOUNT_NAMES, POSITION_NAMES
from riskwatch.state.derived import (
    compute,
    liquidation_distance,
    ratio,
)
from tests.support.factories import (
    MM_20X,
    balance_update,
    mark_price,
    order_update,
    position_update,
    snapshot_of,
)


def long_20x_marked_to_190() -> AccountSnapshot:
    """A 20× long of 10 @ 200 (pulse at mark 200), then an MDS mark of 190."""
    # available_balance is a figure no other one equals, to show it is taken as reported.
    return snapshot_of(
        position_update(at=1.0),
        balance_update(deposit=1000.0, position_margin=100.0, at=1.0, available_balance=123.0),
        mark_price(190.0, 1.5),
    )


def test_every_name_is_present() -> None:
    """Figures carry every account-scope and position-scope name."""
    f = compute(long_20x_marked_to_190(), now=2.0)
    assert list(f.account) == list(ACCOUNT_NAMES)
    assert list(f.positions) == ["AAPL-USD"]
    assert list(f.positions["AAPL-USD"]) == list(POSITION_NAMES)
    assert set(ACCOUNT_NAMES) >= {
        "equity",
        "deposit",
        "available_balance",
        "realised_pnl",
        "unrealised_pnl",
        "net_funding",
        "fees",
        "order_margin",
        "position_margin",
        "margin_usage",
        "maintenance_usage",
        "gross_notional",
        "net_notional",
        "account_leverage",
        "open_orders",
        "positions",
        "pnl_today",
        "data_age",
    }


def test_long_20x_of_10_at_200_marked_to_190() -> None:
    """Every account and position figure of the worked 20× long example, computed by hand."""
    f = compute(long_20x_marked_to_190(), now=3.0, pnl_baseline=950.0)
    a = f.account
    # unrealised = 10 × (190 − 200) = −100; equity = 1000 + 0 − 100 + 0 = 900
    assert a["unrealised_pnl"] == pytest.approx(-100.0)
    assert a["equity"] == pytest.approx(900.0)
    assert a["reported_equity"] == pytest.approx(1000.0)
    assert a["deposit"] == 1000.0
    assert a["available_balance"] == 123.0
    assert a["fees"] is None
    # IM at 190 = 10 × 190 × 0.05 = 95: the balance's 100 moves by 95 − 100.
    assert a["position_margin"] == pytest.approx(95.0)
    assert a["margin_usage"] == pytest.approx(95.0 / 900.0)
    # MM = 10 × 190 × 0.05 × ⅔ = 63.333…
    assert a["maintenance_usage"] == pytest.approx((1900.0 / 30.0) / 900.0)
    assert a["gross_notional"] == pytest.approx(1900.0)
    assert a["net_notional"] == pytest.approx(1900.0)
    assert a["account_leverage"] == pytest.approx(1900.0 / 900.0)
    assert a["positions"] == 1.0
    assert a["open_orders"] == 0.0
    assert a["pnl_today"] == pytest.approx(900.0 - 950.0)
    assert a["data_age"] == pytest.approx(2.0)
    assert a["equity_drift"] is None
    assert not f.exchange_confirmed
    p = f.positions["AAPL-USD"]
    assert p["position"] == 10.0
    assert p["average_price"] == 200.0
    assert p["mark_price"] == 190.0
    assert p["notional"] == pytest.approx(1900.0)
    assert p["unrealised_pnl"] == pytest.approx(-100.0)
    assert p["leverage"] == 20.0
    assert p["effective_leverage"] == pytest.approx(1900.0 / 900.0)
    assert p["initial_margin"] == pytest.approx(95.0)
    assert p["maintenance_margin"] == pytest.approx(1900.0 / 30.0)
    assert p["margin_alloc"] == 0.0
    # (900 − 63.333) / (1900 × (1 − 1/30)) = 836.667 / 1836.667
    assert p["liquidation_distance"] == pytest.approx(836.6666667 / 1836.6666667)


def test_pulse_confirms_the_marked_figures() -> None:
    """The position and balance pulses that follow at 190 give the same figures, now confirmed."""
    s = snapshot_of(position_update(upnl=-100.0, at=2.0), start=long_20x_marked_to_190())
    f = compute(s, now=2.0)
    assert f.exchange_confirmed
    assert f.account["unrealised_pnl"] == pytest.approx(-100.0)
    assert f.account["equity"] == pytest.approx(900.0)
    s = snapshot_of(balance_update(upnl=-100.0, position_margin=95.0, at=2.1), start=s)
    f = compute(s, now=2.1)
    assert f.account["equity"] == pytest.approx(900.0)
    assert f.account["reported_equity"] == pytest.approx(900.0)
    assert f.account["equity_drift"] == pytest.approx(0.0)
    assert f.account["position_margin"] == pytest.approx(95.0)


def test_equity_includes_realised_and_funding() -> None:
    """Equity is deposit + realised + unrealised + net funding (docs/design.md#precise-points)."""
    s = snapshot_of(balance_update(deposit=1000.0, realised=50.0, upnl=-20.0, funding=-5.0))
    f = compute(s, now=1.0)
    assert f.account["equity"] == pytest.approx(1025.0)


def test_equity_subtracts_fees_reported_apart() -> None:
    """A balance that reports fees apart has them outside realised PnL (docs/protocol.md §6):
    equity subtracts them, and adds referral rewards."""
    s = snapshot_of(
        balance_update(deposit=1000.0, realised=50.0, upnl=-20.0, funding=-5.0, fees=3.0)
    )
    f = compute(s, now=1.0)
    assert f.account["equity"] == pytest.approx(1022.0)
    assert f.account["fees"] == 3.0


def check_liquidation(s: AccountSnapshot, adverse: float, now: float) -> None:
    """Move the mark by the computed distance and require maintenance usage 1.0."""
    f = compute(s, now=now)
    x = f.positions["AAPL-USD"]["liquidation_distance"]
    assert x is not None
    assert 0 < x < 1
    m = f.positions["AAPL-USD"]["mark_price"]
    assert m is not None
    moved = snapshot_of(mark_price(m * (1 + adverse * x), at=now + 100.0), start=s)
    assert compute(moved, now=now + 100.0).account["maintenance_usage"] == pytest.approx(1.0)


def test_liquidation_distance_long_reaches_maintenance_usage_one() -> None:
    """Moving a long's mark down by liquidation_distance brings maintenance usage to 1.0."""
    check_liquidation(long_20x_marked_to_190(), adverse=-1.0, now=2.0)


def test_liquidation_distance_short_by_hand_and_by_move() -> None:
    """A short of 10 @ 200 marked at 210 has distance 830 / 2170, which reaches usage 1.0."""
    s = snapshot_of(
        position_update(qty=-10.0, at=1.0),
        balance_update(deposit=1000.0, at=1.0),
        mark_price(210.0, at=1.5),
    )
    f = compute(s, now=2.0)
    # E = 1000 − 100 = 900, M = 2100 / 30 = 70, N(1 + r) = 2100 × 31/30 = 2170
    assert f.account["equity"] == pytest.approx(900.0)
    assert f.positions["AAPL-USD"]["liquidation_distance"] == pytest.approx(830.0 / 2170.0)
    assert f.account["net_notional"] == pytest.approx(-2100.0)
    check_liquidation(s, adverse=1.0, now=2.0)


def test_liquidation_distance_edge_cases() -> None:
    """Flat is None, underwater is 0, unreachable is +inf."""
    assert liquidation_distance(900.0, 60.0, 0.0, MM_20X, long=True) is None
    assert liquidation_distance(50.0, 60.0, 1900.0, MM_20X, long=True) == 0.0
    assert liquidation_distance(-5.0, 0.0, 1900.0, MM_20X, long=False) == 0.0
    # A long whose mark would have to fall below zero: 1× with plenty of equity.
    assert liquidation_distance(10_000.0, 100.0, 1000.0, 0.5, long=True) == math.inf
    # Maintenance rate ≥ 100 % on a long: equity and requirement fall together.
    assert liquidation_distance(900.0, 60.0, 1900.0, 1.0, long=True) == math.inf


def test_ratio_with_non_positive_equity() -> None:
    """A positive requirement over equity ≤ 0 is +inf, a zero one is 0."""
    assert ratio(50.0, 100.0) == 0.5
    assert ratio(50.0, 0.0) == math.inf
    assert ratio(50.0, -10.0) == math.inf
    assert ratio(0.0, -10.0) == 0.0


def test_negative_equity_gives_infinite_usage() -> None:
    """An account marked below zero equity reports infinite usage and leverage."""
    s = snapshot_of(
        position_update(at=1.0), balance_update(deposit=100.0, at=1.0), mark_price(185.0, at=70.0)
    )
    f = compute(s, now=70.0)
    assert f.account["equity"] == pytest.approx(-50.0)
    assert f.account["margin_usage"] == math.inf
    assert f.account["maintenance_usage"] == math.inf
    assert f.account["account_leverage"] == math.inf
    assert f.positions["AAPL-USD"]["liquidation_distance"] == 0.0


def test_without_balance_money_figures_are_none() -> None:
    """Before a balance pulse, money figures are None and notionals are known."""
    s = snapshot_of(position_update(at=1.0))
    f = compute(s, now=4.0, pnl_baseline=1000.0)
    for name in (
        "equity",
        "deposit",
        "margin_usage",
        "maintenance_usage",
        "account_leverage",
        "pnl_today",
        "reported_equity",
    ):
        assert f.account[name] is None, name
    assert f.account["gross_notional"] == pytest.approx(2000.0)
    assert f.account["data_age"] == pytest.approx(3.0)
    p = f.positions["AAPL-USD"]
    assert p["effective_leverage"] is None
    assert p["liquidation_distance"] is None
    assert p["notional"] == pytest.approx(2000.0)


def test_empty_snapshot() -> None:
    """An empty snapshot has no rows, zero notionals, and no data age."""
    f = compute(initial("desk-a"), now=10.0)
    assert f.account["data_age"] is None
    assert f.account["gross_notional"] == 0.0
    assert f.account["positions"] == 0.0
    assert len(f.positions) == 0
    assert f.last_pulse_at is None


def test_data_age_never_negative() -> None:
    """A pulse stamped after ``now`` gives data_age 0, not a negative age."""
    s = snapshot_of(balance_update(at=10.0))
    assert compute(s, now=9.0).account["data_age"] == 0.0


def test_flat_symbols_and_order_only_symbols_have_rows() -> None:
    """Flat pulsed symbols and symbols with known open orders get rows with defined values."""
    ack = order_update("o1", "ACK", "TSLA-USD", 2.0, 1.2, side="SELL", quantity=2.0, price=300.0)
    s = snapshot_of(
        position_update(
            symbol="GOLD-USD", qty=0.0, avg=0.0, open_orders=1, open_quantity=1.0, at=1.0
        ),
        balance_update(at=1.0),
        ack,
    )
    f = compute(s, now=2.0)
    assert set(f.positions) == {"GOLD-USD", "TSLA-USD"}
    assert "TSLA-USD" in f.positions
    assert "NOPE-USD" not in f.positions
    gold = f.positions["GOLD-USD"]
    assert gold["position"] == 0.0
    assert gold["average_price"] is None
    assert gold["mark_price"] is None
    assert gold["notional"] == 0.0
    assert gold["effective_leverage"] == 0.0
    assert gold["liquidation_distance"] is None
    assert gold["leverage"] == 20.0
    assert gold["open_orders"] == 1.0
    tsla = f.positions["TSLA-USD"]
    assert tsla["open_orders"] == 1.0
    assert tsla["leverage"] is None
    assert tsla["initial_margin"] is None
    assert f.account["open_orders"] == 2.0
    assert f.account["positions"] == 0.0
    with pytest.raises(KeyError):
        f.positions["NOPE-USD"]


def test_two_positions_sum() -> None:
    """Account sums add long and short positions (gross) and net them (net notional)."""
    s = snapshot_of(
        position_update(symbol="A-USD", qty=10.0, avg=100.0, upnl=50.0, at=1.0),
        position_update(symbol="B-USD", qty=-4.0, avg=50.0, upnl=-20.0, at=1.0),
        balance_update(deposit=1000.0, upnl=30.0, position_margin=0.0, at=1.0),
    )
    f = compute(s, now=1.0)
    # A marked at 105 (notional 1050), B marked at 55 (notional 220).
    assert f.account["gross_notional"] == pytest.approx(1270.0)
    assert f.account["net_notional"] == pytest.approx(1050.0 - 220.0)
    assert f.account["equity"] == pytest.approx(1030.0)
    assert f.account["maintenance_usage"] == pytest.approx(1270.0 * MM_20X / 1030.0)
    assert f.account["positions"] == 2.0
    assert f.exchange_confirmed


def test_position_margin_is_floored_at_zero() -> None:
    """A mark fall larger than the reported position margin leaves it at 0, not negative."""
    s = snapshot_of(
        position_update(at=1.0),
        balance_update(position_margin=10.0, at=1.0),
        mark_price(150.0, at=100.0),
    )
    assert compute(s, now=100.0).account["position_margin"] == 0.0


def test_rows_are_built_once_and_kept() -> None:
    """Reading a row twice returns the same row; the mapping's length counts its symbols."""
    f = compute(long_20x_marked_to_190(), now=2.0)
    assert f.positions["AAPL-USD"] is f.positions["AAPL-USD"]
    assert len(f.positions) == 1
    assert dict(f.positions)["AAPL-USD"]["position"] == 10.0


def test_balance_before_positions_does_not_count_them_twice() -> None:
    """After a reconnect the balance may come before the position pulses: no double count."""
    s = snapshot_of(
        balance_update(deposit=1000.0, upnl=-100.0, position_margin=95.0, at=1.0),
        position_update(qty=10.0, avg=200.0, upnl=-100.0, at=1.1),
    )
    f = compute(s, 1.2)
    assert f.account["position_margin"] == pytest.approx(95.0)
    assert f.account["unrealised_pnl"] == pytest.approx(-100.0)
    assert f.account["equity"] == pytest.approx(900.0)
    moved = snapshot_of(mark_price(180.0, 1.3), start=s)
    g = compute(moved, 1.4)
    assert g.account["unrealised_pnl"] == pytest.approx(-200.0)
    assert g.account["equity"] == pytest.approx(800.0)
