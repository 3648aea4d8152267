"""What riskwatch tells one Alertmanager, and when (pure; docs/notifications-alertmanager.md).

An :class:`AlertmanagerBook` holds, for one ``alertmanager://`` target, every alert it
must keep posting to Alertmanager's v2 API (``POST /api/v2/alerts``) and answers, at
``now``, which ones are due. It never reads a clock and never touches the network:
:mod:`riskwatch.notify.amsender` posts what it returns.

The contract with Alertmanager is Prometheus' own:

- a firing alert is posted at once, then again every ``resend`` seconds, each time with
  ``endsAt`` = now + 4 × ``resend``; if riskwatch dies, the alert resolves by itself;
- a resolved alert is posted with ``endsAt`` = the time it resolved, until one post
  succeeds;
- labels are the same on every replica (``alertname`` = the rule, ``rule``,
  ``account``, ``symbol`` when there is one, ``severity`` and the rule's own labels),
  so Alertmanager's deduplication merges two riskwatch replicas into one alert, and
  its grouping, silences and inhibition apply to them;
- annotations carry ``summary``, ``description``, ``trip`` and, when
  ``http.external_url`` is set, ``status_page`` (also the ``generatorURL``).

Action outcomes and escalations are posted once each as alerts of their own
(``alertname`` ``RiskwatchAction``, ``RiskwatchActionFailed`` or
``RiskwatchCircuitBreaker``, with ``action`` and ``outcome`` labels), ending
:data:`ACTION_TTL` (escalations: :data:`ESCALATION_TTL`) after they happened, so
Alertmanager notifies them once and then resolves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from riskwatch.notify.notice import ActionNotice, AlertNotice

__all__ = [
    "ACTION_TTL",
    "ESCALATION_TTL",
    "AlertmanagerBook",
    "Posting",
    "action_labels",
    "alert_labels_for",
    "rfc3339",
]

ACTION_TTL: Final = 300.0
"""Seconds an action-outcome alert stays firing in Alertmanager (it is news, not a state)."""
ESCALATION_TTL: Final = 3600.0
"""Seconds a failed action or an open circuit breaker stays firing in Alertmanager."""
RESEND_FACTOR: Final = 4
"""``endsAt`` of a firing alert is this many resend periods after each post."""

_ACTION_NAMES: Final = {
    "failed": "RiskwatchActionFailed",
    "breaker": "RiskwatchCircuitBreaker",
    "audit": "RiskwatchAuditUnwritable",
}


def rfc3339(t: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds (what Alertmanager parses)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(labels: Mapping[str, str]) -> dict[str, str]:
    """Alertmanager (like Prometheus) treats an empty label as absent: leave them out."""
    return {k: v for k, v in labels.items() if v != ""}


def alert_labels_for(n: AlertNotice) -> dict[str, str]:
    """The label set of one riskwatch alert in Alertmanager (same on every replica)."""
    labels = _clean(n.all_labels)
    labels["alertname"] = n.rule
    return labels


def action_labels(n: ActionNotice) -> dict[str, str]:
    """The label set of one action outcome (``alertname`` says which kind)."""
    labels = _clean(n.all_labels)
    labels["alertname"] = _ACTION_NAMES.get(n.kind, "RiskwatchAction")
    labels["action"] = n.action
    labels["outcome"] = n.kind
    return labels


@dataclass(slots=True)
class _Entry:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None  # None while firing: set at each post from the resend period
    last_post: float | None = None
    once: bool = False  # resolved alerts and action outcomes: dropped after one good post


@dataclass(frozen=True, slots=True)
class Posting:
    """One post to make: the JSON body (a list of alerts), the book's keys and entries it
    carries, and what each alert is: ``firing`` (first post), ``resend``, ``resolved`` or
    the action outcome (``confirmed``, ``failed``, …)."""

    keys: tuple[tuple[str, ...], ...]
    entries: tuple[object, ...]
    body: list[dict[str, Any]]
    kinds: tuple[str, ...]

    @property
    def news(self) -> int:
        """Alerts in this post that are not resends."""
        return sum(1 for k in self.kinds if k != "resend")


def _key(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in sorted(labels.items()))


class AlertmanagerBook:
    """The alerts one Alertmanager target must hold; see the module docstring.

    ``resend`` seconds between posts of a firing alert; ``external_url`` the status
    page's base URL (or None).
    """

    def __init__(self, resend: float, external_url: str | None = None) -> None:
        self.resend = resend
        self.external_url = external_url.rstrip("/") if external_url else None
        self._entries: dict[tuple[str, ...], _Entry] = {}

    def _link(self, account: str) -> dict[str, str]:
        if self.external_url is None:
            return {}
        return {"status_page": f"{self.external_url}/#account-{account}"}

    # -- input ----------------------------------------------------------------------

    def alert(self, n: AlertNotice) -> None:
        """A riskwatch alert fired or resolved (shadow alerts are ignored)."""
        if n.shadow:
            return
        labels = alert_labels_for(n)
        key = _key(labels)
        if n.status == "firing":
            old = self._entries.get(key)
            if old is not None and old.ends_at is None:
                return  # already firing: the next resend carries it
            annotations = {"summary": n.summary, "description": n.description}
            annotations["trip"] = str(n.trip_id)
            annotations.update(self._link(n.account))
            self._entries[key] = _Entry(
                labels, _clean(annotations), starts_at=n.since or n.at, ends_at=None
            )
            return
        entry = self._entries.get(key)
        if entry is None or entry.ends_at is not None:
            return  # never posted as firing here: nothing to resolve
        # A new entry, not a change: a post of the firing one may be in flight.
        self._entries[key] = replace(entry, ends_at=n.at, once=True, last_post=None)

    def sync(self, account: str, firing: Iterable[AlertNotice], now: float) -> None:
        """Make ``account``'s firing alerts exactly ``firing`` (a restart or a reload)."""
        current = {_key(alert_labels_for(n)): n for n in firing if not n.shadow}
        for key, entry in list(self._entries.items()):
            if entry.once or entry.ends_at is not None:
                continue
            if entry.labels.get("account") == account and key not in current:
                self._entries[key] = replace(entry, ends_at=now, once=True, last_post=None)
        for n in current.values():
            self.alert(n)

    def action(self, n: ActionNotice) -> None:
        """An action outcome: posted once, firing until ``at`` + its TTL."""
        labels = action_labels(n)
        ttl = ESCALATION_TTL if n.always else ACTION_TTL
        annotations = {
            "summary": n.text,
            "description": f"{n.text} (rule {n.rule}, account {n.account}, trip {n.trip_id})",
            "trip": str(n.trip_id),
            **self._link(n.account),
        }
        self._entries[_key(labels)] = _Entry(
            labels, _clean(annotations), starts_at=n.at, ends_at=n.at + ttl, once=True
        )

    # -- output ---------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The earliest time something is due (None when nothing is held)."""
        times = [
            0.0 if e.last_post is None else e.last_post + self.resend
            for e in self._entries.values()
        ]
        return min(times, default=None)

    def due(self, now: float) -> Posting | None:
        """What to post at ``now``: new and resolved alerts, and firing ones to resend."""
        keys: list[tuple[str, ...]] = []
        entries: list[object] = []
        body: list[dict[str, Any]] = []
        kinds: list[str] = []
        for key, e in list(self._entries.items()):
            if e.labels.get("outcome") and e.ends_at is not None and e.ends_at <= now:
                del self._entries[key]  # an action outcome never posted in its time: old news
                continue
            if e.last_post is not None and now - e.last_post < self.resend:
                continue
            ends = e.ends_at if e.ends_at is not None else now + RESEND_FACTOR * self.resend
            doc: dict[str, Any] = {
                "labels": e.labels,
                "annotations": e.annotations,
                "startsAt": rfc3339(e.starts_at),
                "endsAt": rfc3339(ends),
            }
            if "status_page" in e.annotations:
                doc["generatorURL"] = e.annotations["status_page"]
            body.append(doc)
            keys.append(key)
            entries.append(e)
            if e.once:
                kinds.append(e.labels.get("outcome") or "resolved")
            else:
                kinds.append("firing" if e.last_post is None else "resend")
        if not body:
            return None
        return Posting(tuple(keys), tuple(entries), body, tuple(kinds))

    def posted(self, posting: Posting, now: float) -> None:
        """Alertmanager accepted ``posting``: resend later, forget resolved and one-shots."""
        for key, posted in zip(posting.keys, posting.entries, strict=True):
            e = self._entries.get(key)
            if e is None or e is not posted:
                continue  # replaced since (fired again, resolved): that one is still due
            if e.once:
                del self._entries[key]
            else:
                e.last_post = now

    def test_alert(self, route: str, now: float) -> dict[str, Any]:
        """``notify-test``'s alert: info severity, ending a minute later."""
        return {
            "labels": {"alertname": "RiskwatchTest", "severity": "info", "route": route},
            "annotations": {"summary": f"riskwatch test notification (route {route})"},
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + 60),
        }

    def held(self) -> int:
        """How many alerts this target holds (firing, or waiting to be posted)."""
        return len(self._entries)
