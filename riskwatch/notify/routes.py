"""Routes: which channels an alert goes to (pure; alertmanager ``dispatch/route.go``).

Routes are tried top to bottom; a route matches when every ``match`` label equals and
every ``match_re`` pattern fully matches (a missing label is ``""``). The first
matching route wins unless it says ``continue: true``, in which case matching goes on
to the next ones. A route with no matcher matches everything (the usual catch-all at
the end).

A route's name is its position in the config (``"0"``, ``"1"``, …): a bounded,
stable value for the ``route`` metric label and the notification log.

A route's targets are its apprise URLs; a URL written ``tag://NAME`` means "the URLs
tagged NAME in the ``apprise_config`` file" (delivered together, as one target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from riskwatch.config import NotificationsConfig, RouteConfig
from riskwatch.secret import Secret

__all__ = [
    "DEFAULT_GROUP_BY",
    "TAG_SCHEME",
    "NotifyRoute",
    "build_routes",
    "group_key",
    "match_routes",
]

TAG_SCHEME: Final = "tag://"
"""Prefix of a route target naming apprise-config tags instead of a URL."""

DEFAULT_GROUP_BY: Final = ("rule", "account")
"""Grouping when a route sets none: every symbol of one rule on one account together."""


@dataclass(frozen=True, slots=True)
class NotifyRoute:
    """One route, ready to match. Durations in seconds."""

    name: str
    targets: tuple[Secret, ...]
    match: Mapping[str, str]
    match_re: Mapping[str, re.Pattern[str]]
    continue_: bool
    repeat_interval: float
    group_wait: float
    group_by: tuple[str, ...]
    send_resolved: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher of this route holds for ``labels``."""
        for name, value in self.match.items():
            if labels.get(name, "") != value:
                return False
        return all(p.fullmatch(labels.get(name, "")) for name, p in self.match_re.items())

    def __repr__(self) -> str:
        return f"NotifyRoute({self.name!r}, {len(self.targets)} target(s))"


def _route(index: int, rc: RouteConfig) -> NotifyRoute:
    return NotifyRoute(
        name=rc.name or str(index),
        targets=rc.urls,
        match=MappingProxyType(dict(rc.match)),
        match_re=MappingProxyType(dict(rc.match_re)),
        continue_=rc.continue_,
        repeat_interval=rc.repeat_interval.seconds,
        group_wait=rc.group_wait.seconds,
        group_by=rc.group_by or DEFAULT_GROUP_BY,
        send_resolved=rc.send_resolved,
    )


def build_routes(config: NotificationsConfig) -> tuple[NotifyRoute, ...]:
    """The config's routes in order, named by their ``name`` or else their index."""
    return tuple(_route(i, rc) for i, rc in enumerate(config.routes))


def match_routes(routes: Sequence[NotifyRoute], labels: Mapping[str, str]) -> list[NotifyRoute]:
    """The routes ``labels`` go to: first match, plus the following ones after a continue."""
    out: list[NotifyRoute] = []
    for route in routes:
        if route.matches(labels):
            out.append(route)
            if not route.continue_:
                break
    return out


def group_key(route: NotifyRoute, labels: Mapping[str, str]) -> str:
    """The group an alert joins on ``route``: its ``group_by`` label values.

    Stored as the notification log's ``alert_key``; it is stable across restarts.
    """
    return ",".join(f"{name}={labels.get(name, '')}" for name in route.group_by)
