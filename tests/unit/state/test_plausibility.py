"""Tests of riskwatch.state.plausibility: reason codes and thresholds."""

from __future__ import annotations

import math
import re

import msgspec
import pytest

from riskwatch.model import BalanceUpdate, OrderUpdate, PositionUpdate
from riskwatch.state.plausibility import (
    MARK_JUMP_RATIO,
    MARK_JUMP_WINDOW,
    REASONS,
    check_balance,
    check_mark,
    check_order,
    check_position,
    is_mark_jump,
)
from tests.support.factories import balance_update, position_update


def position(**changes: float) -> PositionUpdate:
    """A plausible 10× long of 1 X-USD at 100, with ``changes`` applied."""
    event = position_update(
        "X-USD", 1.0, 100.0, 5.0, leverage=10.0, initial_margin_rate=0.1,
        maintenance_margin_rate=0.0667,
    )  # fmt: skip
    return msgspec.structs.replace(event, **changes)


def balance(**changes: float | None) -> BalanceUpdate:
    """A plausible balance of 100 USD deposit, with ``changes`` applied."""
    event = balance_update(100.0, 1.0, -5.0, -0.5, 10.0, available_balance=85.0)
    return msgspec.structs.replace(event, **changes)


def test_reasons_are_stable_label_values() -> None:
    """Reason codes are lower-case identifiers fit for a metric label."""
    assert len(set(REASONS)) == len(REASONS)
    for reason in REASONS:
        assert re.fullmatch(r"[a-z_]+", reason)


def test_plausible_frames_pass() -> None:
    """Ordinary frames, including flat positions and negative PnL, raise no flag."""
    assert check_position(position()) is None
    assert check_position(position(position=0.0, average_price=0.0, unrealised_pnl=0.0)) is None
    assert check_position(position(position=-2.0, unrealised_pnl=-30.0)) is None
    assert check_balance(balance()) is None
    assert check_balance(balance(fees=1.5, referral_rewards=0.2)) is None
    assert check_mark(0.01) is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (position(realised_pnl=math.nan), "non_finite"),
        (position(open_quantity=-math.inf), "non_finite"),
        (position(maintenance_margin_rate=-0.01), "negative_rate"),
        (position(initial_margin_rate=-0.1), "negative_rate"),
        (position(average_price=-1.0), "non_positive_price"),
        (position(position=1.0, average_price=100.0, unrealised_pnl=-100.0), "non_positive_mark"),
        (position(position=-1.0, average_price=100.0, unrealised_pnl=100.0), "non_positive_mark"),
    ],
)
def test_position_reasons(frame: PositionUpdate, reason: str) -> None:
    """Each impossible position frame gets its own reason."""
    assert check_position(frame) == reason


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (balance(net_funding=math.nan), "non_finite"),
        (balance(fees=math.inf), "non_finite"),
        (balance(deposit=-0.01), "negative_deposit"),
        (balance(order_margin=-1.0), "negative_margin"),
    ],
)
def test_balance_reasons(frame: BalanceUpdate, reason: str) -> None:
    """Each impossible balance frame gets its own reason."""
    assert check_balance(frame) == reason


def test_mark_and_order_reasons() -> None:
    """Marks must be finite and positive; orders must have finite figures."""
    assert check_mark(math.inf) == "non_finite"
    assert check_mark(0.0) == "non_positive_mark"
    assert check_mark(-3.0) == "non_positive_mark"
    order = OrderUpdate(
        "o", "", "X-USD", "ACK", "BUY", "LIMIT", "GTC", 1.0, 1.0, math.nan, None, 1.0
    )
    assert check_order(order) == "non_finite"


def test_mark_jump_thresholds() -> None:
    """A jump is more than 50 % away from a mark at most a minute old."""
    assert MARK_JUMP_RATIO == 0.5
    assert MARK_JUMP_WINDOW == 60.0
    assert is_mark_jump(100.0, 0.0, 151.0, 1.0)
    assert is_mark_jump(100.0, 0.0, 49.0, 1.0)
    assert not is_mark_jump(100.0, 0.0, 150.0, 1.0)
    assert not is_mark_jump(100.0, 0.0, 50.0, 1.0)
    assert is_mark_jump(100.0, 0.0, 200.0, 60.0)
    assert not is_mark_jump(100.0, 0.0, 200.0, 60.5)
