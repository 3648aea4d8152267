"""What the notification pipeline consumes: alert notices and action notices.

The rule engine's :class:`~riskwatch.rules.engine.AlertTransition` is adapted by
:func:`from_transition` (firing and resolved changes only; pending ones are not news),
and the action executor describes what it did with :class:`ActionNotice` (dry-run
"would have", confirmed, failed after retries, circuit breaker open). Both carry the
label set that routes, silences and inhibition match on: the rule's own labels plus
``rule``, ``account``, ``symbol`` (``""`` at account scope) and ``severity``.

Times are Unix seconds (float). Everything here is frozen and pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from riskwatch.rules.engine import Alert, AlertTransition
from riskwatch.rules.lifecycle import State, TransitionReason

__all__ = [
    "ActionNotice",
    "ActionNoticeKind",
    "AlertKey",
    "AlertNotice",
    "Status",
    "alert_labels",
    "daemon_notice",
    "from_alert",
    "from_transition",
]

Status = Literal["firing", "resolved"]
ActionNoticeKind = Literal["dry_run", "confirmed", "failed", "breaker", "audit"]
AlertKey = tuple[str, str, str]
"""``(rule, account, symbol or "")``: one alert of one rule."""

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


def alert_labels(
    rule: str,
    account: str,
    symbol: str | None,
    severity: str,
    labels: Mapping[str, str] = _EMPTY,
) -> Mapping[str, str]:
    """The label set matched by routes and silences; built-in names win over rule labels."""
    out = dict(labels)
    out.update(rule=rule, account=account, symbol=symbol or "", severity=severity)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert that started firing (``status="firing"``) or resolved.

    ``trip_id`` tells two firings of the same alert apart (a new trip is news even
    when the previous one was never reported resolved). ``shadow`` alerts never notify.
    """

    rule: str
    account: str
    symbol: str | None
    status: Status
    severity: str
    at: float
    trip_id: int = 0
    summary: str = ""
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    shadow: bool = False
    since: float | None = None

    @property
    def key(self) -> AlertKey:
        """``(rule, account, symbol or "")``."""
        return (self.rule, self.account, self.symbol or "")

    @property
    def all_labels(self) -> Mapping[str, str]:
        """Rule labels plus ``rule``, ``account``, ``symbol`` and ``severity``."""
        return alert_labels(self.rule, self.account, self.symbol, self.severity, self.labels)


@dataclass(frozen=True, slots=True)
class ActionNotice:
    """What a protective action did, for the humans.

    ``kind``: ``dry_run`` (rendered "would have …"), ``confirmed``, ``failed`` (an
    escalation after the bounded retries: rendered ``FAILED``), ``breaker`` (the
    circuit breaker opened: actions are refused), ``audit`` (the action audit log could
    not be written: the detail says whether the action was sent all the same,
    docs/actions.md). ``action`` is the action as a person reads it
    (``close_position BTC-USD``); ``detail`` the outcome or reason code.
    Escalations (``failed``, ``audit``) and ``breaker`` are always sent, whatever
    silences say.
    """

    kind: ActionNoticeKind
    rule: str
    account: str
    action: str
    at: float
    symbol: str | None = None
    severity: str = "critical"
    trip_id: int = 0
    detail: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> AlertKey:
        """The alert this action belongs to."""
        return (self.rule, self.account, self.symbol or "")

    @property
    def always(self) -> bool:
        """True for escalations and the breaker: bypass silences, inhibition and dedup."""
        return self.kind in ("failed", "breaker", "audit")

    @property
    def all_labels(self) -> Mapping[str, str]:
        """Labels as for alerts; ``severity`` is critical for escalations."""
        severity = "critical" if self.always else self.severity
        return alert_labels(self.rule, self.account, self.symbol, severity, self.labels)

    @property
    def text(self) -> str:
        """One line: ``would have close_position all`` / ``FAILED close_position all: …``."""
        if self.kind == "dry_run":
            return f"would have {self.action}"
        if self.kind == "failed":
            tail = f": {self.detail}" if self.detail else ""
            return f"FAILED {self.action}{tail}"
        if self.kind == "breaker":
            tail = f": {self.detail}" if self.detail else ""
            return f"circuit breaker open, refused {self.action}{tail}"
        if self.kind == "audit":
            tail = f": {self.detail}" if self.detail else ""
            return f"audit log unwritable for {self.action}{tail}"
        tail = f" ({self.detail})" if self.detail else ""
        return f"done {self.action}{tail}"


def from_transition(t: AlertTransition) -> AlertNotice | None:
    """Adapt an engine transition: firing and resolved ones become notices, others None.

    ``FIRING`` is a new trip; ``RESOLVED`` and ``LATCH_RESET`` end it. ``PENDING``,
    ``PENDING_CANCELLED`` and ``LATCHED`` (still firing) are not news.
    """
    if t.reason is TransitionReason.FIRING:
        status: Status = "firing"
    elif (
        t.reason in (TransitionReason.RESOLVED, TransitionReason.LATCH_RESET)
        and t.prev is State.FIRING
    ):
        status = "resolved"
    else:
        return None
    return AlertNotice(
        rule=t.rule,
        account=t.account,
        symbol=t.symbol,
        status=status,
        severity=t.severity,
        at=t.at,
        trip_id=t.trip_id,
        summary=t.summary,
        description=t.description,
        labels=t.labels,
        shadow=t.shadow,
    )


def daemon_notice(
    *,
    rule: str,
    status: Status,
    severity: str,
    at: float,
    summary: str,
    trip_id: int = 0,
    description: str = "",
    labels: Mapping[str, str] = _EMPTY,
) -> AlertNotice:
    """A built-in alert about riskwatch itself rather than an account (its state
    database, its event loop, its tasks): ``account`` empty, no symbol."""
    return AlertNotice(
        rule=rule,
        account="",
        symbol=None,
        status=status,
        severity=severity,
        at=at,
        trip_id=trip_id,
        summary=summary,
        description=description,
        labels=labels,
    )


def from_alert(a: Alert, now: float) -> AlertNotice | None:
    """Adapt a currently firing engine :class:`Alert` (None when pending)."""
    if a.state is not State.FIRING:
        return None
    return AlertNotice(
        rule=a.rule,
        account=a.account,
        symbol=a.symbol,
        status="firing",
        severity=a.severity,
        at=a.fired_at if a.fired_at is not None else now,
        trip_id=a.trip_id,
        summary=a.summary,
        description=a.description,
        labels=a.labels,
        shadow=a.shadow,
        since=a.fired_at,
    )
