"""Types of the protective-action pipeline: planned commands, refusals, events.

The plan (:mod:`riskwatch.actions.plan`) turns an engine
:class:`~riskwatch.rules.engine.ActionIntent` into :class:`PlannedCommand` values (one
per action and symbol: ``close_position: all`` over three positions is three commands)
and :class:`Refusal` values carrying a stable reason code. The executor
(:mod:`riskwatch.actions.executor`) records, sends and confirms the commands and tells
its listeners what happened through :class:`ActionEvent` values.

Reason codes are fixed strings (they double as log keys and appear in the audit log
as ``CODE: detail``, e.g. ``CIRCUIT_BREAKER_OPEN: 6 actions in 1h``, docs/design.md item 11).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "CODES",
    "ActionEvent",
    "ActionEventKind",
    "ActionListener",
    "Plan",
    "PlannedCommand",
    "Refusal",
]

ActionEventKind = Literal[
    "dry_run", "sent", "confirmed", "failed", "refused", "escalation", "breaker_open"
]
"""What an :class:`ActionEvent` reports.

``dry_run``: would have been sent (mode dry-run); ``sent``: first attempt written to
the socket; ``confirmed``: the exchange's replies and pulses show the effect;
``failed``: final failure (always followed by an ``escalation``); ``refused``: a guard
stopped it before any send; ``escalation``: a critical notice a person must act on;
``breaker_open``: the per-account circuit breaker has just opened.
"""

# Stable reason codes (docs/rules.md, "Actions"; docs/design.md item 11).
CIRCUIT_BREAKER_OPEN: Final = "CIRCUIT_BREAKER_OPEN"
KILL_SWITCH: Final = "KILL_SWITCH"
DATA_STALE: Final = "DATA_STALE"
NOT_EXCHANGE_CONFIRMED: Final = "NOT_EXCHANGE_CONFIRMED"
NO_POSITION: Final = "NO_POSITION"
NO_SYMBOL: Final = "NO_SYMBOL"
LEVERAGE_LOCKED: Final = "LEVERAGE_LOCKED"
BELOW_MIN_QUANTITY: Final = "BELOW_MIN_QUANTITY"
NO_LEVERAGE_LEVEL: Final = "NO_LEVERAGE_LEVEL"
REJECTED: Final = "REJECTED"
RETRIES_EXHAUSTED: Final = "RETRIES_EXHAUSTED"
OUTCOME_UNKNOWN: Final = "OUTCOME_UNKNOWN"
NOT_CONNECTED: Final = "NOT_CONNECTED"
DECISION_EXPIRED: Final = "DECISION_EXPIRED"
AUDIT_UNWRITABLE: Final = "AUDIT_UNWRITABLE"
CODES: Final = frozenset(
    {
        CIRCUIT_BREAKER_OPEN,
        KILL_SWITCH,
        DATA_STALE,
        NOT_EXCHANGE_CONFIRMED,
        NO_POSITION,
        NO_SYMBOL,
        LEVERAGE_LOCKED,
        BELOW_MIN_QUANTITY,
        NO_LEVERAGE_LEVEL,
        REJECTED,
        RETRIES_EXHAUSTED,
        OUTCOME_UNKNOWN,
        NOT_CONNECTED,
        DECISION_EXPIRED,
        AUDIT_UNWRITABLE,
    }
)
"""Every reason code a refusal or failure may carry."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    """One attempt of one action, ready to record and send.

    ``action_id`` is unique per (trip, action, symbol, attempt) and is the audit-log
    key; ``client_order_id`` is the id inside the frame (``close_position``'s
    ``client_order_id``, ``add_twap``'s ``client_twap_id``; None for
    ``cancel_all_orders`` and ``set_user_leverage``, whose params carry none).
    ``params`` is what the audit log stores; it holds everything needed to rebuild the
    command after a restart (``trip_id``, ``severity``, the target symbol, sizes).
    ``frame`` is the exact JSON text to write (docs/protocol.md §7).
    """

    action_id: str
    trip_key: str
    trip_id: int
    rule: str
    account: str
    symbol: str | None
    action: str
    attempt: int
    params: Mapping[str, Any]
    client_order_id: str | None
    frame: str
    severity: str = "critical"

    @property
    def summary(self) -> str:
        """The action as a person reads it, e.g. ``close_position AAPL-USD``."""
        return describe(self.action, self.symbol, self.params)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An action the plan will not send, with its stable ``code`` and a ``detail``."""

    trip_key: str
    trip_id: int
    rule: str
    account: str
    symbol: str | None
    action: str
    code: str
    detail: str
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    severity: str = "critical"

    @property
    def reason(self) -> str:
        """``CODE: detail`` (the form logged, stored and shown)."""
        return f"{self.code}: {self.detail}"

    @property
    def summary(self) -> str:
        """The action as a person reads it."""
        return describe(self.action, self.symbol, self.params)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one intent became: commands to record and send, refusals to record.

    ``breaker_opened`` is True when the per-account limit refused at least one command
    (the executor emits one ``breaker_open`` event each time the breaker opens).
    """

    commands: tuple[PlannedCommand, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    breaker_opened: bool = False


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """What the executor did with one action, for notifications and logs.

    ``summary`` is the action as a person reads it (``close_position AAPL-USD``);
    ``code`` a reason code from :data:`CODES` (empty when there is none); ``detail``
    free text; ``at`` Unix seconds; ``mode`` ``"armed"`` or ``"dry-run"``.
    ``critical`` is True for escalations and the breaker: they must reach a person
    whatever silences say (docs/notifications.md, "Silences").
    """

    kind: ActionEventKind
    account: str
    rule: str
    symbol: str | None
    action: str
    summary: str
    trip_id: int
    at: float
    mode: str
    attempt: int = 1
    client_order_id: str | None = None
    code: str = ""
    detail: str = ""
    severity: str = "critical"
    action_id: str | None = None

    @property
    def critical(self) -> bool:
        """True for ``failed``, ``escalation`` and ``breaker_open``."""
        return self.kind in ("failed", "escalation", "breaker_open")

    @property
    def text(self) -> str:
        """One line for a person: ``would have close_position AAPL-USD (rule X, desk-a)``."""
        where = f"rule {self.rule}, account {self.account}"
        reason = f"{self.code}: {self.detail}" if self.code else self.detail
        tail = f": {reason}" if reason else ""
        if self.kind == "dry_run":
            return f"would have {self.summary} ({where})"
        if self.kind == "sent":
            return f"sent {self.summary} ({where}, attempt {self.attempt})"
        if self.kind == "confirmed":
            return f"done {self.summary} ({where}){tail}"
        if self.kind == "refused":
            return f"refused {self.summary} ({where}){tail}"
        if self.kind == "breaker_open":
            return f"circuit breaker open on {self.account}, refused {self.summary}{tail}"
        if self.kind == "escalation" and self.code == AUDIT_UNWRITABLE:
            return f"AUDIT LOG UNWRITABLE for {self.summary} ({where}){tail}"
        return f"FAILED {self.summary} ({where}){tail}"


ActionListener = Callable[[ActionEvent], None]
"""Called synchronously with every :class:`ActionEvent`; must not block or raise."""


def describe(action: str, symbol: str | None, params: Mapping[str, Any]) -> str:
    """``close_position AAPL-USD``, ``set_leverage AAPL-USD 10``, ``cancel_all_orders``…"""
    if action == "cancel_all_orders":
        return "cancel_all_orders"
    if action == "set_leverage":
        return f"set_leverage {symbol} {params.get('leverage', '?')}"
    if action == "reduce_position":
        fraction = params.get("fraction")
        frac = f" by {fraction:g}" if isinstance(fraction, int | float) else ""
        return f"reduce_position {symbol}{frac}"
    return f"{action} {symbol or '?'}"
