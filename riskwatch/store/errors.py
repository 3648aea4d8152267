"""Errors raised by the state store.

``StateStoreError`` (from :mod:`riskwatch.errors`, re-exported here) is the root: the
state database is missing, unreadable, foreign, corrupted, of a newer schema, closed,
or a write failed. At start the daemon exits 2 on it (a restart without its state is
not safe: docs/configuration.md); while running, a failed write means the action that needed
it is not sent.

The two duplicate errors are not failures of the database: they tell the caller that
the record it tried to write is already there, which for an action intent means
"already recorded for this trip: do not send again".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from riskwatch.errors import StateStoreError

if TYPE_CHECKING:
    from riskwatch.records import ActionRecord

__all__ = ["DuplicateActionError", "DuplicateRecordError", "StateStoreError"]


class DuplicateRecordError(StateStoreError):
    """A record with the same identity already exists; nothing was written.

    Not a database failure: the caller reports a conflict (HTTP 409 for a silence id)
    and carries on.
    """


class DuplicateActionError(DuplicateRecordError):
    """The action intent is already in the audit log; the caller must not send it again.

    ``existing`` is the stored record (same ``action_id``, or same
    ``(trip_key, action, symbol, attempt)``), so the caller can resume from its status.
    The executor treats it as "already sent for this trip" (docs/reliability.md): it does not
    send, and it does not exit.
    """

    def __init__(self, message: str, existing: ActionRecord) -> None:
        super().__init__(message)
        self.existing = existing
