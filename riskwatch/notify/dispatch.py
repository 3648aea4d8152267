"""The notification pipeline's pure core: route → silence/inhibit → dedup → render.

:class:`Dispatcher` is sans-I/O (docs/design.md item 10): it is told about alerts
(:meth:`Dispatcher.alert`, :meth:`Dispatcher.sync`), action outcomes
(:meth:`Dispatcher.action`) and silences (:meth:`Dispatcher.set_silences`), and on
:meth:`Dispatcher.flush` at ``now`` returns the messages to deliver and the mutes to
count. It never reads a clock, never awaits and never touches a metric or a file.

Grouping: on each route an alert joins the group of its ``group_by`` label values
(default ``rule, account``), so ten symbols tripping in one pulse make one message. A
new group waits ``group_wait`` before its first message; later changes go out at the
next flush. Each group's last message (:class:`~riskwatch.notify.dedup.LastSent`) drives
dedup; it can be seeded from the notification log so that a restart does not repeat.

Muting: an alert matched by an active silence is ``silenced``; a warning/info alert of
the same account and family as a firing critical one is ``inhibited``. Muted alerts
are left out of messages and counted once per (route, alert, trip) as they become
muted. Escalations of failed actions and the circuit breaker bypass muting and dedup;
when no route matches them they go to every route (an escalation is never dropped).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from riskwatch.notify.dedup import GroupView, LastSent, NotifyReason, needs_notify
from riskwatch.notify.inhibit import DEFAULT_POLICY, InhibitPolicy, inhibited
from riskwatch.notify.notice import ActionNotice, AlertKey, AlertNotice
from riskwatch.notify.render import Message, render_action, render_group
from riskwatch.notify.routes import NotifyRoute, group_key, match_routes
from riskwatch.notify.silences import Matcher, matchers_of, silenced_by
from riskwatch.records import Silence
from riskwatch.secret import Secret

__all__ = ["Dispatcher", "MuteResult", "Muted", "Outgoing", "fingerprint"]

MuteResult = Literal["silenced", "inhibited"]
_MAX_ACTIONS_PER_ALERT: Final = 20


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one route, to be delivered to each of ``targets`` on its own.

    ``key`` is the group key (or the action's alert key) for the notification log;
    ``fingerprint`` is what dedup compares after a restart.
    """

    route: str
    key: str
    targets: tuple[Secret, ...]
    message: Message
    reason: str
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Muted:
    """An alert (or action notice) not notified on ``route``, and why."""

    route: str
    key: AlertKey
    result: MuteResult
    by: str = ""


def fingerprint(alerts: Iterable[AlertNotice]) -> str:
    """A short stable digest of a set of firing alerts and their trips (``""`` if empty)."""
    parts = sorted(f"{r}\x1f{a}\x1f{s}\x1f{n.trip_id}" for n in alerts for r, a, s in (n.key,))
    if not parts:
        return ""
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:16]


@dataclass(slots=True)
class _Group:
    route: NotifyRoute
    key: str
    created: float
    members: dict[AlertKey, AlertNotice] = field(default_factory=dict)
    resolved: dict[AlertKey, AlertNotice] = field(default_factory=dict)
    notified: set[AlertKey] = field(default_factory=set)
    last: LastSent | None = None
    restored: bool = False
    muted: dict[AlertKey, tuple[MuteResult, int]] = field(default_factory=dict)
    dirty: bool = True

    @property
    def due(self) -> float:
        """Earliest time of the first message (``group_wait`` after creation)."""
        if self.last is not None and self.last.status == "firing":
            return self.created
        return self.created + self.route.group_wait


class Dispatcher:
    """Notification state and decisions; see the module docstring. Not thread-safe.

    ``restored`` maps ``(route, group key)`` to what the notification log says was last
    sent there. ``external_url`` adds a status link to every message. ``group_interval``
    (seconds) is the least time between two messages of one group after its first
    (changes and resolutions wait for it; alertmanager's ``group_interval``).
    """

    def __init__(
        self,
        routes: Sequence[NotifyRoute],
        *,
        policy: InhibitPolicy = DEFAULT_POLICY,
        external_url: str | None = None,
        restored: Mapping[tuple[str, str], LastSent] | None = None,
        group_interval: float = 5.0,
    ) -> None:
        self.routes = tuple(routes)
        self.group_interval = group_interval
        self.policy = policy
        self.external_url = external_url
        self.alerts: dict[AlertKey, AlertNotice] = {}
        self.groups: dict[tuple[str, str], _Group] = {}
        self._restored = dict(restored or {})
        self._silences: list[tuple[Silence, tuple[Matcher, ...]]] = []
        self._pending: list[ActionNotice] = []
        self._actions: dict[AlertKey, list[ActionNotice]] = {}
        self._critical: list[Mapping[str, str]] | None = None
        # Mute results are cached per alert and invalidated by bumping the version:
        # silences changed, the set of critical alerts changed, or a silence edge passed.
        self._version = 0
        self._mutes: dict[AlertKey, tuple[int, tuple[MuteResult, str] | None]] = {}
        self._edge = math.inf
        self._flushed = 0

    # -- input ----------------------------------------------------------------------

    def alert(self, n: AlertNotice, now: float) -> None:
        """Take one alert that fired or resolved (shadow alerts are ignored)."""
        if n.shadow:
            return
        key, labels = n.key, n.all_labels
        if n.severity == self.policy.source:
            self._critical = None
            self._version += 1
        self._mutes.pop(key, None)
        if n.status == "firing":
            old = self.alerts.get(key)
            if old is not None and old.trip_id != n.trip_id:
                self._actions.pop(key, None)
            self.alerts[key] = n
        else:
            self.alerts.pop(key, None)
        for route in match_routes(self.routes, labels):
            gk = (route.name, group_key(route, labels))
            g = self.groups.get(gk)
            if g is None:
                if n.status != "firing":
                    continue
                g = self._new_group(route, gk[1], now)
            g.dirty = True
            if n.status == "firing":
                g.members[key] = n
                g.resolved.pop(key, None)
                if g.restored:
                    g.notified.add(key)
            elif g.members.pop(key, None) is not None:
                if key in g.notified:
                    g.resolved[key] = n
                g.muted.pop(key, None)

    def sync(self, account: str, firing: Iterable[AlertNotice], now: float) -> None:
        """Make the firing set of ``account`` equal ``firing`` (the engine's current alerts).

        Alerts missing from the table (after a restart) are added; alerts of the account
        no longer firing are resolved at ``now``.
        """
        current = {n.key: n for n in firing if not n.shadow and n.status == "firing"}
        for key, n in list(self.alerts.items()):
            if n.account == account and key not in current:
                self.alert(replace(n, status="resolved", at=now), now)
        for key, n in current.items():
            known = self.alerts.get(key)
            if known is None or known.trip_id != n.trip_id:
                self.alert(n, now)

    def action(self, n: ActionNotice) -> None:
        """Take one action outcome; it joins its alert's next message, or goes alone."""
        self._pending.append(n)
        done = self._actions.setdefault(n.key, [])
        if len(done) < _MAX_ACTIONS_PER_ALERT:
            done.append(n)

    def restore(self, last: Mapping[tuple[str, str], LastSent]) -> None:
        """Seed what was last sent per ``(route, group key)`` (from the notification log)."""
        self._restored.update(last)

    def set_silences(self, silences: Iterable[Silence]) -> None:
        """Replace the known silences (active, future and expired alike)."""
        self._silences = [(s, matchers_of(s.matchers)) for s in silences]
        self._version += 1
        self._edge = -math.inf

    # -- muting ---------------------------------------------------------------------

    def _critical_labels(self) -> list[Mapping[str, str]]:
        if self._critical is None:
            src = self.policy.source
            self._critical = [n.all_labels for n in self.alerts.values() if n.severity == src]
        return self._critical

    def mute_of(self, labels: Mapping[str, str], now: float) -> tuple[MuteResult, str] | None:
        """Why an alert with ``labels`` would not be notified now: silence id or inhibition."""
        by = silenced_by(self._silences, labels, now)
        if by is not None:
            return ("silenced", by)
        if inhibited(labels, self._critical_labels(), self.policy):
            return ("inhibited", "")
        return None

    # -- output ---------------------------------------------------------------------

    def next_due(self, now: float) -> float | None:
        """The earliest future time a group waiting for ``group_wait`` becomes due."""
        due = [g.due for g in self.groups.values() if g.due > now and g.members]
        return min(due, default=None)

    def _cached_mute(self, n: AlertNotice, now: float) -> tuple[MuteResult, str] | None:
        hit = self._mutes.get(n.key)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        mute = self.mute_of(n.all_labels, now)
        self._mutes[n.key] = (self._version, mute)
        return mute

    def _check_edges(self, now: float) -> None:
        """Invalidate cached mutes when a silence started or ended since the last flush."""
        if now < self._edge:
            return
        edges = [t for s, _ in self._silences for t in (s.starts_at, s.ends_at) if t > now]
        self._edge = min(edges, default=math.inf)
        self._version += 1

    def flush(self, now: float) -> tuple[list[Outgoing], list[Muted]]:
        """Decide every due group and every pending action notice at ``now``.

        Cost: groups whose members, mutes or repeat time did not change are skipped in
        O(1) each; mutes are cached per alert.
        """
        out: list[Outgoing] = []
        muted: list[Muted] = []
        consumed: set[int] = set()
        self._check_edges(now)
        everything = self._version != self._flushed
        self._flushed = self._version
        for gk, g in list(self.groups.items()):
            if g.due > now:
                continue
            last = g.last
            repeat = (
                last is not None
                and last.status == "firing"
                and now - last.at >= g.route.repeat_interval
            )
            if not (g.dirty or everything or repeat):
                continue
            if last is not None and last.status == "firing" and now - last.at < self.group_interval:
                continue  # changes wait for group_interval (stays dirty)
            g.dirty = False
            self._flush_group(g, now, out, muted, consumed)
            if not g.members and not g.resolved and (g.last is None or g.last.status != "firing"):
                del self.groups[gk]
        for i, n in enumerate(self._pending):
            if i not in consumed:
                self._flush_action(n, now, out, muted)
        self._pending.clear()
        return out, muted

    def _flush_group(
        self,
        g: _Group,
        now: float,
        out: list[Outgoing],
        muted: list[Muted],
        consumed: set[int],
    ) -> None:
        notifiable: list[AlertNotice] = []
        for key, n in g.members.items():
            mute = self._cached_mute(n, now)
            if mute is None:
                g.muted.pop(key, None)
                notifiable.append(n)
                continue
            if g.muted.get(key) != (mute[0], n.trip_id):
                g.muted[key] = (mute[0], n.trip_id)
                muted.append(Muted(g.route.name, key, mute[0], mute[1]))
        fp = fingerprint(notifiable)
        view = GroupView(fp, resolved=bool(g.resolved))
        r = g.route
        reason = needs_notify(g.last, view, r.repeat_interval, r.send_resolved, now)
        if reason is NotifyReason.NONE:
            if not view.firing and g.resolved:
                # Resolutions not sent (send_resolved off): the episode is over anyway.
                g.last = LastSent(now, "resolved", "")
                g.resolved.clear()
                g.notified.clear()
            return
        resolved = list(g.resolved.values()) if r.send_resolved else []
        keys = {n.key for n in notifiable} | {n.key for n in resolved}
        actions: dict[AlertKey, list[ActionNotice]] = {}
        for i, a in enumerate(self._pending):
            if a.key in keys and not a.always:
                consumed.add(i)
        for key in keys:
            if key in self._actions:
                actions[key] = [a for a in self._actions[key] if not a.always]
        message = render_group(reason, notifiable, resolved, actions, self.external_url)
        out.append(Outgoing(r.name, g.key, r.targets, message, reason.value, fp))
        g.last = LastSent(now, "firing" if view.firing else "resolved", fp)
        g.notified = {n.key for n in notifiable}
        g.restored = False
        for n in g.resolved.values():
            self._actions.pop(n.key, None)
        g.resolved.clear()

    def _flush_action(
        self, n: ActionNotice, now: float, out: list[Outgoing], muted: list[Muted]
    ) -> None:
        labels = n.all_labels
        routes = match_routes(self.routes, labels)
        if n.always and not routes:
            routes = list(self.routes)
        key = ",".join(
            f"{k}={v}" for k, v in zip(("rule", "account", "symbol"), n.key, strict=True)
        )
        key += f",trip={n.trip_id}"
        mute = None if n.always else self.mute_of(labels, now)
        for route in routes:
            if mute is not None:
                muted.append(Muted(route.name, n.key, mute[0], mute[1]))
                continue
            message = render_action(n, self.external_url)
            out.append(Outgoing(route.name, key, route.targets, message, n.kind))

    def _new_group(self, route: NotifyRoute, key: str, now: float) -> _Group:
        g = _Group(route=route, key=key, created=now)
        last = self._restored.pop((route.name, key), None)
        if last is not None:
            g.last = last
            g.restored = last.status == "firing"
        self.groups[(route.name, key)] = g
        return g
