"""The audit log side of the action executor: the book's records written to the state
database, and the rows the book is seeded with (riskwatch/store/)."""

from __future__ import annotations

from typing import Any

from riskwatch.actions.model import PlannedCommand
from riskwatch.actions.outputs import IntentRecord, OutcomeRecord, Record
from riskwatch.actions.window import HOUR
from riskwatch.records import ActionRecord
from riskwatch.store import Store
from riskwatch.store.writer import OutcomeLog

__all__ = ["StoreWriter", "first_intent_at", "window_rows"]


class StoreWriter:
    """Writes the book's records to a :class:`Store` (raises what the store raises).

    Intents are committed at once (before their frame is written); sends and outcomes
    go to ``outcomes`` (the daemon's writer thread, off the event loop) when given.
    """

    def __init__(self, store: Store, outcomes: OutcomeLog | None = None) -> None:
        self.store = store
        self.outcomes: OutcomeLog = outcomes if outcomes is not None else store

    def write(self, rec: Record) -> None:
        """Write one record."""
        if isinstance(rec, IntentRecord):
            what = rec.cmd_or_refusal
            if isinstance(what, PlannedCommand):
                params: dict[str, Any] = dict(what.params)
                cid = what.client_order_id
            else:
                params = {**what.params, "trip_id": what.trip_id}
                cid = None
            self.store.record_intent(
                action_id=rec.action_id,
                trip_key=what.trip_key,
                rule=what.rule,
                account=what.account,
                symbol=what.symbol,
                action=what.action,
                attempt=rec.attempt,
                params=params,
                client_order_id=cid,
                reason=rec.reason,
                mode=rec.mode,
                now=rec.at,
            )
        elif isinstance(rec, OutcomeRecord):
            self.outcomes.record_outcome(rec.action_id, rec.status, rec.detail, rec.at)
        else:
            self.outcomes.mark_sent(rec.action_id, rec.at)


def window_rows(store: Store, account: str, now: float) -> list[ActionRecord]:
    """``account``'s audit rows reaching at least an hour before ``now`` (newest first)."""
    since = now - HOUR
    limit = 256
    while True:
        rows = store.actions(limit=limit, account=account)
        # Done when the log is exhausted or reaches past the hour (a minute of margin
        # for a wall clock that stepped back).
        if len(rows) < limit or rows[-1].intent_at < since - 60.0:
            return rows
        limit *= 4


def first_intent_at(store: Store, rec: ActionRecord) -> float:
    """The intent time of the first attempt of ``rec``'s action."""
    return min(
        (
            r.intent_at
            for r in store.actions_for_trip(rec.trip_key)
            if r.action == rec.action and r.symbol == rec.symbol
        ),
        default=rec.intent_at,
    )
