"""An audit log in memory, for the action book's offline shells (replay, rule tests).

It takes the book's records as the state database does (``Store.record_intent``,
``mark_sent``, ``record_outcome``), keeps the rows in order, and refuses a second
intent of one (trip, action, symbol, attempt) the same way. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskwatch.actions.model import PlannedCommand
from riskwatch.actions.outputs import IntentRecord, OutcomeRecord, Record

__all__ = ["AuditRow", "MemoryAuditLog"]


@dataclass(slots=True)
class AuditRow:
    """One action attempt, as the audit log holds it."""

    action_id: str
    trip_key: str
    rule: str
    account: str
    symbol: str | None
    action: str
    attempt: int
    mode: str
    intent_at: float
    status: str = "intent"
    detail: str | None = None
    sent_at: float | None = None
    outcome_at: float | None = None

    @property
    def code(self) -> str:
        """The reason code of a refusal or failure (``""`` otherwise)."""
        if self.detail and self.status in ("refused", "failed"):
            return self.detail.split(":", 1)[0]
        return ""


class MemoryAuditLog:
    """The book's records, applied in order (see the module docstring)."""

    def __init__(self) -> None:
        self.rows: list[AuditRow] = []
        self._by_id: dict[str, AuditRow] = {}
        self._keys: set[tuple[str, str, str | None, int]] = set()

    def write(self, rec: Record) -> bool:
        """Apply one record; False (nothing written) for a duplicate intent or a record
        of an unknown action."""
        if isinstance(rec, IntentRecord):
            what = rec.cmd_or_refusal
            key = (what.trip_key, what.action, what.symbol, rec.attempt)
            if rec.action_id in self._by_id or key in self._keys:
                return False
            row = AuditRow(
                action_id=rec.action_id,
                trip_key=what.trip_key,
                rule=what.rule,
                account=what.account,
                symbol=what.symbol,
                action=what.action,
                attempt=rec.attempt if isinstance(what, PlannedCommand) else 1,
                mode=rec.mode,
                intent_at=rec.at,
            )
            self.rows.append(row)
            self._by_id[rec.action_id] = row
            self._keys.add(key)
            return True
        row_or_none = self._by_id.get(rec.action_id)
        if row_or_none is None:
            return False
        if isinstance(rec, OutcomeRecord):
            row_or_none.status = rec.status
            row_or_none.detail = rec.detail
            row_or_none.outcome_at = rec.at
        else:
            if row_or_none.status == "intent":
                row_or_none.status = "sent"
            if row_or_none.sent_at is None:
                row_or_none.sent_at = rec.at
        return True
