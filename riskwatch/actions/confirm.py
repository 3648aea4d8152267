"""Reading the exchange's answers (pure): did a command take effect, may it be retried?

An action counts as confirmed only when the state the exchange pulses shows its
effect (docs/rules.md, "Actions"): :func:`effect` answers from the account snapshot, looking only
at pulses received after ``since`` (the reply's receive time, or the reconnect time
when the outcome of a command cut by a disconnect is being reconciled).

Retry policy of rejections (docs/protocol.md §9): rate limits, server errors and
transient order rejections are retried; malformed or refused parameters are not (a
retry would be rejected the same way), and escalate at once.
"""

from __future__ import annotations

from typing import Final

from riskwatch.actions.model import PlannedCommand
from riskwatch.actions.plan import EPSILON
from riskwatch.state.account import AccountSnapshot

__all__ = [
    "RETRYABLE_ERRORS",
    "RETRYABLE_STATUSES",
    "WORKING_STATUSES",
    "effect",
    "is_terminal",
    "result_of_rejection",
]

RETRYABLE_ERRORS: Final = frozenset({"RateLimited", "ServerError"})
"""``err.error_code`` values worth another attempt (DOCS websocket/errors: ServerError
"safe to retry after a delay"; RateLimited clears with time)."""

RETRYABLE_STATUSES: Final = frozenset(
    {
        "RATE_LIMITED",
        "REJECTED",
        "REJECTED_FAILED_TO_PROCESS",
        "REJECTED_MARKET_CLOSED",
        "CANCELLED_STP",
        "FAILED_MARGIN_CHECK",
    }
)
"""``order_response.status`` rejections worth another attempt (docs/protocol.md §9.2)."""

WORKING_STATUSES: Final = frozenset({"ACK", "MODIFIED"})
"""Statuses after which more responses for the same order follow (§7 close_position)."""


# Rejections with a label of their own in riskwatch_actions_total{result}: the
# documented error codes and order statuses (docs/protocol.md §9); others count as
# "rejected_other", so that the label set stays bounded.
_KNOWN_REJECTIONS: Final = frozenset(
    {
        "RateLimited",
        "InvalidJSONFormat",
        "InvalidParameter",
        "PermissionDenied",
        "ServerError",
        "InvalidOrder",
        "KycRequired",
        "TncRequired",
        *(
            "REJECTED NO_SUCH_ORDER INVALID_ORDER_TYPE BAD_SYMBOL FAILED_MARGIN_CHECK "
            "QUANTITY_LESS_THAN_MIN_QUANTITY QUANTITY_GREATER_THAN_MAX_QUANTITY "
            "REJECTED_WOULD_BREACH_MAX_NOTIONAL REJECTED_MARKET_CLOSED "
            "REJECTED_FAILED_TO_PROCESS RATE_LIMITED REJECTED_TOO_MANY_OPEN_ORDERS "
            "REJECTED_OPEN_INTEREST_LIMIT CANCELLED_STP INVALID_TIME_IN_FORCE"
        ).split(),
    }
)


def result_of_rejection(code: str) -> str:
    """The ``result`` label of a final rejection: ``rejected_<code>`` (lower case) for a
    documented code, ``rejected_other`` for any other."""
    return f"rejected_{code.lower()}" if code in _KNOWN_REJECTIONS else "rejected_other"


def is_terminal(status: str, quantity_remaining: float) -> bool:
    """True when no further ``order_response`` follows for this order.

    ``FILLED`` with quantity left is a partial fill: the IOC remainder's ``CANCELLED``
    follows (docs/protocol.md §5.3, §7).
    """
    if status in WORKING_STATUSES:
        return False
    return not (status == "FILLED" and quantity_remaining > EPSILON)


def effect(cmd: PlannedCommand, snapshot: AccountSnapshot, since: float) -> bool | None:
    """Whether the pulses received after ``since`` show ``cmd``'s effect.

    None: no pulse after ``since`` says yet. ``close_position``: the symbol is flat
    (or absent from a later pulse); ``cancel_all_orders``: once a whole pulse came
    after ``since`` (its balance frame, which closes the pulse, was received), no open
    order in any symbol pulsed after ``since`` nor in the order book riskwatch tracks
    (judged on the pulse's first frames alone, a symbol with orders later in the same
    pulse would be missed); ``set_leverage``:
    the symbol's leverage equals the target. ``reduce_position`` is confirmed by the
    exchange accepting the TWAP (its slices run for minutes), never here: None.
    """
    last = snapshot.last_pulse_at
    if cmd.action == "close_position" and cmd.symbol is not None:
        st = snapshot.positions.get(cmd.symbol)
        if st is None:
            return True if last is not None and last > since else None
        if st.pulse.received_at <= since:
            return None
        return abs(st.pulse.position) <= EPSILON
    if cmd.action == "cancel_all_orders":
        if last is None or last <= since:
            return None
        if snapshot.last_balance_at is None or snapshot.last_balance_at <= since:
            return None
        fresh = [st for st in snapshot.positions.values() if st.pulse.received_at > since]
        if not fresh:
            return None
        return all(st.pulse.open_orders == 0 for st in fresh) and not snapshot.open_orders
    if cmd.action == "set_leverage" and cmd.symbol is not None:
        st = snapshot.positions.get(cmd.symbol)
        if st is None or st.pulse.received_at <= since:
            return None
        target = float(cmd.params.get("leverage", 0.0))
        return abs(st.pulse.leverage - target) <= EPSILON
    return None
