"""Rows the state store hands back, and the JSON codec for the records callers pass in.

The store knows nothing of the rule engine's types: callers pass plain JSON-able
dicts (their ``to_record()``) and get the same dicts back. Everything returned here is
frozen, built from one database row, and safe to share between threads. Times are
Unix seconds (float).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

JSONDict = dict[str, Any]

#: Statuses of an action that has not reached an outcome yet (see ``Store.record_intent``).
PENDING_STATUSES = ("intent", "sent")

#: Key of the latch flag inside an alert record (``record[LATCH_KEY] is True`` means latched).
LATCH_KEY = "latched"


def dumps(value: Any, what: str) -> str:
    """Encode ``value`` as compact, key-sorted, strict JSON (no NaN or infinity).

    Raises ``ValueError`` naming ``what`` if the value is not JSON-able, so a bad
    record is refused before any write starts.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"{what} is not json-serialisable: {exc}"
        raise ValueError(msg) from exc


def loads_dict(text: str) -> JSONDict:
    """Decode a JSON object written by :func:`dumps`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        msg = f"stored record is not a json object: {type(value).__name__}"
        raise ValueError(msg)
    return value


def loads_dict_list(text: str) -> list[JSONDict]:
    """Decode a JSON list of objects written by :func:`dumps`."""
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        msg = "stored value is not a json list of objects"
        raise ValueError(msg)
    return value


def url_id(url: str) -> str:
    """Return a stable, non-reversible id for a notification URL (16 hex digits).

    Apprise URLs carry tokens and passwords (``slack://T/B/secret``), so the audit log
    stores this id instead of the URL. Same URL, same id, across restarts.
    """
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def symbol_key(symbol: str | None) -> str:
    """Map a symbol to its stored form: account scope (``None`` or ``""``) is ``""``."""
    return symbol or ""


def symbol_value(stored: str) -> str | None:
    """Inverse of :func:`symbol_key`: ``""`` comes back as ``None`` (account scope)."""
    return stored or None


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
