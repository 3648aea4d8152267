"""Per-user message rate limiter of the simulated trade gateway (pure; takes ``now``).

QFEX (docs/protocol.md §10, current DOCS websocket/rate): limits are per **user**, summed
across connections, 12 000 weight units per 60 s, EMA-smoothed, in two buckets
(general and cancel). Here each bucket keeps a load that decays as
``load × exp(−Δt / window)`` and grows by the command's weight; a steady rate ``r``
(units/s) settles at ``r × window``, so ``limit`` units per ``window`` seconds is the
documented 200 units/s. A command that would push the load over the limit is refused
and not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# docs/protocol.md §10 current weights; close_position and add_twap are not listed: 1.0.
WEIGHTS: dict[str, float] = {
    "add_order": 1.0,
    "cancel_order": 1.0,
    "modify_order": 1.0,
    "get_order": 2.0,
    "get_user_orders": 5.0,
    "cancel_all_orders": 2.0,
    "get_user_trades": 0.5,
    "subscribe": 0.1,
    "unsubscribe": 0.1,
    "get_user_leverage": 0.1,
    "get_available_leverage_levels": 0.1,
    "set_user_leverage": 0.1,
    "cancel_stop_order": 1.0,
    "modify_stop_order": 1.0,
    "cancel_on_disconnect": 0.1,
}
DEFAULT_WEIGHT = 1.0
CANCEL_COMMANDS = frozenset({"cancel_order", "cancel_all_orders", "cancel_stop_order"})


def weight(command: str) -> float:
    """Return the weight of ``command`` (units)."""
    return WEIGHTS.get(command, DEFAULT_WEIGHT)


def bucket(command: str) -> str:
    """Return ``"cancel"`` for cancel-related commands, else ``"general"``."""
    return "cancel" if command in CANCEL_COMMANDS else "general"


@dataclass(slots=True)
class _Load:
    value: float = 0.0
    at: float = 0.0


@dataclass(slots=True)
class RateLimiter:
    """EMA load per (user, bucket); ``limit`` units per ``window`` seconds."""

    limit: float = 12_000.0
    window: float = 60.0
    _loads: dict[tuple[str, str], _Load] = field(default_factory=dict)

    def load(self, user: str, command_bucket: str, now: float) -> float:
        """Return the decayed load of ``user``'s bucket at ``now`` (units)."""
        state = self._loads.get((user, command_bucket))
        if state is None:
            return 0.0
        return state.value * math.exp(-max(0.0, now - state.at) / self.window)

    def allow(self, user: str, command: str, now: float) -> bool:
        """Count ``command`` for ``user`` at ``now`` and tell whether it is within limit."""
        key = (user, bucket(command))
        current = self.load(user, key[1], now)
        new = current + weight(command)
        if new > self.limit:
            self._loads[key] = _Load(current, now)
            return False
        self._loads[key] = _Load(new, now)
        return True
