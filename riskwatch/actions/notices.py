"""Action events as notification notices (the bridge to :mod:`riskwatch.notify`).

``dry_run`` → "would have …", ``confirmed`` → done, ``escalation`` → ``FAILED`` (always
delivered, whatever silences say) or, for ``AUDIT_UNWRITABLE``, the audit-log notice
(also always delivered), ``breaker_open`` → the circuit-breaker notice.
``sent``, ``refused`` and ``failed`` events are logged and counted but not notified:
the ``escalation`` that follows a failure is the notice a person gets.
"""

from __future__ import annotations

from riskwatch.actions.model import AUDIT_UNWRITABLE, ActionEvent
from riskwatch.notify.notice import ActionNotice, ActionNoticeKind

__all__ = ["to_notice"]

_KINDS: dict[str, ActionNoticeKind] = {
    "dry_run": "dry_run",
    "confirmed": "confirmed",
    "escalation": "failed",
    "breaker_open": "breaker",
}


def to_notice(event: ActionEvent) -> ActionNotice | None:
    """The notice for ``event``, or None when the event is not notified."""
    kind = _KINDS.get(event.kind)
    if kind is None:
        return None
    if event.kind == "escalation" and event.code == AUDIT_UNWRITABLE:
        # The audit log failed, not (necessarily) the action: docs/actions.md.
        kind = "audit"
    detail = f"{event.code}: {event.detail}" if event.code else event.detail
    return ActionNotice(
        kind=kind,
        rule=event.rule,
        account=event.account,
        action=event.summary,
        at=event.at,
        symbol=event.symbol,
        severity=event.severity,
        trip_id=event.trip_id,
        detail=detail,
    )
