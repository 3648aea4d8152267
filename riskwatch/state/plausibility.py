"""Plausibility checks: frames whose figures no exchange could send.

A frame that fails a check is flagged with a stable reason code, counted in the account
snapshot (and by the caller in ``riskwatch_impossible_frames_total{reason}``) and NOT
applied to the account state. Rules therefore never act on it (docs/rules.md, "Actions":
"never on a frame flagged as impossible").

Reason codes (stable; used as metric labels):

``non_finite``
    NaN or ±inf in any numeric field of the frame. The check sums the fields and tests
    the sum, so a sum that overflows (fields near 1e308, themselves impossible) is also
    flagged.
``negative_deposit``
    a balance frame with ``deposit < 0``.
``negative_margin``
    a balance frame with ``order_margin < 0`` or ``position_margin < 0``.
``negative_rate``
    a position frame with ``leverage < 0``, ``initial_margin_rate < 0`` or
    ``maintenance_margin_rate < 0`` (docs/protocol.md §5.1: the margins are rates).
``non_positive_price``
    a non-flat position frame with ``average_price <= 0``.
``non_positive_mark``
    a mark price ``<= 0``: from the market-data gateway, or implied by a non-flat
    position frame (``average_price + unrealised_pnl / position``).
``mark_jump``
    a mark (from MDS or implied by a position pulse) more than :data:`MARK_JUMP_RATIO`
    away from the symbol's previous accepted mark, when that previous mark is at most
    :data:`MARK_JUMP_WINDOW` seconds old. No market moves 50 % within a minute; a
    mis-scaled price or a decoding slip does. The frame is held as *unconfirmed*
    (see ``state/account.py``) and applied once the next observation for the same
    symbol confirms it.

Thresholds (module constants, documented in docs/rules.md, "Figures"):

- :data:`MARK_JUMP_RATIO` = 0.5: ``|new / previous - 1| > 0.5`` is a jump (a mark
  rising above 150 % or falling below 50 % of the previous one).
- :data:`MARK_JUMP_WINDOW` = 60 s: a previous mark older than this is not compared
  against (after a disconnect or a market closure a large move is real), and an
  unconfirmed frame older than this is dropped.

All functions are pure and allocation-free on the accepting path: they run on every
pulse (1000 accounts × 20 symbols per second).
"""

from __future__ import annotations

import math
from typing import Final, Literal

from riskwatch.model import BalanceUpdate, OrderUpdate, PositionUpdate

ImplausibleReason = Literal[
    "non_finite",
    "negative_deposit",
    "negative_margin",
    "negative_rate",
    "non_positive_price",
    "non_positive_mark",
    "mark_jump",
]

REASONS: Final[tuple[ImplausibleReason, ...]] = (
    "non_finite",
    "negative_deposit",
    "negative_margin",
    "negative_rate",
    "non_positive_price",
    "non_positive_mark",
    "mark_jump",
)
"""Every reason code, in a fixed order (for pre-initialising metric series)."""

MARK_JUMP_RATIO: Final = 0.5
"""A mark whose relative distance to the previous mark exceeds this is a jump."""

MARK_JUMP_WINDOW: Final = 60.0
"""Seconds: the previous mark is compared against only if it is at most this old."""

_isfinite = math.isfinite


def check_position(ev: PositionUpdate) -> ImplausibleReason | None:
    """Return why a position frame is impossible, or None if it is plausible.

    Does not look for mark jumps (that needs the previous mark: :func:`is_mark_jump`).
    """
    if not _isfinite(
        ev.position
        + ev.average_price
        + ev.unrealised_pnl
        + ev.realised_pnl
        + ev.net_funding
        + ev.margin_alloc
        + ev.open_orders
        + ev.open_quantity
        + ev.leverage
        + ev.initial_margin_rate
        + ev.maintenance_margin_rate
    ):
        return "non_finite"
    if ev.leverage < 0 or ev.initial_margin_rate < 0 or ev.maintenance_margin_rate < 0:
        return "negative_rate"
    if ev.position != 0:
        if ev.average_price <= 0:
            return "non_positive_price"
        if ev.average_price + ev.unrealised_pnl / ev.position <= 0:
            return "non_positive_mark"
    return None


def check_balance(ev: BalanceUpdate) -> ImplausibleReason | None:
    """Return why a balance frame is impossible, or None if it is plausible."""
    total = (
        ev.deposit
        + ev.realised_pnl
        + ev.unrealised_pnl
        + ev.net_funding
        + ev.order_margin
        + ev.position_margin
        + ev.available_balance
    )
    if ev.fees is not None:
        total += ev.fees
    if ev.referral_rewards is not None:
        total += ev.referral_rewards
    if not _isfinite(total):
        return "non_finite"
    if ev.deposit < 0:
        return "negative_deposit"
    if ev.order_margin < 0 or ev.position_margin < 0:
        return "negative_margin"
    return None


def check_mark(price: float) -> ImplausibleReason | None:
    """Return why a market-data mark price is impossible, or None if it is plausible."""
    if not _isfinite(price):
        return "non_finite"
    if price <= 0:
        return "non_positive_mark"
    return None


def check_order(ev: OrderUpdate) -> ImplausibleReason | None:
    """Return why an order frame is impossible (a non-finite quantity or price), or None."""
    if not _isfinite(ev.quantity + ev.quantity_remaining + ev.price):
        return "non_finite"
    return None


def is_mark_jump(previous: float, previous_at: float, price: float, at: float) -> bool:
    """Whether ``price`` observed at ``at`` is a jump from ``previous`` seen at ``previous_at``.

    True when the previous mark is at most :data:`MARK_JUMP_WINDOW` seconds older and
    ``|price / previous - 1| > MARK_JUMP_RATIO``. Both prices must be positive
    (:func:`check_mark` runs first). Times are Unix seconds.
    """
    if at - previous_at > MARK_JUMP_WINDOW:
        return False
    return abs(price / previous - 1.0) > MARK_JUMP_RATIO
