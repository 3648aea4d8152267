"""The records the state database keeps: plain, frozen values with no I/O.

The store (:mod:`riskwatch.store`) builds them from its rows and takes them back; the
pure layers (the action book and its breaker window, notification dispatch and
silence matching) read them without importing the store, so they never pull in
SQLite, threads or files (the "pure layers do no I/O" contract in pyproject.toml,
docs/design.md). Everything here is frozen and safe to share between threads. Times
are Unix seconds (float).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

JSONDict = dict[str, Any]

#: Statuses of an action that has not reached an outcome yet (see ``Store.record_intent``).
PENDING_STATUSES = ("intent", "sent")

#: Key of the latch flag inside an alert record (``record[LATCH_KEY] is True`` means latched).
LATCH_KEY = "latched"


def url_id(url: str) -> str:
    """Return a stable, non-reversible id for a notification URL (16 hex digits).

    Apprise URLs carry tokens and passwords (``slack://T/B/secret``), so the audit log
    stores this id instead of the URL. Same URL, same id, across restarts.
    """
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


class AlertRow(NamedTuple):
    """One stored alert state; unpacks as ``rule, account, symbol, record``.

    ``symbol`` is ``None`` at account scope. ``record`` is the caller's dict as saved.
    """

    rule: str
    account: str
    symbol: str | None
    record: JSONDict


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action attempt in the audit log.

    ``status`` is ``"intent"`` (recorded, maybe not sent), ``"sent"``, or the final
    outcome the caller recorded (``"confirmed"``, ``"failed"``, ``"refused"``,
    ``"dry_run"``, ``"unknown"``, ...). ``symbol`` is ``None`` for account-wide actions.
    """

    action_id: str
    trip_key: str
    rule: str
    account: str
    symbol: str | None
    action: str
    attempt: int
    params: JSONDict
    client_order_id: str | None
    reason: str
    mode: str
    status: str
    detail: str | None
    intent_at: float
    sent_at: float | None
    outcome_at: float | None

    @property
    def finished(self) -> bool:
        """True once an outcome has been recorded (status is neither intent nor sent)."""
        return self.status not in PENDING_STATUSES

    def to_dict(self) -> JSONDict:
        """Return the record as a JSON-able dict (for ``/api/actions``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One delivery attempt of one notification to one URL.

    ``url_id`` is :func:`url_id` of the URL, never the URL. ``status`` is what was
    notified (firing, resolved, action, ...); ``result`` is how it went (sent, failed,
    silenced, inhibited).
    """

    id: int
    route: str
    url_id: str
    alert_key: str
    status: str
    result: str
    detail: str | None
    at: float

    def to_dict(self) -> JSONDict:
        """Return the record as a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence: matchers (label matcher dicts, as the caller defined them) and a span.

    Active at ``t`` when ``starts_at <= t < ends_at``; expiring it sets ``ends_at`` to
    the expiry time (never later than it was) and ``expired_at``.
    """

    id: str
    matchers: tuple[JSONDict, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    expired_at: float | None

    def active_at(self, t: float) -> bool:
        """Return whether the silence applies at time ``t``."""
        return self.starts_at <= t < self.ends_at

    def to_dict(self) -> JSONDict:
        """Return the silence as a JSON-able dict (matchers as a list)."""
        out = asdict(self)
        out["matchers"] = [dict(m) for m in self.matchers]
        return out


@dataclass(frozen=True, slots=True)
class LatchReset:
    """One latch cleared by an operator: what, by whom, when."""

    rule: str
    account: str
    symbol: str | None
    actor: str
    at: float
